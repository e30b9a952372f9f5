"""Why an app reconciles now: a coalescing trigger each app runner waits on."""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

import anyio


@dataclass(frozen=True, slots=True)
class Wake:
    """Why a runner woke: the reasons gathered, whether to force a sync, and when it was asked."""

    reasons: list[str]
    force: bool = False
    fired_at: float = 0.0  # time.monotonic() of the last fire; 0.0 for the interval


class Trigger:
    """A wake-up signal that coalesces: many triggers before the runner wakes are one reconcile.

    ``fire(reason)`` may be called from anywhere on the event loop (interval timers, the
    webhook receiver, a file watcher, drift callbacks, the API); ``wait(timeout)`` returns
    a :class:`Wake` with the reasons gathered, or ``["interval"]`` when the timeout passed first.
    """

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._reasons: list[str] = []
        self.force = False
        self._fired_at = 0.0

    def fire(self, reason: str, *, force: bool = False) -> None:
        """Ask for a reconcile. ``force`` makes it sync even if nothing seems changed (refresh)."""
        if reason not in self._reasons:
            self._reasons.append(reason)
        self.force = self.force or force
        self._fired_at = time.monotonic()
        self._event.set()

    async def wait(self, timeout: float) -> Wake:
        """Wait for a fire or ``timeout`` seconds; return what woke us, and reset."""
        with anyio.move_on_after(timeout):
            await self._event.wait()
        wake = Wake(self._reasons or ["interval"], self.force, self._fired_at)
        self._reasons, self.force, self._fired_at = [], False, 0.0
        self._event = anyio.Event()
        return wake


def aligned(interval: float, jitter: float, key: str, now: float | None = None) -> float:
    """Seconds until the next interval poll of an app whose source is ``key``.

    Polls fall on fixed instants, ``k * interval + phase``; the phase (up to ``jitter`` of
    the interval) is derived from ``key``. Apps reading the same source therefore poll
    together, so one shared poll (one ``git ls-remote`` per repository) serves them all,
    while different sources stay spread out. At least half an interval separates two polls
    of one app.
    """
    if interval <= 0:
        return 0.0
    now = time.time() if now is None else now
    phase = (zlib.crc32(key.encode()) % 10_000) / 10_000 * jitter * interval
    delay = interval - ((now - phase) % interval)
    if delay < interval / 2:
        delay += interval
    return delay
