"""Slack notifier against a loopback server playing incoming webhooks and chat.postMessage."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from pydantic import ValidationError

from gitopsd import PluginContext
from gitopsd.core.events import (
    HealthDegraded,
    RevisionDetected,
    SyncFailed,
    SyncStarted,
    SyncSucceeded,
)
from gitopsd.engine.bus import EventBus
from gitopsd_plugins._slack_blocks import commit_url, parse_revision
from gitopsd_plugins.slack import SlackNotifier, SlackOptions

from .conftest import (
    TOKEN,
    WEBHOOK_PATH,
    FakeServer,
    HookRecorder,
    LogCapture,
    Reply,
    slack_bot,
    slack_webhook,
)

pytestmark = pytest.mark.anyio
API = "/api/chat.postMessage"
SHA = "0123456789abcdef0123456789abcdef01234567"
REV = f"main@sha1:{SHA}"


def assert_valid_blocks(payload: dict[str, Any]) -> None:
    """Slack's Block Kit limits that make a message be refused with invalid_blocks."""
    assert isinstance(payload["text"], str) and payload["text"].strip()
    assert len(payload["text"]) <= 40_000
    blocks = payload["blocks"]
    assert 0 < len(blocks) <= 50
    for block in blocks:
        kind = block["type"]
        assert kind in {"header", "section", "context", "divider"}
        if kind == "header":
            assert block["text"]["type"] == "plain_text"
            assert 0 < len(block["text"]["text"]) <= 150
        if kind == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                assert block["text"]["type"] == "mrkdwn"
                assert 0 < len(block["text"]["text"]) < 3000
            for f in block.get("fields", []):
                assert 0 < len(f["text"]) <= 2000
            assert len(block.get("fields", [])) <= 10
        if kind == "context":
            assert 0 < len(block["elements"]) <= 10
    json.dumps(payload)  # serialisable


def section_texts(payload: dict[str, Any]) -> list[str]:
    out = []
    for block in payload["blocks"]:
        if block["type"] == "section":
            if "text" in block:
                out.append(block["text"]["text"])
            out.extend(f["text"] for f in block.get("fields", []))
    return out


def header(payload: dict[str, Any]) -> str:
    return next(b["text"]["text"] for b in payload["blocks"] if b["type"] == "header")


# -- options -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "set webhook_url_file, or token_file and channel"),
        ({"webhook_url_file": "a", "token_file": "b", "channel": "C1"}, "not both"),
        ({"token_file": "b"}, "token_file needs channel"),
        ({"webhook_url_file": "a", "channel": "C1"}, "channel is only used with token_file"),
        ({"webhook_url_file": "a", "webhok": 1}, "Extra inputs are not permitted"),
    ],
)
def test_options_need_exactly_one_mode(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SlackOptions.model_validate(values)


def test_options_accept_both_modes() -> None:
    assert SlackOptions.model_validate({"webhook_url_file": "u"}).rate_per_second == 1.0
    opts = SlackOptions.model_validate({"token_file": "t", "channel": "#deploys"})
    assert opts.api_url == "https://slack.com/api"


def test_missing_secret_file_names_the_option_not_the_content(ctx: PluginContext) -> None:
    from gitopsd import ConfigError

    opts = SlackOptions.model_validate({"webhook_url_file": "nope"})
    with pytest.raises(
        ConfigError, match=r"notifiers\.team\.webhook_url_file: secret file .*nope does not exist"
    ):
        SlackNotifier("team", opts, ctx)


# -- revision links ------------------------------------------------------------------


def test_parse_revision() -> None:
    assert parse_revision(REV) == ("main@0123456", SHA)
    assert parse_revision(f"v1.2.0@sha1:{SHA}") == ("v1.2.0@0123456", SHA)
    assert parse_revision(SHA) == ("0123456", SHA)
    assert parse_revision("sha256:abcd") == ("sha256:abcd", None)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/acme/web.git", f"https://github.com/acme/web/commit/{SHA}"),
        ("git@github.com:acme/web.git", f"https://github.com/acme/web/commit/{SHA}"),
        ("ssh://git@github.com/acme/web", f"https://github.com/acme/web/commit/{SHA}"),
        (
            "https://gitlab.com/acme/platform/web.git",
            f"https://gitlab.com/acme/platform/web/-/commit/{SHA}",
        ),
        ("git@gitlab.com:acme/web.git", f"https://gitlab.com/acme/web/-/commit/{SHA}"),
        ("https://git.acme.io/ops/web.git", f"https://git.acme.io/ops/web/commit/{SHA}"),
        ("ssh://git@git.acme.io:2222/ops/web.git", f"https://git.acme.io/ops/web/commit/{SHA}"),
        ("https://code.example.org/ops/web.git", None),
        ("file:///srv/repos/web", None),
        ("/srv/repos/web", None),
    ],
)
def test_commit_url(url: str, expected: str | None) -> None:
    assert commit_url(url, SHA, gitea_hosts=["git.acme.io"]) == expected


