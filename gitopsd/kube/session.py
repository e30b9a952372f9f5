"""A cluster behind an HTTP proxy: its requests and watches on kubernetes-asyncio's aiohttp session.

Every other cluster's requests go on :class:`gitopsd.kube.transport.Transport`.
:class:`gitopsd.kube.client.KubeClient` imports this module only when a proxy is in the way
(the kubeconfig's ``proxy-url``, or ``HTTPS_PROXY`` unless ``NO_PROXY`` names the server):
importing aiohttp's client builds two TLS contexts from the system's CA bundle, about 85 ms
of CPU, a twentieth of the daemon's whole CPU for a 100-app cold converge.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any
from urllib.parse import urlencode

import aiohttp


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


async def open_api(
    api_client_type: Any,
    configuration: Any,
    *,
    unix_socket: str | None,
    proxy: str | None,
    trust_env: bool,
) -> Any:
    """kubernetes-asyncio's ApiClient for ``configuration``, its aiohttp session set up for gitopsd.

    ``proxy`` is the environment's proxy for the server (the kubeconfig's ``proxy-url`` is
    the library's already and wins). ``trust_env`` leaves the proxy to aiohttp, which then
    reads the environment on every request (a proxy variable with credentials); otherwise
    the session never reads it: aiohttp would look up ``~/.netrc`` in a worker thread and
    parse the variables again for every request, half the client's CPU per apply.
    With ``unix_socket`` (the SSH tunnel's local end) every connection goes to that socket,
    with the TLS context the library built (its CA, client certificate and server name).
    """
    api = api_client_type(configuration=configuration)
    rest = api.rest_client
    if unix_socket is not None:
        tcp = rest.pool_manager
        assert isinstance(tcp.connector, aiohttp.TCPConnector)
        rest.pool_manager = aiohttp.ClientSession(
            connector=UnixTLSConnector(unix_socket, limit=configuration.connection_pool_maxsize,
                                       ssl=tcp.connector._ssl),  # the context the library built
            trust_env=False,  # no proxy between us and our own socket
            read_bufsize=2**21,
        )
        await tcp.close()
        return api
    if proxy is not None and not rest.proxy:
        rest.proxy = proxy
    rest.pool_manager._trust_env = trust_env
    return api


def request_timeout(total: float) -> aiohttp.ClientTimeout:
    """One request's time limit on the session."""
    return aiohttp.ClientTimeout(total=total)


def watch_timeout(connect: float, idle: float) -> aiohttp.ClientTimeout:
    """A watch's limits on the session: connecting, and silence between two reads (no total)."""
    return aiohttp.ClientTimeout(total=None, connect=connect, sock_read=idle)


async def send(
    api: Any,
    method: str,
    path: str,
    query: list[tuple[str, str]] | None,
    data: bytes | None,
    headers: list[tuple[str, str]],
    limits: aiohttp.ClientTimeout,
) -> aiohttp.ClientResponse:
    """Send one request on the library's aiohttp session; the caller reads and releases the answer."""
    rest = api.rest_client
    url = f"{api.configuration.host}{path}" + ("?" + urlencode(query) if query else "")
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


class SessionStream:
    """A watch on aiohttp's session, read like a transport stream (:class:`gitopsd.kube.client.LineStream`)."""

    def __init__(self, response: aiohttp.ClientResponse):
        self._response = response

    async def readline(self) -> bytes:
        return await self._response.content.readline()

    def close(self) -> None:
        self._response.close()

    async def __aenter__(self) -> SessionStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
