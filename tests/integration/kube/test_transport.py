"""The requests' HTTP/1.1 transport against a loopback server that answers exactly as scripted.

The sandbox covers TLS, the unix socket of the tunnel and every API answer (the rest of
tests/integration/kube); this server covers what the sandbox never does: closing a kept-alive
connection, chunked answers, ``Connection: close``, silence and garbage.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

from gitopsd.kube.client import KubeClient
from gitopsd.kube.transport import Answer, ConnectionLost, Transport
from gitopsd.plugin.config import ClusterConfig

pytestmark = pytest.mark.anyio

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

Script = Callable[[int, int, bytes], bytes | None]
"""(connection number, request number on it, request head) -> what to send back; None closes."""


class ScriptedServer:
    """An HTTP/1.1 server on loopback that records requests and answers as ``script`` says."""

    def __init__(self, script: Script):
        self.script = script
        self.connections = 0
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.eofs = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        number = self.connections
        count = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.eofs += 1
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                self.heads.append(head)
                self.bodies.append(await reader.readexactly(length))
                count += 1
                reply = self.script(number, count, head)
                if reply is None:
                    return
                writer.write(reply)
                await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Script], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def make(script: Script) -> ScriptedServer:
        server = ScriptedServer(script)
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


async def started(server: ScriptedServer) -> Transport:
    await server.start()
    return Transport("127.0.0.1", server.port, ssl_context=None)


async def test_requests_share_one_kept_alive_connection(serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(lambda conn, n, head: OK)
    transport = await started(server)
    for _ in range(5):
        answer = await transport.request("GET", "/api/v1/namespaces", [("Accept", "application/json")], None, timeout=5)
        assert (answer.status, answer.body) == (200, b"{}")
    await transport.close()
    assert server.connections == 1 and len(server.heads) == 5
    assert server.heads[0].startswith(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: 127.0.0.1:")


async def test_a_connection_closed_by_the_server_is_replaced_once_unless_the_request_is_a_post(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    # The second request on every connection finds it closed (a server's keep-alive timeout
    # racing our request): a GET or PATCH goes again on a new connection, a POST is not repeated.
    server = serve(lambda conn, n, head: OK if n == 1 else None)
    transport = await started(server)
    for method in ("GET", "PATCH"):
        await transport.request(method, "/a", [], b"{}" if method == "PATCH" else None, timeout=5)
        answer = await transport.request(method, "/b", [], b"{}" if method == "PATCH" else None, timeout=5)
        assert answer.status == 200
    # GET /a, /b (found closed), /b again on a new connection; PATCH /a (closed), /a, /b (closed), /b.
    sent = [h.split(b" ")[1] for h in server.heads]
    assert server.connections == 4 and sent == [b"/a", b"/b", b"/b", b"/a", b"/a", b"/b", b"/b"]
    with pytest.raises(ConnectionLost):  # the second request on the fourth connection
        await transport.request("POST", "/c", [], b"{}", timeout=5)
    assert server.heads[-1].startswith(b"POST /c ") and len(server.heads) == 8
    await transport.close()


async def test_chunked_answers_retry_after_and_connection_close(serve: Callable[[Script], ScriptedServer]) -> None:
    chunked = (
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\n\r\n"
    )
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n[]"
    server = serve(lambda conn, n, head: chunked if b" /chunked " in head else closing)
    transport = await started(server)
    answer = await transport.request("GET", "/chunked", [], None, timeout=5)
    assert (answer.status, answer.body, answer.retry_after) == (429, b'{"a": 1}', "3")
    assert (await transport.request("GET", "/closing", [], None, timeout=5)).body == b"[]"
    assert (await transport.request("GET", "/closing", [], None, timeout=5)).body == b"[]"
    await transport.close()
    assert server.connections == 2  # the chunked answer kept its connection; "close" did not


async def test_a_silent_server_times_out_and_the_connection_is_dropped(serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(lambda conn, n, head: b"" if b" /slow " in head else OK)  # /slow never gets an answer
    transport = await started(server)
    with pytest.raises(TimeoutError):
        await transport.request("GET", "/slow", [], None, timeout=0.3)
    with anyio.fail_after(5):
        while server.eofs < 1:  # the connection was closed, not left open beside the pool
            await asyncio.sleep(0.01)
    assert (await transport.request("GET", "/next", [], None, timeout=5)).status == 200
    await transport.close()
    assert server.connections == 2  # the timed-out connection was not reused


async def test_garbage_is_a_lost_connection(serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(lambda conn, n, head: b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
    transport = await started(server)
    with pytest.raises(ConnectionLost, match="invalid HTTP answer"):
        await transport.request("GET", "/", [], None, timeout=5)
    await transport.close()


async def test_headers_cannot_split_the_request_and_targets_are_encoded(serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(lambda conn, n, head: OK)
    transport = await started(server)
    with pytest.raises(ValueError, match="Impersonate-User"):
        await transport.request("GET", "/", [("Impersonate-User", "alice\r\nX-Evil: 1")], None, timeout=5)
    await transport.request("GET", "/api/v1/namespaces/a b/configmaps?labelSelector=x%3Dy", [("A", "b")], None, timeout=5)
    await transport.close()
    assert len(server.heads) == 1
    assert server.heads[0].startswith(b"GET /api/v1/namespaces/a%20b/configmaps?labelSelector=x%3Dy HTTP/1.1\r\n")
    assert b"\r\nA: b\r\n" in server.heads[0]


async def test_bodies_go_with_their_length(serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(lambda conn, n, head: OK)
    transport = await started(server)
    await transport.request("PATCH", "/x", [("Content-Type", "application/apply-patch+yaml")], b'{"kind":"ConfigMap"}', timeout=5)
    await transport.request("DELETE", "/x", [], None, timeout=5)
    await transport.close()
    assert server.bodies == [b'{"kind":"ConfigMap"}', b""]
    assert b"Content-Length: 20\r\n" in server.heads[0] and b"Content-Length" not in server.heads[1]


def kubeconfig(path: Path, server: str, proxy: str | None = None) -> Path:
    proxy_line = f"\n    proxy-url: {proxy}" if proxy else ""
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters:\n- name: c\n  cluster:\n    server: {server}{proxy_line}\n"
        "users:\n- name: u\n  user:\n    token: secret-token\n"
        "contexts:\n- name: c\n  context: {cluster: c, user: u}\n"
    )
    return path


async def test_the_client_sends_its_requests_on_the_transport_with_its_credentials(
    serve: Callable[[Script], ScriptedServer], tmp_path: Path
) -> None:
    server = serve(lambda conn, n, head: OK)
    await server.start()
    config = ClusterConfig(kubeconfig=kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{server.port}"))
    changes: list[tuple[bool, str]] = []
    client = KubeClient("c", config, lambda up, why: changes.append((up, why)))
    await client.open()
    try:
        assert await client.request("GET", "/api/v1/namespaces/default") == {}
        await client.request("PATCH", "/api/v1/namespaces/default", body={"a": 1}, content_type="application/apply-patch+yaml",
                             query=[("fieldManager", "gitopsd")],
                             headers=[("Impersonate-Group", "g1"), ("Impersonate-Group", "g2")])
    finally:
        await client.close()
    assert server.connections == 1 and changes == []
    patch = server.heads[1]
    assert patch.startswith(b"PATCH /api/v1/namespaces/default?fieldManager=gitopsd HTTP/1.1\r\n")
    for line in (b"authorization: bearer secret-token", b"content-type: application/apply-patch+yaml",
                 b"impersonate-group: g1", b"impersonate-group: g2", b"user-agent: gitopsd/"):
        assert line in patch.lower()
    assert b"accept-encoding" not in patch.lower()  # aiohttp's session would have asked for gzip
    assert server.bodies[1] == b'{"a":1}'


async def test_a_cluster_behind_a_proxy_keeps_the_library_session(tmp_path: Path) -> None:
    config = ClusterConfig(kubeconfig=kubeconfig(tmp_path / "kc", "https://api.example:6443", proxy="http://127.0.0.1:9"))
    client = KubeClient("c", config, lambda up, why: None)
    await client.open()
    try:
        assert client._direct is None  # the proxy is aiohttp's to speak to
    finally:
        await client.close()


async def test_a_stream_gives_each_line_as_it_arrives_then_the_end(serve: Callable[[Script], ScriptedServer]) -> None:
    # The script answers the head and a first event; the test writes the rest.
    server = serve(lambda conn, n, head: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"10\r\n{\"type\":\"ADDED\"}\r\n")
    transport = await started(server)
    stream = await transport.stream("/api/v1/configmaps?watch=true", [], connect_timeout=5, idle_timeout=5)
    assert not isinstance(stream, Answer)
    async with stream:
        # A line is not complete before its newline: the next chunk carries it and a second event.
        task = asyncio.create_task(stream.readline())
        await asyncio.sleep(0.05)
        assert not task.done()
        writer = server._writers[0]
        writer.write(b"18\r\n\n{\"type\":\"MODIFIED\"}\n{\"x\r\n")
        assert await task == b'{"type":"ADDED"}\n'
        assert await stream.readline() == b'{"type":"MODIFIED"}\n'
        writer.write(b"3\r\n\":1\r\n0\r\n\r\n")  # the last line has no newline, then the end
        assert await stream.readline() == b'{"x":1'
        assert await stream.readline() == b""
    await transport.close()


async def test_a_stream_that_fails_answers_whole_and_an_idle_or_broken_one_raises(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    gone = b'{"kind":"Status","code":410}'
    server = serve(lambda conn, n, head: (
        b"HTTP/1.1 410 Gone\r\nContent-Length: %d\r\n\r\n%s" % (len(gone), gone) if b"/gone" in head
        else b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
    transport = await started(server)
    answer = await transport.stream("/gone", [], connect_timeout=5, idle_timeout=5)
    assert isinstance(answer, Answer) and (answer.status, answer.body) == (410, gone)

    quiet = await transport.stream("/quiet", [], connect_timeout=5, idle_timeout=0.2)
    assert not isinstance(quiet, Answer)
    with pytest.raises(TimeoutError):
        await quiet.readline()
    quiet.close()

    broken = await transport.stream("/broken", [], connect_timeout=5, idle_timeout=5)
    assert not isinstance(broken, Answer)
    server._writers[-1].write(b"4\r\nab")
    await asyncio.sleep(0.05)
    server._writers[-1].close()  # in the middle of a chunk
    with pytest.raises(ConnectionLost):
        await broken.readline()
    await transport.close()
    assert server.connections == 3  # every stream on a connection of its own