# -- incoming webhook ----------------------------------------------------------------


async def test_webhook_message_content(fake: FakeServer, ctx: PluginContext) -> None:
    n = slack_webhook(ctx, fake, rate_per_second=100)
    event = SyncFailed.make(
        app="web",
        cluster="prod-eu",
        revision=REV,
        reason="ApplyFailed",
        message='Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1',
        data={
            "source_url": "git@github.com:acme/web.git",
            "namespace": "shop",
            "duration": 12.34,
            "counts": {"created": 1, "changed": 2, "unchanged": 40, "pruned": 3, "failed": 1},
        },
    )
    bus = EventBus(notifiers={"team": n}, routes={"web": ["team"]})
    async with bus.running():
        bus.emit(event)
        (req,) = await fake.wait_for(WEBHOOK_PATH, 1)
        await bus.drain(2)
    assert req.headers["Content-Type"] == "application/json"
    payload = req.json
    assert_valid_blocks(payload)
    assert header(payload) == ":x: web: sync failed"
    texts = "\n".join(section_texts(payload))
    assert f"<https://github.com/acme/web/commit/{SHA}|main@0123456>" in texts
    assert "*Cluster*\nprod-eu" in texts
    assert "*Namespace*\nshop" in texts
    assert "*Duration*\n12.3 s" in texts
    assert "*Changes*\ncreated 1 · changed 2 · pruned 3 · failed 1" in texts
    # the error excerpt is a code block; mrkdwn specials escaped
    assert '```\nDeployment.apps "web" is invalid: spec.replicas: Invalid value: -1\n```' in texts
    assert payload["text"].startswith(":x: web: sync failed")
    assert "Invalid value: -1" in payload["text"]
    assert bus.stats()["team"]["sent"] == 1


async def test_webhook_message_within_limits_for_huge_input(
    fake: FakeServer, ctx: PluginContext
) -> None:
    n = slack_webhook(ctx, fake, rate_per_second=100)
    long_app = "a" * 300
    error = "\n".join(f"line {i}: " + "x" * 80 for i in range(500)) + "\n```injected fence```"
    objects = {f"Deployment/shop/web-{i}": "x" * 500 for i in range(40)}
    bus = EventBus(notifiers={"team": n}, routes={long_app: ["team"]})
    async with bus.running():
        bus.emit(
            SyncFailed.make(app=long_app, revision=REV, message=error, data={"objects": objects})
        )
        (req,) = await fake.wait_for(WEBHOOK_PATH, 1)
        await bus.drain(2)
    payload = req.json
    assert_valid_blocks(payload)
    assert header(payload).endswith(": sync failed")  # the app name was cut, the outcome kept
    code = next(t for t in section_texts(payload) if t.startswith("```"))
    assert code.startswith("```\nline 0: ")
    assert code.endswith("… (truncated)\n```")
    assert code.count("```") == 2
    objects_text = next(t for t in section_texts(payload) if t.startswith("*Objects*"))
    shown = objects_text.count("\n• ")
    assert 0 < shown < 40
    assert objects_text.endswith(f"… and {40 - shown} more")


