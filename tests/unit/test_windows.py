"""Sync windows: cron + time zone + duration, deny/allow, manual and self-heal exemptions (fake clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gitopsd.core.errors import ConfigError
from gitopsd.engine.windows import SyncWindows, last_opening
from gitopsd.plugin.config import WindowConfig
from gitopsd.plugin.loading import validate_config
from gitopsd.plugin.manager import PluginManager


class FakeClock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def window(**fields: Any) -> WindowConfig:
    return WindowConfig.model_validate({"schedule": "0 22 * * 5", "duration": "60h", **fields})


FRIDAY_2130 = datetime(2026, 11, 27, 21, 30, tzinfo=UTC)  # a Friday


def test_a_deny_window_is_open_from_its_start_for_its_duration() -> None:
    clock = FakeClock(FRIDAY_2130)
    windows = SyncWindows({"weekend": window()}, clock)
    assert windows.block("web", ["interval"]) is None
    clock.now = FRIDAY_2130 + timedelta(minutes=30)  # 22:00 exactly: open
    block = windows.block("web", ["interval"])
    assert block is not None and block.window == "weekend"
    assert block.until == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert [w.name for w in windows.open_windows()] == ["weekend"]
    clock.now = block.until - timedelta(seconds=1)
    assert windows.block("web", ["interval"]) is not None
    clock.now = block.until
    assert windows.block("web", ["interval"]) is None
    assert windows.open_windows() == []


def test_time_zone_moves_the_window() -> None:
    # 22:00 in Berlin is 21:00 UTC in November.
    w = window(timezone="Europe/Berlin")
    start, end = last_opening(w, datetime(2026, 11, 27, 21, 0, 30, tzinfo=UTC))
    assert start == datetime(2026, 11, 27, 21, 0, tzinfo=UTC)
    assert end - start == timedelta(hours=60)
    assert SyncWindows({"w": w}, FakeClock(datetime(2026, 11, 27, 20, 59, tzinfo=UTC))).block("a") is None


def test_apps_globs_manual_sync_and_self_heal() -> None:
    clock = FakeClock(FRIDAY_2130 + timedelta(hours=1))
    windows = SyncWindows({"prod": window(apps=["prod-*"], manual_sync=True, self_heal=False)}, clock)
    assert windows.block("staging-web", ["interval"]) is None
    assert windows.block("prod-web", ["interval"]) is not None
    assert windows.block("prod-web", ["refresh"]) is None  # manual_sync lets operators through
    assert windows.block("prod-web", ["drift"], self_heal=True) is not None  # self_heal = false: waits
    strict = SyncWindows({"prod": window(apps=["prod-*"])}, clock)
    assert strict.block("prod-web", ["refresh"]) is not None  # manual_sync defaults to false
    assert strict.block("prod-web", ["drift"], self_heal=True) is None  # self_heal defaults to true


def test_allow_windows_only_let_syncs_run_while_open() -> None:
    clock = FakeClock(datetime(2026, 11, 30, 8, 0, tzinfo=UTC))  # Monday 08:00
    windows = SyncWindows({"office": window(kind="allow", schedule="0 9 * * 1-5", duration="8h")}, clock)
    block = windows.block("web", ["interval"])
    assert block is not None and block.until == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    clock.now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert windows.block("web", ["interval"]) is None
    # deny wins over allow
    windows.configure({"office": window(kind="allow", schedule="0 9 * * 1-5", duration="8h"), "lunch": window(schedule="0 12 * * *", duration="1h")})
    block = windows.block("web", ["interval"])
    assert block is not None and block.window == "lunch"


def test_invalid_windows_are_config_errors() -> None:
    raw = {"windows": {"bad": {"schedule": "not cron", "duration": "1h", "timezone": "Mars/Olympus"}}}
    with pytest.raises(ConfigError) as err:
        validate_config(raw, PluginManager(builtins_only=True).types)
    text = str(err.value)
    assert "windows.bad.schedule" in text and "invalid cron expression" in text
    assert "windows.bad.timezone" in text and "unknown time zone" in text


def test_the_approval_notifier_must_exist_and_let_requests_through() -> None:
    base = {
        "clusters": {"c": {"kubeconfig": "/k"}},
        "notifiers": {"ops": {"type": "webhook", "url": "http://127.0.0.1:9/x", "events": ["sync-failed"]}},
    }
    apps = {
        "web": {"cluster": "c", "source": {"type": "local", "path": "/x"}, "approval": {"notifier": "ops"}},
        "api": {"cluster": "c", "source": {"type": "local", "path": "/x"}, "approval": {"notifier": "nope"}},
    }
    with pytest.raises(ConfigError) as err:
        validate_config({**base, "apps": apps}, PluginManager(builtins_only=True).types)
    text = str(err.value)
    assert "apps.web.approval.notifier: notifiers.ops.events does not include approval-requested" in text
    assert "apps.api.approval.notifier: unknown notifier 'nope'" in text
