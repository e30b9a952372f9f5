"""EventBus: logging, hook, routes, filters, dedupe, overflow, rate, retries, drain.

Delivery goes through the real webhook notifier to the loopback receiver.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import anyio
import pytest

from gitopsd import Event, Notifier, NotifierOptions, PluginContext, Severity
from gitopsd.core.events import (
    ConfigReloadFailed,
    NotifierFailed,
    SyncFailed,
    SyncStarted,
    SyncSucceeded,
)
from gitopsd.engine.bus import EventBus, notifier_accepts

from .conftest import (
    HMAC_SECRET,
    FakeServer,
    HookRecorder,
    LogCapture,
    MetricsRecorder,
    Reply,
    webhook,
)

pytestmark = pytest.mark.anyio
RX = "/receiver"


def opts(**values: Any) -> NotifierOptions:
    return NotifierOptions.model_validate(values)


def sync_failed(app: str = "web", revision: str = "main@sha1:" + "a" * 40, **kw: Any) -> SyncFailed:
    kw.setdefault("reason", "ApplyFailed")
    kw.setdefault("message", "apply failed")
    return SyncFailed.make(app=app, revision=revision, **kw)


# -- filters (pure) ------------------------------------------------------------------


def test_filter_event_names() -> None:
    o = opts(events=["sync-failed", "sync-succeeded"])
    assert notifier_accepts(o, sync_failed())
    assert notifier_accepts(o, SyncSucceeded.make(app="web"))
    assert not notifier_accepts(o, SyncStarted.make(app="web"))


def test_filter_min_severity() -> None:
    o = opts(min_severity="warning")
    assert notifier_accepts(o, sync_failed())  # error
    assert notifier_accepts(o, SyncStarted.make(app="web", severity=Severity.WARNING))
    assert not notifier_accepts(o, SyncSucceeded.make(app="web"))  # info
    assert notifier_accepts(opts(), SyncSucceeded.make(app="web"))


def test_filter_app_globs() -> None:
    o = opts(apps=["web-*", "api"])
    assert notifier_accepts(o, sync_failed(app="web-frontend"))
    assert notifier_accepts(o, sync_failed(app="api"))
    assert not notifier_accepts(o, sync_failed(app="api-2"))
    assert not notifier_accepts(o, sync_failed(app="Web-x"))  # case-sensitive
    # daemon-wide events are not about an app: app patterns do not apply
    assert notifier_accepts(o, ConfigReloadFailed.make(message="bad config"))


def test_filters_combine() -> None:
    o = opts(events=["sync-failed"], min_severity="error", apps=["web"])
    assert notifier_accepts(o, sync_failed(app="web"))
    assert not notifier_accepts(o, sync_failed(app="web", severity=Severity.WARNING))
    assert not notifier_accepts(o, sync_failed(app="db"))


class Recording(Notifier):
    """A minimal third-party style notifier that keeps what it is given."""

    def __init__(self, name: str, options: NotifierOptions, ctx: PluginContext):
        super().__init__(name, options, ctx)
        self.got: list[Event] = []

    async def send(self, event: Event) -> None:
        self.got.append(event)


async def _until(predicate: Any, within: float = 5.0) -> None:
    with anyio.fail_after(within):
        while not predicate():
            await anyio.sleep(0.01)


async def test_routes_and_filters_pick_notifiers(ctx: PluginContext) -> None:
    a = Recording("a", opts(dedupe_window=0, rate_per_second=1000), ctx)
    b = Recording("b", opts(dedupe_window=0, rate_per_second=1000, min_severity="error"), ctx)
    bus = EventBus(notifiers={"a": a, "b": b}, routes={"web": ["a", "b"], "db": ["b"]})
    async with bus.running():
        bus.emit(SyncSucceeded.make(app="web"))  # a only (b wants errors)
        bus.emit(sync_failed(app="web"))  # a and b
        bus.emit(sync_failed(app="db"))  # b only (db routes to b)
        bus.emit(sync_failed(app="unrouted"))  # nobody
        bus.emit(ConfigReloadFailed.make(message="x"))  # daemon-wide: both
        await _until(lambda: len(a.got) == 3 and len(b.got) == 3)
        bus.set_routes({"web": ["b"]})  # a config reload changed web's notify list
        bus.emit(sync_failed(app="web", reason="Other"))
        await _until(lambda: len(b.got) == 4)
        await bus.drain(1)
    assert [(e.name, e.app) for e in a.got] == [
        ("sync-succeeded", "web"),
        ("sync-failed", "web"),
        ("config-reload-failed", ""),
    ]
    assert [(e.name, e.app) for e in b.got] == [
        ("sync-failed", "web"),
        ("sync-failed", "db"),
        ("config-reload-failed", ""),
        ("sync-failed", "web"),
    ]


async def test_routes_from_config() -> None:
    from gitopsd.plugin.config import AppConfig, Config, PluginTable

    src = PluginTable(type="local", options=None)
    config = Config(
        apps={
            "web": AppConfig.model_validate(
                {"name": "web", "cluster": "prod", "source": src, "notify": ["team", "audit"]}
            ),
            "db": AppConfig.model_validate({"name": "db", "cluster": "prod", "source": src}),
        }
    )
    assert EventBus.routes_from_config(config) == {"web": ["team", "audit"], "db": []}


# -- logging and the hook ------------------------------------------------------------


async def test_every_event_logged_as_json_and_seen_by_hook(
    logs: LogCapture, hooks: HookRecorder, ctx: PluginContext
) -> None:
    bus = EventBus(hooks=hooks, logger=logs.logger)
    event = sync_failed(cluster="prod", data={"duration": 1.5, "counts": {"created": 1}})
    bus.emit(event)  # works before running(): nothing to deliver to
    bus.emit(SyncSucceeded.make(app="web"))
    assert hooks.events == [event, hooks.events[1]]
    lines = logs.lines
    assert len(logs.text.splitlines()) == 2
    first = lines[0]
    for key, value in event.to_dict().items():
        assert first[key] == value
    assert first["event"] == "sync-failed"
    assert first["level"] == "error"
    assert lines[1]["level"] == "info"


async def test_broken_hook_does_not_break_emit(logs: LogCapture, ctx: PluginContext) -> None:
    class Boom:
        def event(self, event: Event) -> None:
            raise RuntimeError("observer bug")

    rec = Recording("a", opts(rate_per_second=1000), ctx)
    bus = EventBus(hooks=Boom(), notifiers={"a": rec}, logger=logs.logger, routes={"web": ["a"]})
    async with bus.running():
        bus.emit(sync_failed())
        await _until(lambda: len(rec.got) == 1)
        await bus.drain(1)
    assert "event hook failed" in logs.text


# -- delivery through the real webhook notifier --------------------------------------


async def test_dedupe_of_a_flapping_failure(
    fake: FakeServer, ctx: PluginContext, metrics: MetricsRecorder
) -> None:
    n = webhook(ctx, fake, dedupe_window=0.6, rate_per_second=100)
    bus = EventBus(notifiers={"audit": n}, routes={"web": ["audit"]}, metrics=metrics)
    async with bus.running():
        for i in range(5):
            # same app, name, revision, reason; different durations, messages and times
            bus.emit(sync_failed(message=f"attempt {i} failed", data={"duration": 1.0 + i}))
            bus.emit(SyncStarted.make(app="web", revision="main@sha1:" + "a" * 40))
        bus.emit(sync_failed(revision="main@sha1:" + "b" * 40))  # another revision: not a duplicate
        bus.emit(sync_failed(reason="HealthTimeout"))  # another reason: not a duplicate
        await fake.wait_for(RX, 4)
        await anyio.sleep(0.7)  # the window passed: the failure is worth repeating
        bus.emit(sync_failed(message="still failing"))
        await fake.wait_for(RX, 5)
        await bus.drain(2)
    got = [
        (r.json["name"], r.json["revision"][-3:], r.json["reason"], r.json["message"])
        for r in fake.on(RX)
    ]
    assert got == [
        ("sync-failed", "aaa", "ApplyFailed", "attempt 0 failed"),
        ("sync-started", "aaa", "", ""),
        ("sync-failed", "bbb", "ApplyFailed", "apply failed"),
        ("sync-failed", "aaa", "HealthTimeout", "apply failed"),
        ("sync-failed", "aaa", "ApplyFailed", "still failing"),
    ]
    stats = bus.stats()["audit"]
    assert stats["deduped"] == 8
    assert stats["sent"] == 5
    assert metrics.totals[("audit", "deduped")] == 8
    assert metrics.totals[("audit", "sent")] == 5


async def test_rate_never_above_limit(fake: FakeServer, ctx: PluginContext) -> None:
    rate = 10.0
    n = webhook(ctx, fake, rate_per_second=rate, dedupe_window=0)
    bus = EventBus(notifiers={"audit": n}, routes={"web": ["audit"]})
    async with bus.running():
        for i in range(8):
            bus.emit(sync_failed(reason=f"R{i}"))
        await fake.wait_for(RX, 8)
        await bus.drain(2)
    times = [r.at for r in fake.on(RX)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Spacing is measured by the receiver; 5 ms of clock granularity tolerated.
    assert min(gaps) >= 1 / rate - 0.005, gaps
    assert [r.json["reason"] for r in fake.on(RX)] == [f"R{i}" for i in range(8)]


async def test_two_notifiers_sharing_a_rate_key_share_the_limit(
    fake: FakeServer, ctx: PluginContext
) -> None:
    # two notifier configs pointing at the same URL: the receiver's limit is per URL
    a = webhook(ctx, fake, name="a", rate_per_second=10, dedupe_window=0)
    b = webhook(ctx, fake, name="b", rate_per_second=20, dedupe_window=0)
    assert a.rate_key == b.rate_key
    bus = EventBus(notifiers={"a": a, "b": b}, routes={"web": ["a", "b"]})
    async with bus.running():
        for i in range(4):
            bus.emit(sync_failed(reason=f"R{i}"))
        await fake.wait_for(RX, 8)
        await bus.drain(2)
    times = sorted(r.at for r in fake.on(RX))
    gaps = [y - x for x, y in itertools.pairwise(times)]
    assert min(gaps) >= 0.1 - 0.005, gaps


async def test_nothing_lost_across_a_429_burst(
    fake: FakeServer, ctx: PluginContext, logs: LogCapture
) -> None:
    fake.script(RX, *[Reply(429, "rate_limited", {"Retry-After": "0.3"})] * 3)
    n = webhook(ctx, fake, rate_per_second=50, dedupe_window=0, max_retries=1)
    bus = EventBus(notifiers={"audit": n}, routes={"web": ["audit"]}, logger=logs.logger)
    async with bus.running():
        for i in range(10):
            bus.emit(sync_failed(reason=f"R{i}"))
        await fake.wait_for(RX, 13)
        await bus.drain(3)
    reqs = fake.on(RX)
    assert len(reqs) == 13
    # R0 is refused three times (429 does not use up max_retries=1), then everything arrives in order
    assert [r.json["reason"] for r in reqs[3:]] == [f"R{i}" for i in range(10)]
    assert {r.json["reason"] for r in reqs[:3]} == {"R0"}
    for before, after in itertools.pairwise(reqs[:4]):
        assert after.at - before.at >= 0.3 - 0.005  # Retry-After honoured
    assert bus.stats()["audit"] == {
        "sent": 10,
        "failed": 0,
        "dropped": 0,
        "queued": 0,
        "deduped": 0,
        "retried": 3,
    }


async def test_transient_errors_retry_with_backoff(fake: FakeServer, ctx: PluginContext) -> None:
    fake.script(RX, Reply(500, "boom"), Reply(503, "down"), Reply(502, ""))
    n = webhook(ctx, fake, rate_per_second=100, max_retries=5)
    bus = EventBus(
        notifiers={"audit": n}, routes={"web": ["audit"]}, backoff_base=0.05, backoff_max=1
    )
    async with bus.running():
        bus.emit(sync_failed())
        await fake.wait_for(RX, 4)
        await bus.drain(2)
    times = [r.at for r in fake.on(RX)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # equal jitter: the n-th retry waits between half and all of 0.05 * 2**n
    for n_, gap in enumerate(gaps):
        assert gap >= 0.05 * 2**n_ / 2 - 0.005, gaps
    assert bus.stats()["audit"]["sent"] == 1
    assert bus.stats()["audit"]["retried"] == 3


async def test_retries_exhausted_reported_once(
    fake: FakeServer, ctx: PluginContext, hooks: HookRecorder, logs: LogCapture
) -> None:
    fake.script(RX, *[Reply(500, "boom")] * 6)
    n = webhook(ctx, fake, rate_per_second=100, max_retries=2, dedupe_window=0)
    bus = EventBus(
        hooks=hooks,
        notifiers={"audit": n},
        routes={"web": ["audit"]},
        logger=logs.logger,
        backoff_base=0.01,
    )
    async with bus.running():
        bus.emit(sync_failed(reason="A"))
        bus.emit(sync_failed(reason="B"))
        await fake.wait_for(RX, 6)
        await bus.drain(2)
    assert bus.stats()["audit"]["failed"] == 2
    failed = hooks.named("notifier-failed")
    assert len(failed) == 1
    assert failed[0].reason == "RetriesExhausted"
    assert failed[0].data["notifier"] == "audit"
    assert "HTTP 500" in failed[0].message


async def test_permanent_error_not_retried_and_reported_once(
    fake: FakeServer, ctx: PluginContext, hooks: HookRecorder, logs: LogCapture
) -> None:
    fake.script(RX, *[Reply(410, "gone")] * 3)
    dead = webhook(ctx, fake, name="dead", rate_per_second=100, dedupe_window=0)
    rec = Recording("rec", opts(rate_per_second=1000, dedupe_window=0), ctx)
    bus = EventBus(
        hooks=hooks,
        notifiers={"dead": dead, "rec": rec},
        routes={"web": ["dead", "rec"]},
        logger=logs.logger,
    )
    async with bus.running():
        for reason in "ABC":
            bus.emit(sync_failed(reason=reason))
        await fake.wait_for(RX, 3)
        await _until(lambda: len(rec.got) == 4)
        await anyio.sleep(0.1)
        await bus.drain(2)
    assert len(fake.on(RX)) == 3  # one attempt each, no retries
    assert bus.stats()["dead"]["failed"] == 3
    assert [e.reason for e in hooks.named("notifier-failed")] == ["PermanentError"]
    # the other notifier hears about it; the dead one is never told about itself
    assert sorted(e.name for e in rec.got) == [
        "notifier-failed",
        "sync-failed",
        "sync-failed",
        "sync-failed",
    ]
    assert not [r for r in fake.on(RX) if r.json["name"] == "notifier-failed"]


async def test_failure_to_deliver_notifier_failed_is_not_reported(
    fake: FakeServer, ctx: PluginContext, hooks: HookRecorder
) -> None:
    # both notifiers are broken: each one's failure report goes to the other and fails there,
    # which must not produce more reports
    fake.script(RX, *[Reply(404, "no_service")] * 50)
    a = webhook(ctx, fake, name="a", rate_per_second=100, dedupe_window=0)
    b = webhook(
        ctx, fake, name="b", rate_per_second=100, dedupe_window=0, url=fake.base + "/receiver?b"
    )
    bus = EventBus(hooks=hooks, notifiers={"a": a, "b": b}, routes={"web": ["a", "b"]})
    async with bus.running():
        bus.emit(sync_failed())
        await fake.wait_for(RX, 4)
        await anyio.sleep(0.3)
        await bus.drain(1)
    assert len(fake.on(RX)) == 4  # sync-failed x2, then each one's report at the other
    assert sorted(e.data["notifier"] for e in hooks.named("notifier-failed")) == ["a", "b"]


async def test_dead_notifier_delays_neither_emit_nor_other_notifiers(
    fake: FakeServer, ctx: PluginContext
) -> None:
    fake.hang("/hang")
    dead = webhook(
        ctx,
        fake,
        name="dead",
        url=fake.base + "/hang",
        timeout=30,
        rate_per_second=1000,
        dedupe_window=0,
    )
    live = webhook(ctx, fake, name="live", rate_per_second=1000, dedupe_window=0)
    bus = EventBus(notifiers={"dead": dead, "live": live}, routes={"web": ["dead", "live"]})
    async with bus.running():
        bus.emit(sync_failed(reason="first"))
        await fake.wait_for("/hang", 1)  # the dead one is now stuck in a request
        started = time.monotonic()
        for i in range(200):
            bus.emit(sync_failed(reason=f"R{i}"))
        emit_seconds = time.monotonic() - started
        await fake.wait_for(RX, 201, within=20)
        # the live notifier delivered everything while the dead one is still in its first request
        assert len(fake.on("/hang")) == 1
        assert bus.stats()["dead"]["queued"] == 201
        await bus.drain(0.2)
    assert emit_seconds < 10  # 200 emits; one blocked emit alone would take the 30 s timeout
    assert bus.stats()["dead"]["dropped"] == 201


async def test_hanging_receiver_times_out_and_is_retried(
    fake: FakeServer, ctx: PluginContext, logs: LogCapture
) -> None:
    fake.hang(RX, count=1)  # the first request never gets an answer
    n = webhook(ctx, fake, timeout=0.3, rate_per_second=100)
    bus = EventBus(
        notifiers={"audit": n}, routes={"web": ["audit"]}, backoff_base=0.01, logger=logs.logger
    )
    async with bus.running():
        bus.emit(sync_failed())
        await fake.wait_for(RX, 2)
        await bus.drain(2)
    first, second = fake.on(RX)
    # Counted, not timed: exactly one attempt failed, and it failed by timing out.
    assert second.json["id"] == first.json["id"]
    stats = bus.stats()["audit"]
    assert (stats["sent"], stats["retried"], stats["failed"]) == (1, 1, 0), stats
    retries = [line for line in logs.lines if line["event"] == "notification failed, will retry"]
    assert len(retries) == 1 and "timed out" in retries[0]["error"], retries


async def test_queue_overflow_drops_oldest_and_counts(
    fake: FakeServer, ctx: PluginContext, hooks: HookRecorder, metrics: MetricsRecorder
) -> None:
    import asyncio

    gate = asyncio.Event()
    fake.script("/slow", Reply(200, "", gate=gate))
    slow = webhook(
        ctx,
        fake,
        name="slow",
        url=fake.base + "/slow",
        queue_size=3,
        rate_per_second=1000,
        dedupe_window=0,
    )
    other = Recording("other", opts(rate_per_second=1000, dedupe_window=0), ctx)
    bus = EventBus(
        hooks=hooks,
        notifiers={"slow": slow, "other": other},
        routes={"web": ["slow"]},
        metrics=metrics,
    )
    async with bus.running():
        bus.emit(sync_failed(reason="R0"))
        await fake.wait_for("/slow", 1)  # R0 is in flight, held by the receiver
        for i in range(1, 10):
            bus.emit(sync_failed(reason=f"R{i}"))
        assert bus.stats()["slow"]["queued"] == 4  # in flight + a full queue of 3
        gate.set()
        await fake.wait_for("/slow", 4)
        await bus.drain(2)
    assert [r.json["reason"] for r in fake.on("/slow")] == ["R0", "R7", "R8", "R9"]
    assert bus.stats()["slow"]["dropped"] == 6
    assert metrics.dropped["slow"] == 6
    # reported once (rate-limited), to the others but not to the overflowing notifier itself
    reports = hooks.named("notifier-failed")
    assert len(reports) == 1 and reports[0].reason == "QueueOverflow"
    assert reports[0].data["notifier"] == "slow"
    assert [e.name for e in other.got] == ["notifier-failed"]


async def test_drain_delivers_backlog_before_shutdown(fake: FakeServer, ctx: PluginContext) -> None:
    n = webhook(ctx, fake, rate_per_second=20, dedupe_window=0)
    bus = EventBus(notifiers={"audit": n}, routes={"web": ["audit"]})
    async with bus.running():
        for i in range(6):
            bus.emit(sync_failed(reason=f"R{i}"))
        left = await bus.drain(5)
        bus.emit(sync_failed(reason="late"))  # after drain: logged, not queued
    assert left == {"audit": 0}
    assert [r.json["reason"] for r in fake.on(RX)] == [f"R{i}" for i in range(6)]
    assert n._client is None  # closed after the drain


async def test_drain_gives_up_at_the_deadline(
    fake: FakeServer, ctx: PluginContext, logs: LogCapture
) -> None:
    fake.hang(RX)
    n = webhook(ctx, fake, rate_per_second=20, dedupe_window=0, timeout=30)
    bus = EventBus(notifiers={"audit": n}, routes={"web": ["audit"]}, logger=logs.logger)
    async with bus.running():
        for i in range(3):
            bus.emit(sync_failed(reason=f"R{i}"))
        await fake.wait_for(RX, 1)
        started = time.monotonic()
        left = await bus.drain(0.3)
        took = time.monotonic() - started
    assert left == {"audit": 3}
    assert 0.3 - 0.005 <= took < 5
    assert bus.stats()["audit"]["dropped"] == 3
    assert "not delivered before the shutdown deadline" in logs.text


async def test_run_in_a_task_group_until_drained(fake: FakeServer, ctx: PluginContext) -> None:
    n = webhook(ctx, fake, rate_per_second=100)
    bus = EventBus(notifiers={"audit": n}, routes={"web": ["audit"]})
    async with anyio.create_task_group() as tg:
        tg.start_soon(bus.run)
        bus.emit(sync_failed())
        await fake.wait_for(RX, 1)
        await bus.drain(1)
    assert bus.stats()["audit"]["sent"] == 1


async def test_reconfigure_keeps_unchanged_and_retires_removed(
    fake: FakeServer, ctx: PluginContext
) -> None:
    a = Recording("a", opts(rate_per_second=1000, dedupe_window=0), ctx)
    b = webhook(ctx, fake, name="b", rate_per_second=1000, dedupe_window=0)
    c = Recording("c", opts(rate_per_second=1000, dedupe_window=0), ctx)
    bus = EventBus(notifiers={"a": a, "b": b}, routes={"web": ["a", "b"]})
    async with bus.running():
        bus.emit(sync_failed(reason="before"))
        await _until(lambda: len(a.got) == 1)
        await fake.wait_for(RX, 1)
        await bus.reconfigure({"a": a, "c": c}, {"web": ["a", "c"]})
        bus.emit(sync_failed(reason="after"))
        await _until(lambda: len(a.got) == 2 and len(c.got) == 1)
        await _until(lambda: b._client is None)  # the removed notifier was closed
        await bus.drain(1)
    assert set(bus.stats()) == {"a", "c"}
    assert len(fake.on(RX)) == 1


async def test_secrets_never_in_logs_or_events(
    fake: FakeServer, ctx: PluginContext, hooks: HookRecorder, logs: LogCapture
) -> None:
    secret_url = fake.base + "/receiver/tok-3f9a7c1e5b"
    fake.script("/receiver/tok-3f9a7c1e5b", Reply(404, "no such hook"))
    (ctx.config_dir / "url").write_text(secret_url)
    n = webhook(ctx, fake, url=None, url_file="url", rate_per_second=100)
    bus = EventBus(
        hooks=hooks, notifiers={"audit": n}, routes={"web": ["audit"]}, logger=logs.logger
    )
    async with bus.running():
        bus.emit(sync_failed())
        await _until(lambda: bool(hooks.named("notifier-failed")))
        await bus.drain(1)
    assert "tok-3f9a7c1e5b" not in logs.text
    assert HMAC_SECRET not in logs.text
    for event in hooks.events:
        assert "tok-3f9a7c1e5b" not in str(event.to_dict())
    assert "HTTP 404" in hooks.named("notifier-failed")[0].message


async def test_notifier_failed_about_others_are_separate_for_dedupe(ctx: PluginContext) -> None:
    rec = Recording("rec", opts(rate_per_second=1000), ctx)
    bus = EventBus(notifiers={"rec": rec})
    async with bus.running():
        bus.emit(NotifierFailed.make(reason="PermanentError", data={"notifier": "x"}))
        bus.emit(NotifierFailed.make(reason="PermanentError", data={"notifier": "y"}))
        bus.emit(NotifierFailed.make(reason="PermanentError", data={"notifier": "x"}))
        await _until(lambda: len(rec.got) == 2)
        await bus.drain(1)
    assert [e.data["notifier"] for e in rec.got] == ["x", "y"]


async def test_default_logger_writes_one_redacted_json_line_per_event() -> None:
    import io
    import json
    import logging

    import structlog

    from gitopsd.core.logs import configure_logging
    from gitopsd.core.secrets import Secret

    saved = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        configure_logging(fmt="json", level="info", stream=stream)
        secret = Secret("hunter2-very-secret")
        bus = EventBus()
        bus.emit(sync_failed(message=f"auth failed with {secret.reveal()}", data={"duration": 2.0}))
    finally:
        structlog.configure(**saved)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["logger"] == "gitopsd.core.events"
    assert record["name"] == "sync-failed"
    assert record["level"] == "error"
    assert record["data"] == {"duration": 2.0}
    assert record["message"] == "auth failed with ***"
    assert "hunter2" not in lines[0]