async def test_mrkdwn_in_event_text_is_escaped(fake: FakeServer, ctx: PluginContext) -> None:
    n = slack_webhook(ctx, fake, rate_per_second=100)
    bus = EventBus(notifiers={"team": n}, routes={"web": ["team"]})
    async with bus.running():
        bus.emit(
            SyncSucceeded.make(app="web", message="deployed <!channel> & <https://evil|click>")
        )
        (req,) = await fake.wait_for(WEBHOOK_PATH, 1)
        await bus.drain(2)
    texts = section_texts(req.json)
    assert "deployed &lt;!channel&gt; &amp; &lt;https://evil|click&gt;" in texts
    assert header(req.json) == ":white_check_mark: web: synced"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, "invalid_payload"),
        (403, "action_prohibited"),
        (404, "no_service"),
        (410, "channel_is_archived"),
    ],
)
async def test_webhook_permanent_errors_stop_and_say_so_once(
    fake: FakeServer,
    ctx: PluginContext,
    hooks: HookRecorder,
    logs: LogCapture,
    status: int,
    body: str,
) -> None:
    fake.script(WEBHOOK_PATH, *[Reply(status, body)] * 3)
    n = slack_webhook(ctx, fake, rate_per_second=100)
    bus = EventBus(hooks=hooks, notifiers={"team": n}, routes={"web": ["team"]}, logger=logs.logger)
    async with bus.running():
        for reason in "ABC":
            bus.emit(SyncFailed.make(app="web", reason=reason))
        await fake.wait_for(WEBHOOK_PATH, 3)
        await bus.drain(2)
    assert len(fake.on(WEBHOOK_PATH)) == 3  # no retries
    stats = bus.stats()["team"]
    assert (stats["failed"], stats["sent"], stats["retried"]) == (3, 0, 0)
    (report,) = hooks.named("notifier-failed")
    assert report.reason == "PermanentError"
    assert f"HTTP {status}: {body}" in report.message
    assert WEBHOOK_PATH not in logs.text  # the webhook URL is a secret
    assert WEBHOOK_PATH not in json.dumps(report.to_dict())


async def test_webhook_transient_errors_retry_until_ok(
    fake: FakeServer, ctx: PluginContext
) -> None:
    fake.script(
        WEBHOOK_PATH,
        Reply(500, "rollup_error"),
        Reply(429, "rate_limited", {"Retry-After": "0.2"}),
        Reply(503, "unavailable"),
    )
    n = slack_webhook(ctx, fake, rate_per_second=100)
    bus = EventBus(notifiers={"team": n}, routes={"web": ["team"]}, backoff_base=0.02)
    async with bus.running():
        bus.emit(SyncFailed.make(app="web", message="x"))
        reqs = await fake.wait_for(WEBHOOK_PATH, 4)
        await bus.drain(2)
    assert len({r.body for r in reqs}) == 1  # the same message each time
    assert reqs[2].at - reqs[1].at >= 0.2 - 0.005  # Retry-After honoured
    assert bus.stats()["team"]["sent"] == 1


async def test_webhook_hang_is_a_timeout_and_retried(fake: FakeServer, ctx: PluginContext) -> None:
    fake.hang(WEBHOOK_PATH, count=1)
    n = slack_webhook(ctx, fake, rate_per_second=100, timeout=0.3)
    bus = EventBus(notifiers={"team": n}, routes={"web": ["team"]}, backoff_base=0.01)
    async with bus.running():
        bus.emit(SyncFailed.make(app="web", message="x"))
        await fake.wait_for(WEBHOOK_PATH, 2)
        await bus.drain(2)
    assert bus.stats()["team"] == {
        "sent": 1,
        "failed": 0,
        "dropped": 0,
        "queued": 0,
        "deduped": 0,
        "retried": 1,
    }


# -- bot token (chat.postMessage) ----------------------------------------------------


