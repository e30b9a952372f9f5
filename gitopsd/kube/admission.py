"""Admission into a cluster's apply path: how many apps sync at once, in arrival order.

Without a bound, every app that has something to apply enters its sync at once: with
10,000 apps every one holds its prepared objects, request bodies and one task per object
while they all queue behind the cluster's request limiter, and they all finish at the end
(bench 10,000x5: 876 MiB). With it, at most ``slots`` apps are between "prepared" and
"applied"; the others wait, in the order they arrived (the limiter is FIFO), holding only
their render, and apps finish one after another.

An app gives its slot back as soon as it only waits on the cluster (health, a hook Job,
a deletion: :meth:`gitopsd.kube.cache.LiveCache.wait_change` calls :func:`waiting`), so a
slow rollout or a broken app never holds others back; the rest of its sync (later steps,
prune) goes on without a slot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

import anyio


class _Ticket:
    """One app's admission; released once, whichever comes first (wait, or the end of the sync)."""

    __slots__ = ("admission", "held")

    def __init__(self, admission: Admission):
        self.admission = admission
        self.held = False

    def release(self) -> None:
        if self.held:
            self.held = False
            self.admission._release(self)


_current: ContextVar[_Ticket | None] = ContextVar("gitopsd_admission", default=None)


class Admission:
    """A per-cluster bound on apps in their apply phase (see the module docstring).

    Args:
        slots: Apps admitted at once.
    """

    def __init__(self, slots: int):
        self.slots = max(1, slots)
        self._limiter = anyio.CapacityLimiter(self.slots)
        self.admitted = 0
        """Apps holding a slot now."""
        self.peak = 0
        """The most apps that held a slot at once (tests, diagnostics)."""

    @property
    def queued(self) -> int:
        """Apps waiting for a slot."""
        return self._limiter.statistics().tasks_waiting

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold a slot for the body (or until the body calls :func:`waiting`)."""
        ticket = _Ticket(self)
        await self._limiter.acquire_on_behalf_of(ticket)
        ticket.held = True
        self.admitted += 1
        self.peak = max(self.peak, self.admitted)
        token = _current.set(ticket)
        try:
            yield
        finally:
            _current.reset(token)
            ticket.release()

    def _release(self, ticket: _Ticket) -> None:
        self.admitted -= 1
        self._limiter.release_on_behalf_of(ticket)


def waiting() -> None:
    """The current task only waits on the cluster now: give its app's slot to the next app."""
    ticket = _current.get()
    if ticket is not None:
        ticket.release()
