"""Sync windows: when automatic syncs may run (``[windows.NAME]`` in the config).

A window opens each time its cron ``schedule`` fires (in its ``timezone``) and stays open
for ``duration``. While a *deny* window that matches an app is open, the app's automatic
syncs wait; if *allow* windows match an app, its automatic syncs run only while one of
them is open. Deny wins over allow. ``manual_sync`` lets operator syncs through, and
``self_heal`` lets self-heal restore the applied revision.

Time comes from an injectable clock (a callable returning an aware UTC ``datetime``), so
tests move time instead of waiting for it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from gitopsd.plugin.config import WindowConfig

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime."""

MANUAL_REASONS = frozenset({"manual", "refresh", "rollback"})
"""Wake reasons that are an operator's explicit request (``manual_sync`` applies to them)."""


def utcnow() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


class OpenWindow(NamedTuple):
    """A window that is open now: its name, kind and when this opening ends."""

    name: str
    kind: str
    start: datetime
    end: datetime


class Block(NamedTuple):
    """Why an app's sync waits: the window (or ``allow windows``) and when it may run again."""

    window: str
    until: datetime

    def describe(self) -> str:
        return f"sync window {self.window} is closed to syncs until {self.until.strftime('%Y-%m-%d %H:%M UTC')}"


def last_opening(window: WindowConfig, now: datetime) -> tuple[datetime, datetime]:
    """``(start, end)`` (UTC) of the latest opening of ``window`` that started at or before ``now``."""
    from croniter import croniter  # only when windows are configured

    zone = ZoneInfo(window.timezone)
    local = now.astimezone(zone)
    it = croniter(window.schedule, local + timedelta(seconds=1))
    start: datetime = it.get_prev(datetime)
    while start > local:  # croniter rounds to whole minutes/seconds: step back past now
        start = it.get_prev(datetime)
    start_utc = start.astimezone(UTC)
    return start_utc, start_utc + timedelta(seconds=window.duration)  # an absolute duration, DST or not


def next_opening(window: WindowConfig, now: datetime) -> datetime:
    """When ``window`` opens next after ``now`` (UTC)."""
    from croniter import croniter

    zone = ZoneInfo(window.timezone)
    start: datetime = croniter(window.schedule, now.astimezone(zone)).get_next(datetime)
    return start.astimezone(UTC)


class SyncWindows:
    """The configured windows and a clock; shared by every app of a daemon.

    Call :meth:`configure` after a config reload: the same object keeps serving the apps.
    """

    def __init__(self, windows: Mapping[str, WindowConfig] | None = None, clock: Clock = utcnow):
        self.clock = clock
        self._windows: dict[str, WindowConfig] = dict(windows or {})

    def configure(self, windows: Mapping[str, WindowConfig]) -> None:
        self._windows = dict(windows)

    def now(self) -> datetime:
        return self.clock()

    def _matching(self, app: str) -> list[tuple[str, WindowConfig]]:
        return [
            (name, w) for name, w in self._windows.items() if any(fnmatch.fnmatchcase(app, p) for p in w.apps)
        ]

    def open_windows(self, now: datetime | None = None) -> list[OpenWindow]:
        """Every window open at ``now`` (default: the clock's now), for ``gitopsd status``."""
        now = now or self.clock()
        result = []
        for name, window in sorted(self._windows.items()):
            start, end = last_opening(window, now)
            if now < end:
                result.append(OpenWindow(name, window.kind, start, end))
        return result

    def block(self, app: str, reasons: Iterable[str] = (), *, self_heal: bool = False) -> Block | None:
        """Why a sync of ``app`` woken for ``reasons`` must wait now, or None when it may run.

        ``self_heal``: the sync only restores the already applied revision (drift).
        """
        now = self.clock()
        manual = not MANUAL_REASONS.isdisjoint(reasons)

        def exempt(window: WindowConfig) -> bool:
            return (manual and window.manual_sync) or (self_heal and window.self_heal)

        matching = self._matching(app)
        denying: list[tuple[str, datetime]] = []
        for name, window in matching:
            if window.kind != "deny":
                continue
            _, end = last_opening(window, now)
            if now < end and not exempt(window):
                denying.append((name, end))
        if denying:
            return Block(", ".join(n for n, _ in denying), max(end for _, end in denying))
        allows = [(n, w) for n, w in matching if w.kind == "allow"]
        if not allows:
            return None
        if any(now < last_opening(w, now)[1] for _, w in allows):
            return None
        if any(exempt(w) for _, w in allows):
            return None
        until = min(next_opening(w, now) for _, w in allows)
        return Block("outside allow windows " + ", ".join(n for n, _ in allows), until)
