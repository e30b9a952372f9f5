"""Generic webhook notifier: body, HMAC signature checked by the receiver, headers, options."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from gitopsd import PluginContext
from gitopsd.core.events import SyncSucceeded
from gitopsd.engine.bus import EventBus
from gitopsd_plugins.webhook import SIGNATURE_HEADER, WebhookOptions, verify

from .conftest import HMAC_SECRET, FakeServer, Reply, hmac_ok, webhook

pytestmark = pytest.mark.anyio
RX = "/receiver"


async def test_signed_json_body_verifiable_by_receiver(
    fake: FakeServer, ctx: PluginContext
) -> None:
    n = webhook(ctx, fake, headers={"X-Team": "platform", "Authorization": "Bearer abc"})
    event = SyncSucceeded.make(
        app="web",
        cluster="prod",
        revision="main@sha1:" + "1" * 40,
        message="synced ünïcode",
        data={"counts": {"created": 2}, "duration": 3.5},
    )
    bus = EventBus(notifiers={"audit": n}, routes={"web": ["audit"]})
    async with bus.running():
        bus.emit(event)
        (req,) = await fake.wait_for(RX, 1)
        await bus.drain(2)
    assert hmac_ok(req.body, req.headers.get(SIGNATURE_HEADER))
    assert not hmac_ok(req.body, req.headers.get(SIGNATURE_HEADER), secret="wrong-secret")
    assert not hmac_ok(req.body + b" ", req.headers.get(SIGNATURE_HEADER))
    assert verify(HMAC_SECRET, req.body, req.headers[SIGNATURE_HEADER])
    assert json.loads(req.body) == event.to_dict()
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["X-Gitopsd-Event"] == "sync-succeeded"
    assert req.headers["X-Gitopsd-Delivery"] == event.id
    assert req.headers["X-Team"] == "platform"
    assert req.headers["Authorization"] == "Bearer abc"
    assert req.headers["User-Agent"].startswith("gitopsd/")


async def test_retry_sends_identical_signed_body(fake: FakeServer, ctx: PluginContext) -> None:
    fake.script(RX, Reply(503, "busy", {"Retry-After": "0"}))
    n = webhook(ctx, fake, rate_per_second=100)
    bus = EventBus(notifiers={"audit": n}, routes={"web": ["audit"]})
    async with bus.running():
        bus.emit(SyncSucceeded.make(app="web"))
        first, second = await fake.wait_for(RX, 2)
        await bus.drain(2)
    assert first.body == second.body
    assert first.headers[SIGNATURE_HEADER] == second.headers[SIGNATURE_HEADER]
    assert first.headers["X-Gitopsd-Delivery"] == second.headers["X-Gitopsd-Delivery"]


async def test_unsigned_without_secret_file(fake: FakeServer, ctx: PluginContext) -> None:
    from gitopsd_plugins.webhook import WebhookNotifier

    n = WebhookNotifier("plain", WebhookOptions.model_validate({"url": fake.receiver_url}), ctx)
    bus = EventBus(notifiers={"plain": n}, routes={"web": ["plain"]})
    async with bus.running():
        bus.emit(SyncSucceeded.make(app="web"))
        (req,) = await fake.wait_for(RX, 1)
        await bus.drain(2)
    assert SIGNATURE_HEADER not in req.headers


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "set exactly one of url or url_file"),
        ({"url": "https://x", "url_file": "f"}, "set exactly one of url or url_file"),
        ({"url": "ftp://x"}, "must be an http:// or https:// URL"),
        ({"url": "https://x", "headers": {"Content-Type": "text/plain"}}, "set by gitopsd"),
        ({"url": "https://x", "headers": {SIGNATURE_HEADER: "forged"}}, "set by gitopsd"),
    ],
)
def test_options_validation(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WebhookOptions.model_validate(values)


async def test_connection_refused_is_transient_and_url_free(ctx: PluginContext) -> None:
    import socket

    from gitopsd import NotifyError
    from gitopsd_plugins.webhook import WebhookNotifier

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook/secret-token-xyz"
    (ctx.config_dir / "u").write_text(url)
    n = WebhookNotifier("w", WebhookOptions.model_validate({"url_file": "u", "timeout": 2}), ctx)
    try:
        with pytest.raises(NotifyError) as info:
            await n.send(SyncSucceeded.make(app="web"))
    finally:
        await n.aclose()
    assert not info.value.permanent
    assert "secret-token-xyz" not in str(info.value)
    assert str(port) not in str(info.value)
