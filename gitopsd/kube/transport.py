"""HTTP/1.1 requests to one API server on kept-alive connections (asyncio protocols, httptools).

aiohttp builds a ClientRequest, a ClientResponse, a timer, multidicts and a URL object for
every request: about 0.3 ms of CPU per apply, a third of the daemon's CPU during a cold
converge (bench 1000x5). Here a request is one write of the head and body and one feed of
the answer to httptools' C parser (llhttp, the parser aiohttp and uvicorn use): about
0.08 ms. Watches are answers read line by line as they arrive (:meth:`Transport.stream`).
Clusters reached through an HTTP proxy stay on aiohttp (:mod:`gitopsd.kube.client`).

TLS is the :class:`ssl.SSLContext` kubernetes-asyncio built from the kubeconfig (CA,
client certificate, ``insecure-skip-tls-verify``), with the same server name check; made a
:class:`ResumingContext`, new connections resume the TLS session of an earlier one.
Errors are the standard library's: ``ConnectionError`` (and :class:`ssl.SSLError`,
``OSError``) when the connection fails or ends before the whole answer, ``TimeoutError``
when the answer takes longer than the request's timeout.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote

import httptools

STREAM_HIGH_WATER = 4 * 1024 * 1024
"""Bytes of a stream's answer buffered, not yet read, before the connection stops reading."""

KEEPALIVE_SECONDS = 15.0
"""Idle connections older than this are closed, not reused (aiohttp's default as well)."""

_PLAIN_TARGET = re.compile(r"[A-Za-z0-9/._~:@!$&'()*+,;=%?-]*")
"""Request targets that need no quoting (what paths of Kubernetes names and encoded queries hold)."""


class ConnectionLost(ConnectionError):
    """The connection closed (or sent something that is not HTTP) before the whole answer."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer: status code, the whole body, and its ``Retry-After`` header if any."""

    status: int
    body: bytes
    retry_after: str | None


class ResumingContext(ssl.SSLContext):
    """A client TLS context whose new connections offer the session an earlier one received.

    A full handshake costs the client about 7 M instructions, most of them decoding and
    verifying the server's certificate chain (OpenSSL 3): 5.6 % of the daemon's instructions
    in a cold converge at 100x10, whose bursts open ~36 connections (every watch holds one). A
    resumed handshake skips the certificates: the server proved who it is, against this
    context's CAs and server name, in the handshake that gave the session. A server that does
    not take the session answers with a full handshake. Sessions stay in memory, the last
    one per server name; nothing else about the context changes.
    """

    _sessions: dict[str | None, ssl.SSLSession]

    def wrap_bio(  # type: ignore[override]
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        if session is None and not server_side:
            session = self._sessions.get(server_hostname)
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)

    def keep_session(self, server_hostname: str | None, ssl_object: ssl.SSLObject) -> None:
        """Offer ``ssl_object``'s session to the next connections to ``server_hostname``.

        Called once the connection has read an answer: a TLS 1.3 server sends its session
        tickets after the handshake.
        """
        session = ssl_object.session
        if session is not None:
            self._sessions[server_hostname] = session


def resuming(context: ssl.SSLContext) -> ResumingContext:
    """``context`` itself, made a :class:`ResumingContext` (every setting kept as it is).

    The class changes in place rather than a new context being built, so the context stays
    exactly what ``ssl.create_default_context`` made for the library on this Python version.
    """
    context.__class__ = ResumingContext
    resumed = cast(ResumingContext, context)
    resumed._sessions = {}
    return resumed


