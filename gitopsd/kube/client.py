"""One cluster's HTTP client: kubeconfig + context, a request limiter, retries, reachability.

kubernetes-asyncio loads the kubeconfig and does authentication (tokens, client
certificates, exec plugins) and the TLS settings; this module sends raw paths and reads
the JSON itself, so every status code (and ``Retry-After``) is visible and nothing is
deserialised into models. Requests go on :class:`gitopsd.kube.transport.Transport`
(kept-alive HTTP/1.1, a fraction of aiohttp's CPU per request, and watches read line by
line); every request to a cluster reached through an HTTP proxy goes on the library's
aiohttp session.
"""

from __future__ import annotations

import asyncio
import functools
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import anyio
import structlog
from aiohttp.client_exceptions import (  # a submodule: aiohttp's client itself is not imported
    ClientConnectionError,
    ClientConnectorCertificateError,
    ClientPayloadError,
)

from gitopsd.core import jsonio
from gitopsd.core.errors import ApplyError
from gitopsd.core.version import USER_AGENT
from gitopsd.kube import k8s
from gitopsd.kube.transport import Answer, Transport, resuming
from gitopsd.plugin.config import ClusterConfig

log = structlog.get_logger("gitopsd.kube")

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
RETRY_BUDGET = 20.0
"""Seconds a request is retried for on transient answers (429, 5xx)."""
UNREACHABLE_GIVE_UP = 8.0
"""A request stops retrying connection errors once the cluster has been unreachable this long
(so a tunnel blip under 5 s never fails a sync, and a cluster that is down fails fast)."""
_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 2.0

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"


@dataclass
class ApiError(Exception):
    """A non-2xx answer of the API server (after retries), with its Status fields."""

    status: int
    reason: str = ""
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return (
            f"{self.status} {self.reason}: {self.message}"
            if self.reason
            else f"{self.status}: {self.message}"
        )

    @property
    def transient(self) -> bool:
        return self.status in TRANSIENT_STATUS


class Unreachable(Exception):
    """The API server could not be reached within the retry budget."""


def backoff(attempt: int, *, base: float = _BACKOFF_BASE, cap: float = _BACKOFF_CAP) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * (2**attempt)))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(float(value), 30.0)
    except ValueError:
        return None


def _api_error(status: int, raw: bytes) -> ApiError:
    try:
        body = jsonio.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return ApiError(
            status,
            str(body.get("reason") or ""),
            str(body.get("message") or ""),
            body.get("details") or {},
        )
    return ApiError(status, "", raw[:300].decode("utf-8", "replace"))


_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ClientConnectionError,
    ClientPayloadError,
    asyncio.TimeoutError,
    ConnectionError,
    OSError,
)


def is_connection_error(exc: BaseException) -> bool:
    """Errors worth retrying that say nothing about the request itself."""
    if isinstance(exc, ClientConnectorCertificateError | ssl.SSLCertVerificationError):
        return False  # a wrong certificate does not heal by retrying
    return isinstance(exc, _CONNECTION_ERRORS)


