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
import json
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import aiohttp
import anyio
import structlog

from gitopsd.core import jsonio
from gitopsd.core.errors import ApplyError
from gitopsd.core.version import USER_AGENT
from gitopsd.kube import k8s
from gitopsd.kube.transport import Answer, Transport
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
        body = json.loads(raw)
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
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    asyncio.TimeoutError,
    ConnectionError,
    OSError,
)


def is_connection_error(exc: BaseException) -> bool:
    """Errors worth retrying that say nothing about the request itself."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
        return False  # a wrong certificate does not heal by retrying
    return isinstance(exc, _CONNECTION_ERRORS)


class UnixTLSConnector(aiohttp.TCPConnector):
    """An aiohttp connector that opens every connection on a unix socket, then does TLS as usual.

    The SSH tunnel's local end is a unix socket in a private directory, so no other local
    user can reach the API server through it (a TCP port on 127.0.0.1 is open to all).
    """

    def __init__(self, path: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.path = path

    async def _wrap_create_connection(  # type: ignore[override]
        self,
        *args: Any,
        addr_infos: Any,
        req: Any,
        timeout: aiohttp.ClientTimeout,
        client_error: type[Exception] = aiohttp.ClientConnectorError,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, Any]:
        try:
            async with asyncio.timeout(timeout.sock_connect):
                factory = args[0]
                return await self._loop.create_unix_connection(factory, self.path, **kwargs)  # type: ignore[return-value]
        except ssl.SSLCertVerificationError as exc:
            raise aiohttp.ClientConnectorCertificateError(req.connection_key, exc) from exc
        except ssl.SSLError as exc:
            raise aiohttp.ClientConnectorSSLError(req.connection_key, exc) from exc
        except OSError as exc:
            raise client_error(req.connection_key, exc) from exc


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
        self._timeout = aiohttp.ClientTimeout(total=config.request_timeout)
        self._api: Any = None  # kubernetes_asyncio's ApiClient (kube/k8s.py: loaded without its models)
        self._direct: Transport | None = None
        """Requests' connections (None when a proxy is in the way: then aiohttp's session)."""
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
        self._api = api_client_type(configuration=configuration)
        self._api.user_agent = self.user_agent
        if unix_socket is not None:
            rest = self._api.rest_client
            tcp = rest.pool_manager
            assert isinstance(tcp.connector, aiohttp.TCPConnector)
            rest.pool_manager = aiohttp.ClientSession(
                connector=UnixTLSConnector(unix_socket, limit=configuration.connection_pool_maxsize,
                                           ssl=tcp.connector._ssl),  # the context the library built
                trust_env=False,  # no proxy between us and our own socket
                read_bufsize=2**21,
            )
            await tcp.close()
        else:
            _resolve_env_once(self._api.rest_client, configuration.host)
        self._direct = _direct_transport(self._api.rest_client, configuration.host, unix_socket,
                                         self.config.request_timeout,
                                         self.config.max_concurrent_requests)

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
        """Every request's headers: the library's defaults, credentials (refreshed), ours."""
        api = self._api
        assert api is not None, "client not opened"
        auth: dict[str, str] = {}
        await api.update_params_for_auth(auth, [], ["BearerToken"])  # refreshes exec/OIDC tokens
        # A list keeps repeated names (one ``Impersonate-Group`` per group); a dict would keep
        # the last one only.
        return [
            *api.default_headers.items(),
            *auth.items(),
            ("Accept", "application/json"),
            ("Content-Type", content_type or "application/json"),
            *(extra_headers or ()),
        ]

    async def _send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        data: bytes | None,
        headers: list[tuple[str, str]],
        limits: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """Send one request on the library's aiohttp session (a cluster behind a proxy: its requests and watches)."""
        rest = self._api.rest_client
        url = f"{self._api.configuration.host}{path}" + ("?" + urlencode(query) if query else "")
        options: dict[str, Any] = {}
        if rest.proxy:
            options["proxy"] = rest.proxy
        if rest.proxy_headers:
            options["proxy_headers"] = rest.proxy_headers
        if rest.server_hostname:
            options["server_hostname"] = rest.server_hostname
        response: aiohttp.ClientResponse = await rest.pool_manager.request(
            method, url, headers=headers, data=data, timeout=limits, **options
        )
        return response

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
        response = await self._send(method, path, query, data, headers, self._timeout)
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
                    # Yield once per request even when a slot is free, as anyio's limiter did
                    # (its shielded checkpoint cost ~25 us more): the watches and answers in
                    # flight run between the requests of a burst.
                    await asyncio.sleep(0)
                    status, raw, retry_header = await self._exchange(
                        method, path, query, data, await self._headers(content_type, headers)
                    )
            except Exception as exc:
                if isinstance(exc, aiohttp.ClientConnectorCertificateError | ssl.SSLError):
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
                    assert self._api is not None
                    await self._loader.load_and_set(self._api.configuration)
                    continue
                if not error.transient or time.monotonic() >= deadline:
                    raise error
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
                timeout = aiohttp.ClientTimeout(
                    total=None, connect=self.config.request_timeout, sock_read=idle_timeout
                )
                response = await self._send("GET", path, query, None, headers, timeout)
                status, raw = response.status, b""
                if status == 200:
                    stream = _SessionStream(response)
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


