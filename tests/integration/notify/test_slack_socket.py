"""The Socket Mode client alone against the stand-in: connect with backoff, ack, dedupe."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import structlog.testing

from gitopsd.core.secrets import Secret
from gitopsd_plugins._slack_socket import SocketModeClient

from .conftest import APP_TOKEN, FakeServer, Reply

pytestmark = pytest.mark.anyio
OPEN = "/api/apps.connections.open"


async def test_connects_after_failures_acks_everything_and_handles_each_envelope_once(fake: FakeServer) -> None:
    fake.script(OPEN, Reply(200, {"ok": False, "error": "internal_error"}), Reply(503, "down"))
    handled: list[tuple[str, dict[str, Any]]] = []

    async def handler(kind: str, payload: dict[str, Any]) -> None:
        handled.append((kind, payload))

    client = SocketModeClient(Secret(APP_TOKEN), fake.api_url, handler, backoff_base=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.run)
        await fake.socket.wait_connected()
        assert len(fake.on(OPEN)) == 3  # two failures, retried with backoff
        assert fake.on(OPEN)[0].headers["Authorization"] == f"Bearer {APP_TOKEN}"
        sent = [await fake.socket.send("events_api", {"n": i}) for i in range(3)]
        for envelope in sent:
            await fake.socket.wait_acked(envelope)
            assert envelope.acked_at is not None and envelope.acked_at - envelope.sent_at < 3.0
        await fake.socket.redeliver(sent[0])  # Slack doubted the ack: acked again, handled once
        await fake.socket.wait_acked(sent[0])
        with anyio.fail_after(10):
            while len(handled) < 3:
                await anyio.sleep(0.02)
        await anyio.sleep(0.2)
        assert handled == [("events_api", {"n": 0}), ("events_api", {"n": 1}), ("events_api", {"n": 2})]
        assert client.connections == 1
        tg.cancel_scope.cancel()


async def test_a_wrong_app_token_is_retried_not_fatal(fake: FakeServer) -> None:
    async def handler(kind: str, payload: dict[str, Any]) -> None:
        pass

    client = SocketModeClient(Secret("xapp-wrong"), fake.api_url, handler, backoff_base=0.05, backoff_max=0.1)
    with anyio.move_on_after(1.0):
        await client.run()
    assert len(fake.on(OPEN)) >= 3 and client.connections == 0


async def test_a_refused_websocket_is_retried_and_its_url_never_logged(fake: FakeServer) -> None:
    ticket_url = fake.base.replace("http://", "ws://") + "/no-socket-here?ticket=s3cret-ticket-42"
    fake.script(OPEN, *[Reply(200, {"ok": True, "url": ticket_url})] * 3)
    async def handler(kind: str, payload: dict[str, Any]) -> None:
        pass

    client = SocketModeClient(Secret(APP_TOKEN), fake.api_url, handler, backoff_base=0.05, backoff_max=0.1)
    with structlog.testing.capture_logs() as logs, anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.run)
            await fake.socket.wait_connected()  # after three refused handshakes, the real URL
            tg.cancel_scope.cancel()
    lost = [entry for entry in logs if entry.get("event") == "Slack Socket Mode connection lost; reconnecting"]
    assert len(lost) == 3
    assert "s3cret-ticket-42" not in repr(logs) and APP_TOKEN not in repr(logs)