class KubeClient:
    """HTTP access to one cluster. Use :meth:`open` then :meth:`close`.

    Args:
        name: Cluster name (for messages).
        config: The cluster's config.
        on_reachable: Called with (reachable, detail) when reachability changes.
        on_request: Called with (cluster, verb, HTTP code or "error") once per request sent
            (metrics); ``verb`` is the HTTP method, or ``watch``.
    """

    def __init__(
        self,
        name: str,
        config: ClusterConfig,
        on_reachable: Callable[[bool, str], None],
        on_request: Callable[[str, str, int | str], None] | None = None,
    ):
        self.name = name
        self._on_request = on_request
        self.config = config
        self.limiter = asyncio.Semaphore(config.max_concurrent_requests)
        """At most ``max_concurrent_requests`` in flight (see :meth:`request` for its checkpoint)."""
        self._configuration: Any = None  # kubernetes_asyncio's Configuration: the kubeconfig's server, TLS, credentials
        self._api: Any = None  # behind a proxy: kubernetes_asyncio's ApiClient, whose aiohttp session sends everything
        self._timeout: Any = None  # behind a proxy: aiohttp's ClientTimeout for one request
        self._direct: Transport | None = None
        """Requests' connections (None when a proxy is in the way: then aiohttp's session)."""
        self._default_headers: list[tuple[str, str]] = []
        self._loader: Any = None
        self._on_reachable = on_reachable
        self.reachable = True
        self.unreachable_since: float | None = None
        self.server = ""
        """The API server URL from the kubeconfig (before any tunnel)."""
        self.user_agent = USER_AGENT
        """Sent with every request; names the member when coordination is on (set before :meth:`open`)."""

    async def open(self, *, host_override: str | None = None, unix_socket: str | None = None) -> None:
        """Load the kubeconfig; with ``host_override`` (a tunnel's local URL) TLS still checks the real name.

        With ``unix_socket`` (the SSH tunnel's local end) every connection goes to that socket;
        TLS, its CA and the server name check are unchanged.
        """
        configuration_type, api_client_type, load_kube_config = k8s.load()
        configuration = type.__call__(configuration_type)
        self._loader = await load_kube_config(
            config_file=str(self.config.kubeconfig),
            context=self.config.context,
            client_configuration=configuration,
            persist_config=False,
        )
        self.server = configuration.host
        if host_override:
            if not configuration.tls_server_name:
                configuration.tls_server_name = urlsplit(self.server).hostname
            configuration.host = host_override
        configuration.connection_pool_maxsize = self.config.max_concurrent_requests + 64
        self._configuration = configuration
        self._default_headers = [("User-Agent", self.user_agent)]
        proxy, env_credentials = configuration.proxy or None, False
        if proxy is None and unix_socket is None:
            proxy, env_credentials = _env_proxy(configuration.host)
        if proxy is not None or env_credentials:
            # Imported here: aiohttp's client, loaded with it, builds two TLS contexts from the
            # system's CA bundle (~85 ms of CPU) that a cluster without a proxy never needs.
            from gitopsd.kube import session

            self._api = await session.open_api(
                api_client_type, configuration, unix_socket=unix_socket,
                proxy=proxy, trust_env=env_credentials,
            )
            self._timeout = session.request_timeout(self.config.request_timeout)
            return
        url = urlsplit(configuration.host)
        secure = url.scheme == "https"
        self._direct = Transport(
            url.hostname or "localhost",
            url.port or (443 if secure else 80),
            ssl_context=resuming(k8s.tls_context(configuration)) if secure else None,
            server_hostname=configuration.tls_server_name or None,
            unix_socket=unix_socket,
            connect_timeout=self.config.request_timeout,
            max_idle=self.config.max_concurrent_requests,
        )

    @property
    def is_open(self) -> bool:
        """Between :meth:`open` and :meth:`close`."""
        return self._direct is not None or self._api is not None

    async def close(self) -> None:
        if self._direct is not None:
            await self._direct.close()
            self._direct = None
        if self._api is not None:
            await self._api.close()
            self._api = None

    def _mark(self, reachable: bool, why: str = "") -> None:
        if reachable != self.reachable:
            self.reachable = reachable
            self.unreachable_since = None if reachable else time.monotonic()
            self._on_reachable(reachable, why)

    def mark_unreachable(self, why: str) -> None:
        """Known to be unreachable without a request (the SSH tunnel is down): emits cluster-unreachable once."""
        self._mark(False, why)

    def _count(self, verb: str, code: int | str) -> None:
        if self._on_request is not None:
            try:
                self._on_request(self.name, verb, code)
            except Exception:  # metrics must never break a request
                log.exception("request observer failed")

    def unreachable_for(self) -> float:
        """Seconds since the cluster stopped answering (0 while it answers)."""
        since = self.unreachable_since
        return 0.0 if since is None else time.monotonic() - since

    async def _headers(
        self, content_type: str | None, extra_headers: list[tuple[str, str]] | None
    ) -> list[tuple[str, str]]:
        """Every request's headers: the user agent, credentials (refreshed), ours."""
        configuration = self._configuration
        assert configuration is not None, "client not opened"
        # What kubernetes-asyncio's ApiClient.update_params_for_auth adds: the bearer token,
        # refreshed by the library when it comes from an exec plugin or OIDC.
        bearer = (await configuration.auth_settings()).get("BearerToken")
        credentials = [(bearer["key"], bearer["value"])] if bearer else []
        # A list keeps repeated names (one ``Impersonate-Group`` per group); a dict would keep
        # the last one only.
        return [
            *self._default_headers,
            *credentials,
            ("Accept", "application/json"),
            ("Content-Type", content_type or "application/json"),
            *(extra_headers or ()),
        ]

    async def _exchange(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        data: bytes | None,
        headers: list[tuple[str, str]],
    ) -> tuple[int, bytes, str | None]:
        """One request and its whole answer: (status, body, Retry-After)."""
        direct = self._direct
        if direct is not None:
            answer = await direct.request(
                method,
                f"{path}?{_query_text(tuple(query))}" if query else path,
                headers,
                data,
                timeout=self.config.request_timeout,
            )
            return answer.status, answer.body, answer.retry_after
        from gitopsd.kube import session

        response = await session.send(self._api, method, path, query, data, headers, self._timeout)
        async with response:
            raw = await response.read()
            return response.status, raw, response.headers.get("Retry-After")

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        budget: float = RETRY_BUDGET,
        headers: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        """One API call under the cluster's limiter, retried on transient errors; the JSON answer.

        ``headers`` are sent as well (names may repeat), e.g. an app's ``Impersonate-User`` and
        ``Impersonate-Group`` (:func:`gitopsd.kube.apply.impersonation`).

        Raises ApiError for a (final) non-2xx answer and Unreachable when the server cannot be
        reached within ``budget`` seconds.
        """
        deadline = time.monotonic() + budget
        data = jsonio.dumps(body) if body is not None else None
        attempt = 0
        reloaded = False
        while True:
            delay: float | None
            try:
                async with self.limiter:
                    status, raw, retry_header = await self._exchange(
                        method, path, query, data, await self._headers(content_type, headers)
                    )
            except Exception as exc:
                if isinstance(exc, ClientConnectorCertificateError | ssl.SSLError):
                    raise Unreachable(
                        f"cluster {self.name}: TLS verification failed: {_describe(exc)}"
                    ) from None
                if not is_connection_error(exc):
                    raise
                self._count(method, "error")
                self._mark(False, _describe(exc))
                if time.monotonic() >= deadline or self.unreachable_for() > UNREACHABLE_GIVE_UP:
                    raise Unreachable(f"cluster {self.name}: {_describe(exc)}") from None
                delay = None
            else:
                self._count(method, status)
                self._mark(True)
                if 200 <= status < 300:
                    return jsonio.loads(raw) if raw else {}
                error = _api_error(status, raw)
                if status == 401 and not reloaded and self._loader is not None:
                    # Exec-plugin and OIDC tokens expire: load the credentials once more.
                    reloaded = True
                    await self._loader.load_and_set(self._configuration)
                    continue
                if not error.transient or time.monotonic() >= deadline:
                    try:
                        raise error
                    finally:
                        # error's traceback holds this frame, whose local holds error: a
                        # cycle per error answer (a 404 per new namespace) left to the collector.
                        error = None  # type: ignore[assignment]
                delay = _retry_after(retry_header)
            wait = backoff(attempt) if delay is None else delay + random.uniform(0, 0.1)
            attempt += 1
            await anyio.sleep(max(0.0, min(wait, deadline - time.monotonic() + 0.01)))

    async def stream(
        self, path: str, query: list[tuple[str, str]], *, idle_timeout: float
    ) -> LineStream:
        """Open a watch (no limiter: it lasts); the caller reads lines and closes the stream.

        ``idle_timeout`` is the inactivity deadline: a read that waits longer raises TimeoutError.
        """
        headers = await self._headers(None, None)
        stream: LineStream | None = None
        try:
            if self._direct is not None:
                opened = await self._direct.stream(
                    f"{path}?{urlencode(query)}" if query else path,
                    headers,
                    connect_timeout=self.config.request_timeout,
                    idle_timeout=idle_timeout,
                )
                if isinstance(opened, Answer):
                    status, raw = opened.status, opened.body
                else:
                    status, raw, stream = 200, b"", opened
            else:
                from gitopsd.kube import session

                timeout = session.watch_timeout(self.config.request_timeout, idle_timeout)
                response = await session.send(self._api, "GET", path, query, None, headers, timeout)
                status, raw = response.status, b""
                if status == 200:
                    stream = session.SessionStream(response)
                else:
                    async with response:
                        raw = await response.read()
        except Exception as exc:
            if is_connection_error(exc):
                self._count("watch", "error")
                self._mark(False, _describe(exc))
            raise
        self._count("watch", status)
        self._mark(True)
        if stream is None:
            raise _api_error(status, raw)
        return stream