class _Connection(asyncio.Protocol):
    """One kept-alive connection: at most one request in flight, answers parsed as they arrive.

    A request either waits for the whole answer (``answer``) or reads it as a stream
    (``stream``: the head completes ``answer``, the body goes to the stream as it arrives).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.answer: asyncio.Future[Answer] | None = None
        self.stream: Stream | None = None
        self.closed = False
        self.received = False
        self.used = time.monotonic()
        self._chunks: list[bytes] = []
        self._retry_after: str | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ConnectionLost("the API server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(ConnectionLost(f"invalid HTTP answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionLost(f"connection lost: {exc}" if exc else "the API server closed the connection"))

    def eof_received(self) -> bool:
        return False  # close our side too

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 11 and name.lower() == b"retry-after":
            self._retry_after = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if self.stream is not None and self.parser.get_status_code() == 200:
            answer, self.answer = self.answer, None
            if answer is not None and not answer.done():
                answer.set_result(Answer(200, b"", self._retry_after))

    def on_body(self, body: bytes) -> None:
        if self.stream is not None and self.answer is None:
            self.stream._feed(body)
        else:
            self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self.stream is not None and self.answer is None:
            self.stream._end(None)
            self.close()  # a watch's connection is not reused
            return
        answer, self.answer = self.answer, None
        body = b"".join(self._chunks)
        self._chunks = []
        result = Answer(self.parser.get_status_code(), body, self._retry_after)
        self._retry_after = None
        if not self.parser.should_keep_alive():
            self.close()
        if answer is not None and not answer.done():
            answer.set_result(result)

    # ours

    def send(self, data: bytes, answer: asyncio.Future[Answer]) -> None:
        assert self.transport is not None and self.answer is None
        self.answer = answer
        self.received = False
        self.transport.write(data)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now (an answer may be half read: it cannot be reused)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: Exception) -> None:
        answer, self.answer = self.answer, None
        self.abort()
        if answer is not None and not answer.done():
            answer.set_exception(exc)
        if self.stream is not None:
            self.stream._end(exc)


def _header_lines(headers: list[tuple[str, str]]) -> str:
    """``Name: value`` lines for ``headers``; ValueError for a line break in a name or value."""
    lines = []
    for name, value in headers:
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise ValueError(f"header {name!r}: a line break is not allowed in a header")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines)


def _time_out(answer: asyncio.Future[Answer]) -> None:
    if not answer.done():
        answer.set_exception(TimeoutError())


class Stream:
    """A 200 answer read as it arrives, line by line (a watch). Close it when done.

    ``readline`` waits at most ``idle_timeout`` seconds for the next line (TimeoutError);
    it returns ``b""`` once the server ended the answer, and raises ConnectionLost when
    the connection broke in the middle.
    """

    def __init__(self, conn: _Connection, idle_timeout: float | None):
        self._conn = conn
        self._idle_timeout = idle_timeout
        self._buffer = bytearray()
        self._ended = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    async def readline(self) -> bytes:
        """The next line with its ``\n`` (the last one may lack it), or ``b""`` at the end."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                self._resume()
                return line
            if self._error is not None:
                raise self._error
            if self._ended:
                line = bytes(self._buffer)
                self._buffer.clear()
                return line
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(self._idle_timeout):
                    await self._waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        """Drop the connection (the server's answer may still be running)."""
        self._conn.stream = None
        self._conn.abort()
        self._ended = True

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def _feed(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > STREAM_HIGH_WATER and not self._paused and self._conn.transport is not None:
            self._paused = True
            self._conn.transport.pause_reading()
        self._wake()

    def _end(self, error: Exception | None) -> None:
        if not self._ended and self._error is None:
            self._ended = error is None
            self._error = error
        self._wake()

    def _resume(self) -> None:
        if self._paused and len(self._buffer) <= STREAM_HIGH_WATER // 2 and self._conn.transport is not None:
            self._paused = False
            self._conn.transport.resume_reading()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Transport:
    """Requests to one API server; idle connections are kept for the next request.

    Args:
        host: Host name or address of the server (``Host`` header and TCP connection).
        port: TCP port.
        ssl_context: TLS settings, or None for plain HTTP.
        server_hostname: The name the certificate must carry (default: ``host``).
        unix_socket: Connect to this unix socket instead of ``host:port`` (the SSH tunnel's end).
        connect_timeout: Seconds a new connection (with its TLS handshake) may take.
        max_idle: Idle connections kept at most (one per concurrent request is enough).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None = None,
        unix_socket: str | None = None,
        connect_timeout: float = 10.0,
        max_idle: int = 64,
    ):
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._server_hostname = (server_hostname or host) if ssl_context is not None else None
        self._unix_socket = unix_socket
        self._connect_timeout = connect_timeout
        self._max_idle = max_idle
        self._idle: deque[_Connection] = deque()
        # Formatted header lines by header list: the same few lists come with every request.
        self._header_lines: dict[tuple[tuple[str, str], ...], str] = {}
        # TLS handshakes of the connections made so far, full and resumed (a ResumingContext)
        self.handshakes = {"full": 0, "resumed": 0}
        self._busy: set[_Connection] = set()
        netloc = f"[{host}]" if ":" in host else host
        default = 443 if ssl_context is not None else 80
        self._host_line = f"Host: {netloc}{'' if port == default else f':{port}'}\r\n"

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        *,
        timeout: float | None,
    ) -> Answer:
        """Send ``method target`` with ``headers`` (names may repeat) and ``body``; the whole answer.

        ``target`` is the path and query; characters a request line cannot carry are
        percent-encoded. A header name or value with a line break raises ValueError (it
        would split the request). A kept-alive connection the server closed while idle is
        replaced once, transparently, unless the request is a POST (it may have been
        received).
        """
        data = self._message(method, target, headers, body)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        for attempt in (0, 1):
            conn = self._idle_connection()
            reused = conn is not None
            if conn is None:
                async with asyncio.timeout_at(deadline):  # a new connection counts against the deadline too
                    conn = await self._connect()
                self._busy.add(conn)
            answer: asyncio.Future[Answer] = loop.create_future()
            # A timer on the answer rather than an asyncio.timeout (a task-level scope): a third
            # of the transport's own CPU per request.
            timer = None if deadline is None else loop.call_at(deadline, _time_out, answer)
            conn.send(data, answer)
            try:
                result = await answer
            except ConnectionLost:
                if reused and not conn.received and attempt == 0 and method != "POST":
                    continue  # closed by the server while idle: once more on a new connection
                raise
            except BaseException:
                conn.abort()  # cancelled or timed out mid-answer: the connection is unusable
                raise
            finally:
                if timer is not None:
                    timer.cancel()
                self._busy.discard(conn)
            if not reused:
                self._handshake_done(conn)
            self._release(conn)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def stream(
        self, target: str, headers: list[tuple[str, str]], *, connect_timeout: float, idle_timeout: float | None
    ) -> Answer | Stream:
        """GET ``target`` on a connection of its own; a :class:`Stream` of the body once the
        server answered 200, or the whole (error) :class:`Answer` otherwise.

        ``connect_timeout`` bounds the connection and the answer's head; ``idle_timeout``
        every wait for the next line.
        """
        data = self._message("GET", target, headers, None)
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        async with asyncio.timeout(connect_timeout):
            conn = await self._connect()
            conn.stream = stream = Stream(conn, idle_timeout)
            conn.send(data, answer)
            try:
                head = await answer
            except BaseException:
                conn.abort()
                raise
        self._handshake_done(conn)
        if head.status == 200 and conn.answer is None and not head.body:
            return stream
        conn.stream = None
        conn.abort()
        return head

    def _message(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None) -> bytes:
        if not _PLAIN_TARGET.fullmatch(target):
            target = quote(target, safe="/:@!$&'()*+,;=?%-._~")
        key = tuple(headers)
        lines = self._header_lines.get(key)
        if lines is None:
            lines = _header_lines(headers)
            if len(self._header_lines) >= 256:
                self._header_lines.clear()  # bounded; a few sets of headers repeat (per content type, per app)
            self._header_lines[key] = lines
        length = f"Content-Length: {len(body or b'')}\r\n" if body is not None or method in ("POST", "PUT", "PATCH") else ""
        return f"{method} {target} HTTP/1.1\r\n{self._host_line}{lines}{length}\r\n".encode("latin-1") + (body or b"")

    def _idle_connection(self) -> _Connection | None:
        """The most recently used idle connection still open and fresh, now busy; None if none."""
        idle = self._idle
        stale = time.monotonic() - KEEPALIVE_SECONDS
        while idle:
            conn = idle.pop()
            if conn.closed or conn.used < stale:
                conn.close()
                continue
            self._busy.add(conn)
            return conn
        return None

    def _handshake_done(self, conn: _Connection) -> None:
        """Count a new connection's TLS handshake, and keep its session for the next ones."""
        context = self._ssl
        if not isinstance(context, ResumingContext) or conn.transport is None:
            return
        ssl_object = conn.transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        if ssl_object.session_reused:
            self.handshakes["resumed"] += 1
        else:
            # A new session (the first, or the one kept expired): the next connections resume it.
            # A resumed connection's session is not read: that costs as much as a resumption
            # saves (Python 3.11 copies it through DER, certificates included).
            self.handshakes["full"] += 1
            context.keep_session(self._server_hostname, ssl_object)

    def _release(self, conn: _Connection) -> None:
        if conn.closed:
            return
        conn.used = time.monotonic()
        self._idle.append(conn)
        while len(self._idle) > self._max_idle:
            self._idle.popleft().close()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._connect_timeout):
            if self._unix_socket is not None:
                _, conn = await loop.create_unix_connection(
                    _Connection, self._unix_socket, ssl=self._ssl, server_hostname=self._server_hostname
                )
            else:
                _, conn = await loop.create_connection(
                    _Connection, self._host, self._port, ssl=self._ssl, server_hostname=self._server_hostname
                )
        return conn

    async def close(self) -> None:
        """Close every connection (requests in flight fail with ConnectionLost)."""
        for conn in [*self._idle, *self._busy]:
            conn.close()
        self._idle.clear()
        self._busy.clear()
        await asyncio.sleep(0)  # let the transports run their close callbacks