class _SessionStream:
    """A watch on aiohttp's session (a cluster behind a proxy), read like a transport stream."""

    def __init__(self, response: aiohttp.ClientResponse):
        self._response = response

    async def readline(self) -> bytes:
        return await self._response.content.readline()

    def close(self) -> None:
        self._response.close()

    async def __aenter__(self) -> _SessionStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


@functools.lru_cache(maxsize=256)
def _query_text(query: tuple[tuple[str, str], ...]) -> str:
    """``urlencode(query)``, remembered: an apply's query is one of a few (fieldManager, force,
    dryRun), and urlencode costs ~6 us, a twentieth of the client's CPU per request."""
    return urlencode(query)


def _direct_transport(
    rest: Any, host: str, unix_socket: str | None, request_timeout: float, concurrency: int
) -> Transport | None:
    """The transport for a cluster's requests, or None when they must go through a proxy.

    A proxy (the kubeconfig's ``proxy-url``, or the environment's with credentials, which
    :func:`_resolve_env_once` leaves to aiohttp) keeps the library's aiohttp session.
    """
    session = rest.pool_manager
    if rest.proxy or getattr(session, "_trust_env", False):
        return None
    url = urlsplit(host)
    secure = url.scheme == "https"
    context = session.connector._ssl if secure else None  # the context the library built
    if secure and not isinstance(context, ssl.SSLContext):
        return None
    return Transport(
        url.hostname or "localhost",
        url.port or (443 if secure else 80),
        ssl_context=context,
        server_hostname=rest.server_hostname or None,
        unix_socket=unix_socket,
        connect_timeout=request_timeout,
        max_idle=concurrency,
    )


def _resolve_env_once(rest: Any, host: str) -> None:
    """Read the proxy environment once instead of on every request.

    kubernetes-asyncio opens its aiohttp session with ``trust_env=True``, so aiohttp looks
    up ``~/.netrc`` in a worker thread and parses the proxy variables on *every* request:
    half of the client's CPU per apply (bench: 0.85-1.10 -> 0.40-0.53 ms per request). The
    server's proxy from ``HTTPS_PROXY``/``NO_PROXY`` is resolved here, once, and the
    lookups are turned off. A kubeconfig ``proxy-url`` still wins; netrc credentials were
    never sent with a bearer token or client certificate anyway, and kubectl ignores them.
    A proxy variable with credentials keeps aiohttp's own handling.
    """
    session = getattr(rest, "pool_manager", None)
    if session is None or not getattr(session, "_trust_env", False):
        return
    if not rest.proxy:
        from aiohttp.helpers import get_env_proxy_for_url
        from yarl import URL

        try:
            proxy, auth = get_env_proxy_for_url(URL(host))
        except (LookupError, ValueError):
            proxy, auth = None, None
        if auth is not None:
            return
        if proxy is not None:
            rest.proxy = str(proxy)
    session._trust_env = False


def _describe(exc: BaseException) -> str:
    """A short, secret-free description of a connection error."""
    if isinstance(exc, asyncio.TimeoutError):
        return "request timed out"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def unreachable_error(cluster: str, detail: str) -> ApplyError:
    return ApplyError(f"cluster {cluster} is unreachable: {detail}", reason="ClusterUnreachable")
