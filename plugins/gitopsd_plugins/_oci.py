"""A small client of the OCI distribution API (tags, manifests, blobs) over httpx.

Auth: anonymous, HTTP basic, and the registry token flow (a 401 with
``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` is answered by asking the
realm for a token, with basic credentials when we have them). Credentials come from files
or a docker ``config.json``; they are registered with the redactor and never appear in
errors. Every request has a deadline; manifests and blobs are verified against their
digests, blobs are size-limited while streaming.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from gitopsd import USER_AGENT, ConfigError, Secret, SourceError, read_secret_file
from gitopsd.core.lazyre import LazyPattern
from gitopsd.core.secrets import check_secret_permissions

if TYPE_CHECKING:  # httpx is imported where it is used: the daemon starts without it
    import httpx

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
_DIGEST = LazyPattern(r"^sha256:[0-9a-f]{64}$")
_CHALLENGE = LazyPattern(r'(\w+)="([^"]*)"')


def checked_digest(value: object, where: str) -> str:
    """``value`` if it is a well-formed ``sha256:<64 hex>`` digest, else SourceError.

    Digests come from manifests a registry (or an attacker controlling one) serves; they are
    checked before they are used in a URL or a cache path (``../../etc`` is not a digest).
    """
    digest = value if isinstance(value, str) else ""
    if not _DIGEST.match(digest):
        shown = repr(value)[:80]
        raise SourceError(f"{where}: digest {shown} is not sha256:<64 hex>", reason="VerificationFailed")
    return digest


def split_oci_url(url: str) -> tuple[str, str]:
    """``oci://host[:port]/path`` -> (host, path)."""
    if not url.startswith("oci://"):
        raise ValueError(f"{url!r} is not an oci:// URL")
    host, _, path = url[len("oci://"):].partition("/")
    if not host or not path.strip("/"):
        raise ValueError(f"{url!r} needs a host and a repository path")
    return host, path.strip("/")


@dataclass
class Credentials:
    """Basic credentials for one registry (or none)."""

    username: Secret | None = None
    password: Secret | None = None

    @classmethod
    def load(
        cls, host: str, username_file: Path | None, password_file: Path | None, docker_config_file: Path | None,
        *, strict: bool = True,
    ) -> Credentials:
        """Credentials for ``host``; ``strict``: refuse secret files others can read (see read_secret_file)."""
        try:
            if username_file and password_file:
                return cls(read_secret_file(username_file, "source.username_file", strict=strict),
                           read_secret_file(password_file, "source.password_file", strict=strict))
            if docker_config_file and strict:
                check_secret_permissions(docker_config_file, "source.docker_config_file")
        except ConfigError as exc:
            raise SourceError(str(exc), reason="InvalidConfig") from None
        if docker_config_file:
            try:
                data = json.loads(docker_config_file.read_text())
            except (OSError, ValueError) as exc:
                raise SourceError(f"source.docker_config_file {docker_config_file}: cannot read: {exc}",
                                  reason="InvalidConfig") from None
            auths = data.get("auths", {}) if isinstance(data, dict) else {}
            for key in (host, f"https://{host}", f"http://{host}", f"https://{host}/v2/", f"http://{host}/v2/"):
                entry = auths.get(key)
                if isinstance(entry, dict):
                    if entry.get("auth"):
                        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                    else:
                        user, password = entry.get("username", ""), entry.get("password", "")
                    if user and password:
                        return cls(Secret(user), Secret(password))
        return cls()

    @property
    def basic(self) -> tuple[str, str] | None:
        if self.username and self.password:
            return (self.username.reveal(), self.password.reveal())
        return None