async def test_bot_messages_of_one_sync_share_a_thread(
    fake: FakeServer, ctx: PluginContext
) -> None:
    n = slack_bot(ctx, fake, rate_per_second=100, dedupe_window=0)
    other = f"main@sha1:{'f' * 40}"
    bus = EventBus(notifiers={"ops": n}, routes={"web": ["ops"], "api": ["ops"]})
    async with bus.running():
        bus.emit(RevisionDetected.make(app="web", revision=REV))
        bus.emit(SyncStarted.make(app="web", revision=REV))
        bus.emit(SyncStarted.make(app="api", revision=REV))  # another app: its own thread
        bus.emit(SyncFailed.make(app="web", revision=REV, message="boom"))
        bus.emit(SyncSucceeded.make(app="api", revision=REV))
        bus.emit(SyncStarted.make(app="web", revision=other))  # next revision: a new thread
        bus.emit(HealthDegraded.make(app="web", revision=other, message="web unavailable"))
        reqs = await fake.wait_for(API, 7)
        await bus.drain(2)
    bodies = [r.json for r in reqs]
    for r, body in zip(reqs, bodies, strict=True):
        assert r.headers["Authorization"] == f"Bearer {TOKEN}"
        assert body["channel"] == "C0DEPLOYS"
        assert_valid_blocks({"text": body["text"], "blocks": body["blocks"]})
    ts = [f"{1700000000.0001 + i:.6f}" for i in range(1, 8)]  # what the fake answered, in order
    assert "thread_ts" not in bodies[0]  # web@REV: the first message starts the thread
    assert bodies[1]["thread_ts"] == ts[0]
    assert "thread_ts" not in bodies[2]  # api@REV starts its own
    assert bodies[3]["thread_ts"] == ts[0]
    assert bodies[3]["reply_broadcast"] is True  # failures are also shown in the channel
    assert bodies[4]["thread_ts"] == ts[2]
    assert "reply_broadcast" not in bodies[4]
    assert "thread_ts" not in bodies[5]  # web@other
    assert bodies[6]["thread_ts"] == ts[5]


async def test_bot_threads_can_be_turned_off(fake: FakeServer, ctx: PluginContext) -> None:
    n = slack_bot(ctx, fake, rate_per_second=100, threads=False)
    bus = EventBus(notifiers={"ops": n}, routes={"web": ["ops"]})
    async with bus.running():
        bus.emit(SyncStarted.make(app="web", revision=REV))
        bus.emit(SyncSucceeded.make(app="web", revision=REV))
        reqs = await fake.wait_for(API, 2)
        await bus.drain(2)
    assert all("thread_ts" not in r.json for r in reqs)


@pytest.mark.parametrize(
    ("token", "channel", "error"),
    [
        ("xoxb-revoked-token-999", "C0DEPLOYS", "invalid_auth"),
        (TOKEN, "C0NOSUCH", "channel_not_found"),
    ],
)
async def test_bot_permanent_errors_stop_and_say_so_once(
    fake: FakeServer,
    ctx: PluginContext,
    hooks: HookRecorder,
    logs: LogCapture,
    token: str,
    channel: str,
    error: str,
) -> None:
    n = slack_bot(ctx, fake, token=token, channel=channel, rate_per_second=100, dedupe_window=0)
    bus = EventBus(hooks=hooks, notifiers={"ops": n}, routes={"web": ["ops"]}, logger=logs.logger)
    async with bus.running():
        bus.emit(SyncFailed.make(app="web", reason="A"))
        bus.emit(SyncFailed.make(app="web", reason="B"))
        await fake.wait_for(API, 2)
        await bus.drain(2)
    assert len(fake.on(API)) == 2
    assert bus.stats()["ops"]["failed"] == 2
    (report,) = hooks.named("notifier-failed")
    assert report.message.endswith(f"failed: {error}")
    assert token not in logs.text
    assert token not in json.dumps([e.to_dict() for e in hooks.events])


async def test_bot_transient_errors_retry(fake: FakeServer, ctx: PluginContext) -> None:
    fake.script(
        API,
        Reply(200, {"ok": False, "error": "internal_error"}),
        Reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "0.2"}),
        Reply(502, "bad gateway"),
    )
    n = slack_bot(ctx, fake, rate_per_second=100)
    bus = EventBus(notifiers={"ops": n}, routes={"web": ["ops"]}, backoff_base=0.02)
    async with bus.running():
        bus.emit(SyncSucceeded.make(app="web", revision=REV))
        reqs = await fake.wait_for(API, 4)
        await bus.drain(2)
    assert reqs[2].at - reqs[1].at >= 0.2 - 0.005
    assert bus.stats()["ops"]["sent"] == 1


async def test_bot_rate_never_above_limit(fake: FakeServer, ctx: PluginContext) -> None:
    n = slack_bot(ctx, fake, rate_per_second=5, dedupe_window=0)
    bus = EventBus(notifiers={"ops": n}, routes={"web": ["ops"]})
    async with bus.running():
        for i in range(5):
            bus.emit(SyncFailed.make(app="web", reason=f"R{i}"))
        reqs = await fake.wait_for(API, 5)
        await bus.drain(2)
    gaps = [b.at - a.at for a, b in itertools.pairwise(reqs)]
    assert min(gaps) >= 0.2 - 0.005, gaps
