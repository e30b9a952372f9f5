"""A real HTTP server on loopback that plays Slack (incoming webhooks and chat.postMessage)
and a generic webhook receiver, with scripted replies, for the notifier tests.

It also plays the Web API calls of change control (apps.connections.open with the app-level
token, chat.update, chat.postEphemeral, usergroups.list, usergroups.users.list) and Socket
Mode: :class:`SocketModeStandIn` is the websocket behind ``/socket`` (hello, envelopes,
acks checked, ``disconnect``, dropped sockets, redelivery of unacknowledged envelopes).

Scripting: ``fake.script(path, reply, reply, ...)`` queues replies for the next requests
to ``path``; once they are used up the default reply (success) answers. A reply is
``Reply(status, body, headers)``, ``fake.hang(path)`` (the handler waits until the test ends
or ``fake.release()``), or ``Reply(..., gate=event)`` (waits for ``event`` then answers).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import WSMsgType, web

from gitopsd import PluginContext

WEBHOOK_PATH = "/services/T0000/B0000/s3cretWebhookPath"
TOKEN = "xoxb-test-token-0123456789"
APP_TOKEN = "xapp-1-test-app-token-0123456789"
GROUPS = {"S0ONCALL": ("platform-oncall", ["U0ONCALL"])}
HMAC_SECRET = "hmac-secret-for-tests"


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    body: Any = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    gate: asyncio.Event | None = None


HANG_MARK = object()


@dataclass
class Received:
    """One request the server got."""

    path: str
    at: float  # time.monotonic() when the request arrived
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class FakeServer:
    """Slack + webhook receiver on 127.0.0.1; see the module docstring."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._scripts: dict[str, deque[Any]] = defaultdict(deque)
        self._release = asyncio.Event()
        self._arrived = asyncio.Event()
        self._ts = 1700000000.000100
        self.base = ""
        self._runner: web.AppRunner | None = None
        self.socket = SocketModeStandIn()

    # -- control ---------------------------------------------------------------

    def script(self, path: str, *replies: Any) -> None:
        self._scripts[path].extend(replies)

    def hang(self, path: str, count: int = 1000) -> None:
        self._scripts[path].extend([HANG_MARK] * count)

    def release(self) -> None:
        self._release.set()

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, path: str, count: int, within: float = 10.0) -> list[Received]:
        """Wait until ``path`` got at least ``count`` requests."""
        with_deadline = time.monotonic() + within
        while len(self.on(path)) < count:
            remaining = with_deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{path}: got {len(self.on(path))} requests, expected {count}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                pass
        return self.on(path)

    @property
    def webhook_url(self) -> str:
        return self.base + WEBHOOK_PATH

    @property
    def api_url(self) -> str:
        return self.base + "/api"

    @property
    def receiver_url(self) -> str:
        return self.base + "/receiver"

    # -- server ----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Received(request.path, time.monotonic(), dict(request.headers), body))
        self._arrived.set()
        queue = self._scripts.get(request.path)
        reply = queue.popleft() if queue else None
        if reply is HANG_MARK:
            await self._release.wait()
            return web.Response(status=200, text="ok")
        if reply is None:
            reply = self._default(request, body)
        if reply.gate is not None:
            await reply.gate.wait()
        if isinstance(reply.body, dict | list):
            return web.json_response(reply.body, status=reply.status, headers=reply.headers)
        return web.Response(status=reply.status, text=reply.body, headers=reply.headers)

    def _default(self, request: web.Request, body: bytes) -> Reply:
        if request.path == "/api/chat.postMessage":
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                return Reply(200, {"ok": False, "error": "invalid_auth"})
            payload = json.loads(body)
            if payload.get("channel") not in ("C0DEPLOYS", "#deploys"):
                return Reply(200, {"ok": False, "error": "channel_not_found"})
            self._ts += 1
            return Reply(200, {"ok": True, "channel": "C0DEPLOYS", "ts": f"{self._ts:.6f}"})
        api_method = request.path.removeprefix("/api/")
        if api_method == "apps.connections.open":
            if request.headers.get("Authorization") != f"Bearer {APP_TOKEN}":
                return Reply(200, {"ok": False, "error": "invalid_auth"})
            return Reply(200, {"ok": True, "url": self.base.replace("http://", "ws://") + "/socket"})
        if api_method in ("chat.update", "chat.postEphemeral", "usergroups.list", "usergroups.users.list"):
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                return Reply(200, {"ok": False, "error": "invalid_auth"})
            if api_method == "usergroups.list":
                groups = [{"id": gid, "handle": handle} for gid, (handle, _) in GROUPS.items()]
                return Reply(200, {"ok": True, "usergroups": groups})
            if api_method == "usergroups.users.list":
                form = dict(x.split("=", 1) for x in body.decode().split("&") if "=" in x)
                group = GROUPS.get(form.get("usergroup", ""))
                if group is None:
                    return Reply(200, {"ok": False, "error": "no_such_subteam"})
                return Reply(200, {"ok": True, "users": group[1]})
            return Reply(200, {"ok": True, "channel": "C0DEPLOYS", "ts": json.loads(body).get("ts", "1.0")})
        if request.path == WEBHOOK_PATH:
            return Reply(200, "ok")
        if request.path.startswith("/services/"):
            return Reply(404, "no_service")  # an unknown (revoked) incoming webhook
        return Reply(200, "")  # generic webhook receivers

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/socket", self.socket.handle)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.base = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self.release()
        await self.socket.close()
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class Envelope:
    """One envelope sent over Socket Mode, and when it was acknowledged."""

    id: str
    type: str
    payload: dict[str, Any]
    sent_at: float = 0.0
    acked_at: float | None = None
    deliveries: int = 0