class Registry:
    """One registry host; one instance may be shared by many sources."""

    def __init__(self, host: str, *, insecure: bool, credentials: Credentials, timeout: float):
        import httpx

        self.host = host
        self.base = f"{'http' if insecure else 'https'}://{host}"
        self.credentials = credentials
        self.timeout = timeout
        self._tokens: dict[str, str] = {}
        self._client = httpx.AsyncClient(
            timeout=timeout, follow_redirects=True, headers={"User-Agent": USER_AGENT}
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _error(self, what: str, response: httpx.Response) -> SourceError:
        code = ""
        try:
            errors = response.json().get("errors") or []
            if errors:
                code = str(errors[0].get("code", ""))
        except (ValueError, AttributeError):
            pass
        status = response.status_code
        if status in (401, 403):
            reason = "AuthFailed"
            hint = "credentials rejected" if self.credentials.basic else "authentication required"
        elif status == 404:
            reason = "RepositoryNotFound" if code == "NAME_UNKNOWN" else "RefNotFound" if code == "MANIFEST_UNKNOWN" else "NotFound"
            hint = code.lower().replace("_", " ") or "not found"
        elif status == 429 or status >= 500:
            reason, hint = "NetworkError", "server error"
        else:
            reason, hint = "FetchFailed", code.lower().replace("_", " ") or "unexpected response"
        return SourceError(f"registry {self.host}: {what}: HTTP {status} ({hint})", reason=reason)

    def _may_send_credentials(self, realm: str) -> bool:
        """Basic credentials go to an https realm, or over http only to this registry's own host
        when it is configured ``insecure`` (a loopback test registry); never to a plain-http
        realm elsewhere, where anyone on the path could read them."""
        import httpx

        url = httpx.URL(realm)
        if url.scheme == "https":
            return True
        return url.scheme == "http" and self.base.startswith("http://") and url.host == httpx.URL(self.base).host

    async def _token(self, challenge: str, *, renew: bool = False) -> str | None:
        import httpx

        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", None)
        if not realm:
            return None
        key = json.dumps(params, sort_keys=True)
        if renew:
            self._tokens.pop(key, None)
        if key in self._tokens:
            return self._tokens[key]
        auth = self.credentials.basic
        if auth and not self._may_send_credentials(realm):
            raise SourceError(
                f"registry {self.host}: token realm {realm} is not https: credentials not sent "
                "(only https realms, or the registry's own host when insecure = true, get them)",
                reason="AuthFailed",
            )
        response = await self._client.get(realm, params=params, auth=auth if auth else httpx.USE_CLIENT_DEFAULT)
        if response.status_code != 200:
            raise SourceError(
                f"registry {self.host}: token request to {realm} failed: HTTP {response.status_code}", reason="AuthFailed"
            )
        data = response.json()
        token = data.get("token") or data.get("access_token")
        if not isinstance(token, str):
            raise SourceError(f"registry {self.host}: token response has no token", reason="AuthFailed")
        Secret(token)  # scrubbed if it ever shows up in a message
        self._tokens[key] = token
        return token

    async def request(self, what: str, path: str, *, accept: str = "", stream_limit: int | None = None) -> httpx.Response:
        """GET ``/v2/<path>`` with auth and a deadline; errors are SourceErrors naming ``what``."""
        import httpx

        url = f"{self.base}/v2/{path}"
        headers = {"Accept": accept} if accept else {}
        try:
            with anyio.fail_after(self.timeout):
                response = await self._get(url, headers, stream_limit, what)
                if response.status_code == 401:
                    challenge = response.headers.get("WWW-Authenticate", "")
                    if challenge.lower().startswith("bearer"):
                        params = challenge[len("bearer"):].strip()
                        token = await self._token(params)
                        if token:
                            response = await self._get(url, {**headers, "Authorization": f"Bearer {token}"}, stream_limit, what)
                            if response.status_code == 401:  # the cached token expired or was revoked: ask again
                                token = await self._token(params, renew=True)
                                if token:
                                    response = await self._get(
                                        url, {**headers, "Authorization": f"Bearer {token}"}, stream_limit, what
                                    )
                    elif challenge.lower().startswith("basic") and self.credentials.basic:
                        user, password = self.credentials.basic
                        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
                        response = await self._get(url, {**headers, "Authorization": f"Basic {basic}"}, stream_limit, what)
        except TimeoutError:
            raise SourceError(f"registry {self.host}: {what}: timed out after {self.timeout:g}s", reason="Timeout") from None
        except httpx.TimeoutException:
            raise SourceError(f"registry {self.host}: {what}: timed out after {self.timeout:g}s", reason="Timeout") from None
        except httpx.HTTPError as exc:
            raise SourceError(f"registry {self.host}: {what}: {type(exc).__name__}: {exc}", reason="NetworkError") from None
        if response.status_code != 200:
            raise self._error(what, response)
        return response

    async def _get(self, url: str, headers: dict[str, str], limit: int | None, what: str) -> httpx.Response:
        if limit is None:
            return await self._client.get(url, headers=headers)
        async with self._client.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                await response.aread()
                return response
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > limit:
                raise SourceError(f"registry {self.host}: {what} is {declared} bytes, over the limit of {limit}",
                                  reason="TooLarge")
            chunks = []
            total = 0
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if total > limit:
                    raise SourceError(f"registry {self.host}: {what} is over the limit of {limit} bytes", reason="TooLarge")
                chunks.append(chunk)
            response._content = b"".join(chunks)
            return response

    async def tags(self, repo: str) -> list[str]:
        response = await self.request(f"tags of {repo}", f"{repo}/tags/list?n=10000")
        tags = response.json().get("tags") or []
        return [t for t in tags if isinstance(t, str)]

    async def manifest(self, repo: str, reference: str) -> tuple[dict[str, Any], str]:
        """The image manifest (parsed) and its digest, verified."""
        response = await self.request(f"manifest {repo}:{reference}", f"{repo}/manifests/{reference}",
                                      accept=MANIFEST_TYPES, stream_limit=4 * 1024 * 1024)
        body = response.content
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        expected = reference if _DIGEST.match(reference) else response.headers.get("Docker-Content-Digest", digest)
        if expected != digest:
            raise SourceError(f"registry {self.host}: manifest {repo}@{expected} has digest {digest}",
                              reason="VerificationFailed")
        try:
            manifest = json.loads(body)
        except ValueError:
            raise SourceError(f"registry {self.host}: manifest {repo}:{reference} is not JSON", reason="FetchFailed") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
            raise SourceError(f"registry {self.host}: {repo}:{reference} is not an image manifest (an index?)",
                              reason="FetchFailed")
        return manifest, digest

    async def blob(self, repo: str, descriptor: dict[str, Any], limit: int) -> bytes:
        """A layer's bytes, size-limited and verified against its digest."""
        digest = checked_digest(descriptor.get("digest"), f"registry {self.host}: layer of {repo}")
        size = int(descriptor.get("size") or 0)
        if size > limit:
            raise SourceError(f"registry {self.host}: layer {digest} of {repo} is {size} bytes, over the limit of {limit}",
                              reason="TooLarge")
        response = await self.request(f"layer {digest} of {repo}", f"{repo}/blobs/{digest}", stream_limit=limit)
        data = response.content
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise SourceError(f"registry {self.host}: layer of {repo} should have digest {digest}, got {actual}",
                              reason="VerificationFailed")
        return data