class LineStream(Protocol):
    """A watch's answer, read line by line (:class:`gitopsd.kube.transport.Stream`)."""

    async def readline(self) -> bytes:
        """The next line, or ``b""`` once the server ended the answer."""

    def close(self) -> None:
        """Stop reading and drop the connection."""

    async def __aenter__(self) -> LineStream: ...

    async def __aexit__(self, *exc: object) -> None: ...


@functools.lru_cache(maxsize=256)
def _query_text(query: tuple[tuple[str, str], ...]) -> str:
    """``urlencode(query)``, remembered: an apply's query is one of a few (fieldManager, force,
    dryRun), and urlencode costs ~6 us, a twentieth of the client's CPU per request."""
    return urlencode(query)


def _env_proxy(host: str) -> tuple[str | None, bool]:
    """The proxy ``HTTPS_PROXY``/``HTTP_PROXY`` name for ``host`` (unless ``NO_PROXY`` does), read once.

    Returns (proxy URL or None, whether the environment's proxy carries credentials). With
    credentials the proxy is left to aiohttp, which reads the environment on every request.
    kubectl reads these variables the same way; a kubeconfig ``proxy-url`` wins over them.
    """
    from aiohttp.helpers import (
        get_env_proxy_for_url,  # a submodule: aiohttp's client is not imported
    )
    from yarl import URL

    try:
        proxy, auth = get_env_proxy_for_url(URL(host))
    except (LookupError, ValueError):
        return None, False
    if auth is not None:
        return None, True
    return (str(proxy) if proxy is not None else None), False


def _describe(exc: BaseException) -> str:
    """A short, secret-free description of a connection error."""
    if isinstance(exc, asyncio.TimeoutError):
        return "request timed out"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def unreachable_error(cluster: str, detail: str) -> ApplyError:
    return ApplyError(f"cluster {cluster} is unreachable: {detail}", reason="ClusterUnreachable")