class SocketModeStandIn:
    """Slack's side of Socket Mode: one websocket at a time, like a Slack app with one connection.

    On each connection: ``hello``, then every envelope not acknowledged yet (Slack delivers
    again what was not acked). ``send()`` queues an envelope and delivers it if connected;
    ``send(..., drop_after=True)`` delivers it and drops the TCP connection at once, without
    a close frame. ``disconnect()`` sends Slack's ``disconnect`` message.
    """

    def __init__(self) -> None:
        self.connections = 0
        self.envelopes: dict[str, Envelope] = {}
        self._ws: web.WebSocketResponse | None = None
        self._request: web.Request | None = None
        self._changed = asyncio.Event()
        self._ids = 0
        self.closing = False

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        self._ws, self._request = ws, request
        await ws.send_json({"type": "hello", "num_connections": 1, "debug_info": {"host": "stand-in"}})
        for envelope in list(self.envelopes.values()):
            if envelope.acked_at is None:
                await self._deliver(envelope)
        self._changed.set()
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            envelope = self.envelopes.get(data.get("envelope_id", ""))
            if envelope is not None and envelope.acked_at is None:
                envelope.acked_at = time.monotonic()
            self._changed.set()
        if self._ws is ws:
            self._ws = None
        return ws

    async def _deliver(self, envelope: Envelope) -> None:
        assert self._ws is not None
        envelope.sent_at = time.monotonic()
        envelope.deliveries += 1
        await self._ws.send_json(
            {"envelope_id": envelope.id, "type": envelope.type, "payload": envelope.payload, "accepts_response_payload": False}
        )

    async def send(self, type_: str, payload: dict[str, Any], *, drop_after: bool = False) -> Envelope:
        self._ids += 1
        envelope = Envelope(f"env-{self._ids}", type_, payload)
        self.envelopes[envelope.id] = envelope
        if self._ws is not None and not self._ws.closed:
            await self._deliver(envelope)
            if drop_after:
                self.drop()
        return envelope

    async def redeliver(self, envelope: Envelope) -> None:
        """Send ``envelope`` again (Slack does when it doubts an ack arrived)."""
        envelope.acked_at = None
        await self._deliver(envelope)

    def drop(self) -> None:
        """Cut the TCP connection (no close frame), as a network failure would."""
        if self._request is not None and self._request.transport is not None:
            self._request.transport.abort()  # type: ignore[attr-defined]
        self._ws = None

    async def disconnect(self) -> None:
        assert self._ws is not None
        await self._ws.send_json({"type": "disconnect", "reason": "refresh_requested"})

    async def wait(self, predicate: Any, within: float = 20.0, what: str = "condition") -> None:
        deadline = time.monotonic() + within
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"Socket Mode stand-in: timed out waiting for {what}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))
            except TimeoutError:
                pass

    async def wait_connected(self, count: int = 1, within: float = 20.0) -> None:
        await self.wait(lambda: self.connections >= count and self._ws is not None, within, f"{count} connection(s)")

    async def wait_acked(self, envelope: Envelope, within: float = 20.0) -> None:
        await self.wait(lambda: envelope.acked_at is not None, within, f"the ack of {envelope.id}")

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()


