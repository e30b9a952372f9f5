"""Why an app reconciles now: a coalescing trigger each app runner waits on."""

from __future__ import annotations

import random

import anyio


class Trigger:
    """A wake-up signal that coalesces: many triggers before the runner wakes are one reconcile.

    ``fire(reason)`` may be called from anywhere on the event loop (interval timers, the
    webhook receiver, a file watcher, drift callbacks, the API); ``wait(timeout)`` returns
    the reasons gathered, or ``["interval"]`` when the timeout passed first.
    """

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._reasons: list[str] = []
        self.force = False

    def fire(self, reason: str, *, force: bool = False) -> None:
        """Ask for a reconcile. ``force`` makes it sync even if nothing seems changed (refresh)."""
        if reason not in self._reasons:
            self._reasons.append(reason)
        self.force = self.force or force
        self._event.set()

    async def wait(self, timeout: float) -> tuple[list[str], bool]:
        """Wait for a fire or ``timeout`` seconds; return (reasons, force) and reset."""
        with anyio.move_on_after(timeout):
            await self._event.wait()
        reasons, force = self._reasons or ["interval"], self.force
        self._reasons, self.force = [], False
        self._event = anyio.Event()
        return reasons, force


def jittered(interval: float, jitter: float) -> float:
    """``interval`` plus up to ``jitter`` of it at random, so apps sharing an interval spread out."""
    return interval * (1 + random.random() * jitter)
