"""SSH tunnel to an API server only the bastion's jump hosts can reach (the only asyncssh user).

A local listener on a unix socket (stable for the tunnel's life) forwards each accepted
connection through the SSH connection (``direct-tcpip``) to the API server's ``host:port``
as the SSH server resolves it. The socket lives in a fresh directory of mode 0700 owned by
the daemon's user, so no other local user can use the tunnel (nothing listens on TCP). The
HTTP client connects to the socket and still verifies TLS against the real server name and
CA (``tls_server_name``), so the tunnel is only a pipe. The maintenance task survives any
error (a bad or half-rotated key raises KeyImportError): it reports the tunnel down with the
reason and retries with backoff. Host keys are checked strictly against the configured ``known_hosts`` (no
trust on first use), keys come only from ``identity_file`` (no agent, no ~/.ssh/config), and
up to two jump hosts are chained. When the SSH connection drops it is re-established with
backoff; connections accepted meanwhile wait for it, and requests that were in flight fail
and are retried by the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import anyio
import asyncssh
import structlog

from gitopsd.kube.background import Background
from gitopsd.kube.client import backoff
from gitopsd.plugin.config import SSHConfig, SSHHop

log = structlog.get_logger("gitopsd.kube.tunnel")

CONNECT_TIMEOUT = 10.0
WAIT_FOR_TUNNEL = 15.0
"""How long an accepted local connection waits for the SSH connection to be (re)established."""


class Tunnel:
    """A self-healing local port forward through SSH (optionally via jump hosts).

    Args:
        name: The cluster's name (for logs).
        ssh: The ``[clusters.NAME.ssh]`` table.
        dest_host, dest_port: The API server as the last SSH hop reaches it.
        on_state: Called with (up, detail) when the SSH connection comes up or goes down.
        background: Where the maintenance task runs (the cluster pool's); by default its own,
            entered by :meth:`start` and left by :meth:`close` (from the same task).
    """

    def __init__(
        self,
        name: str,
        ssh: SSHConfig,
        dest_host: str,
        dest_port: int,
        *,
        on_state: Callable[[bool, str], None] | None = None,
        background: Background | None = None,
    ):
        self.name = name
        self._owns_background = background is None
        self._background = background or Background(f"ssh tunnel {name}")
        self._maintenance: anyio.CancelScope | None = None
        self.ssh = ssh
        self.dest_host = dest_host
        self.dest_port = dest_port
        self._on_state = on_state or (lambda up, detail: None)
        self._conn: asyncssh.SSHClientConnection | None = None
        self._ready = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0  # kept for callers that print it: there is no TCP port any more
        self.socket_path = ""
        """The unix socket of the tunnel's local end (in a private 0700 directory)."""
        self._socket_dir = ""
        self.connects = 0
        """How many times the SSH connection was established (tests, metrics)."""

    async def start(self) -> str:
        """Listen on a private unix socket and start connecting in the background; the socket's path."""
        self._socket_dir = tempfile.mkdtemp(prefix="gitopsd-tunnel-")  # mode 0700, ours
        os.chmod(self._socket_dir, 0o700)
        self.socket_path = os.path.join(self._socket_dir, "api.sock")
        self._server = await asyncio.start_unix_server(self._accept, path=self.socket_path)
        os.chmod(self.socket_path, 0o600)
        if self._owns_background:
            await self._background.open()
        self._maintenance = self._background.start(self._maintain, name=f"ssh tunnel {self.name}")
        return self.socket_path

    async def close(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
        if self._owns_background:
            await self._background.aclose()
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        if self._socket_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def disconnect(self) -> None:
        """Drop the current SSH connection (it is re-established): for operators and tests."""
        if self._conn is not None:
            self._conn.abort()

    @property
    def up(self) -> bool:
        return self._ready.is_set()

    async def _connect_hop(
        self, hop: SSHHop, via: asyncssh.SSHClientConnection | None
    ) -> asyncssh.SSHClientConnection:
        return await asyncssh.connect(
            hop.host,
            hop.port,
            tunnel=via if via is not None else (),
            username=hop.user,
            client_keys=[str(hop.identity_file)],
            known_hosts=str(hop.known_hosts),
            agent_path=None,
            config=[],
            preferred_auth="publickey",
            connect_timeout=CONNECT_TIMEOUT,
            keepalive_interval=5,
            keepalive_count_max=3,
        )

    async def _maintain(self) -> None:
        attempt = 0
        while True:
            chain: list[asyncssh.SSHClientConnection] = []
            try:
                via = None
                for hop in [*self.ssh.jump, self.ssh]:
                    via = await self._connect_hop(hop, via)
                    chain.append(via)
                assert via is not None
                self._conn = via
                self.connects += 1
                self._ready.set()
                self._on_state(True, f"connected to {self.ssh.host}:{self.ssh.port}")
                attempt = 0
                await via.wait_closed()
                detail = "ssh connection closed"
            except asyncio.CancelledError:
                self._ready.clear()
                for conn in reversed(chain):
                    conn.abort()
                raise
            except (TimeoutError, OSError, asyncssh.Error) as exc:
                detail = f"ssh: {type(exc).__name__}: {exc}".splitlines()[0][:200]
                log.warning("ssh tunnel failed", cluster=self.name, error=detail)
            except Exception as exc:  # e.g. KeyImportError from a bad or half-rotated key: retry, never die
                detail = f"ssh: {type(exc).__name__}: {exc}".splitlines()[0][:200]
                log.warning("ssh tunnel failed", cluster=self.name, error=detail, exc_info=True)
            self._ready.clear()
            self._conn = None
            for conn in reversed(chain):
                conn.abort()
            try:
                self._on_state(False, detail)
            except Exception:
                log.exception("tunnel state callback failed", cluster=self.name)
            await asyncio.sleep(backoff(attempt, base=0.1, cap=5.0) + 0.05)
            attempt += 1

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._pipes.add(task)
        # The task ends here on close(): asyncio's server callback would log a cancelled task.
        with contextlib.suppress(asyncio.CancelledError):
            await self._serve(reader, writer, task)

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        task: asyncio.Task[Any] | None,
    ) -> None:
        try:
            try:
                await asyncio.wait_for(self._ready.wait(), WAIT_FOR_TUNNEL)
            except TimeoutError:
                return
            conn = self._conn
            if conn is None:
                return
            try:
                remote_reader, remote_writer = await conn.open_connection(
                    self.dest_host, self.dest_port
                )
            except (OSError, asyncssh.Error) as exc:
                log.warning("tunnel channel failed", cluster=self.name, error=str(exc)[:200])
                return
            try:
                await asyncio.gather(_pump(reader, remote_writer), _pump(remote_reader, writer))
            finally:
                remote_writer.close()
        finally:
            writer.close()
            if task is not None:
                self._pipes.discard(task)


async def _pump(
    reader: asyncio.StreamReader | asyncssh.SSHReader[bytes],
    writer: asyncio.StreamWriter | asyncssh.SSHWriter[bytes],
) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (OSError, asyncssh.Error, asyncio.IncompleteReadError):
        pass
    finally:
        # Either side ending ends the other: a half-open TLS stream is useless.
        with contextlib.suppress(Exception):
            writer.close()