@pytest.fixture
async def fake(anyio_backend: str) -> AsyncIterator[FakeServer]:
    server = FakeServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def ctx(tmp_path: Path) -> PluginContext:
    return PluginContext(state_dir=tmp_path / "state", config_dir=tmp_path)


class LogCapture:
    """A structlog logger writing JSON lines into memory, *without* the redaction processor,
    so a test sees exactly what the bus and notifiers put into log fields."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.logger = structlog.wrap_logger(
            structlog.PrintLogger(file=self.buffer),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.JSONRenderer(default=str),
            ],
        )

    @property
    def text(self) -> str:
        return self.buffer.getvalue()

    @property
    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@pytest.fixture
def logs() -> LogCapture:
    return LogCapture()


class HookRecorder:
    """Stands in for ``PluginManager.hooks``: records what the gitopsd_event hook saw."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def event(self, event: Any) -> None:
        self.events.append(event)

    def named(self, name: str) -> list[Any]:
        return [e for e in self.events if e.name == name]


@pytest.fixture
def hooks() -> HookRecorder:
    return HookRecorder()


class MetricsRecorder:
    """A BusMetrics implementation counting calls."""

    def __init__(self) -> None:
        self.totals: dict[tuple[str, str], int] = defaultdict(int)
        self.dropped: dict[str, int] = defaultdict(int)

    def notifications_total(self, notifier: str, result: str) -> None:
        self.totals[(notifier, result)] += 1

    def queue_dropped(self, notifier: str) -> None:
        self.dropped[notifier] += 1


@pytest.fixture
def metrics() -> MetricsRecorder:
    return MetricsRecorder()


def hmac_ok(body: bytes, header: str | None, secret: str = HMAC_SECRET) -> bool:
    """The receiver's own check, written independently of the notifier's code."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return header is not None and hmac.compare_digest(expected, header)


def slack_webhook(ctx: PluginContext, fake: FakeServer, name: str = "team", **options: Any) -> Any:
    """A SlackNotifier in incoming-webhook mode pointed at the fake server."""
    from gitopsd_plugins.slack import SlackNotifier, SlackOptions

    (ctx.config_dir / f"{name}-url").write_text(fake.webhook_url + "\n")
    opts = SlackOptions.model_validate({"webhook_url_file": f"{name}-url", **options})
    return SlackNotifier(name, opts, ctx)


def slack_bot(
    ctx: PluginContext, fake: FakeServer, name: str = "ops", token: str = TOKEN, **options: Any
) -> Any:
    """A SlackNotifier in bot-token mode (chat.postMessage) pointed at the fake server."""
    from gitopsd_plugins.slack import SlackNotifier, SlackOptions

    (ctx.config_dir / f"{name}-token").write_text(token + "\n")
    options.setdefault("channel", "C0DEPLOYS")
    opts = SlackOptions.model_validate(
        {"token_file": f"{name}-token", "api_url": fake.api_url, **options}
    )
    return SlackNotifier(name, opts, ctx)


def webhook(ctx: PluginContext, fake: FakeServer, name: str = "audit", **options: Any) -> Any:
    """A WebhookNotifier posting to the fake receiver, signing with HMAC_SECRET."""
    from gitopsd_plugins.webhook import WebhookNotifier, WebhookOptions

    (ctx.config_dir / f"{name}-secret").write_text(HMAC_SECRET + "\n")
    options.setdefault("url", fake.receiver_url)
    opts = WebhookOptions.model_validate({"secret_file": f"{name}-secret", **options})
    return WebhookNotifier(name, opts, ctx)
