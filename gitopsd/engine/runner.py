"""One application's loop in the daemon: wait for a trigger, reconcile, repeat.

The pipeline itself (poll, fetch, render, sync, record, events) is the
:class:`~gitopsd.engine.reconciler.Reconciler`, shared with the CLI and the testing kit;
this module only decides *when* it runs: at start, on triggers (webhook, refresh, drift,
source changes, resume, rollback), on the interval, and with backoff after failures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import structlog

from gitopsd.core.errors import GitopsdError
from gitopsd.core.models import Manifest, SyncResult
from gitopsd.core.state import Pin
from gitopsd.engine.dependencies import DependencyGate
from gitopsd.engine.idle import IdleChecks
from gitopsd.engine.reconciler import AppStatus, Reconciler
from gitopsd.engine.triggers import Trigger, Wake, aligned
from gitopsd.plugin.config import AppConfig, Config
from gitopsd.plugin.interfaces import Source

if TYPE_CHECKING:
    # Annotations only: engine.protocols (two frozen dataclasses) comes with the Kubernetes layer, after ready.
    from gitopsd.engine.protocols import Cluster

log = structlog.get_logger("gitopsd.engine")

RETRY_MIN = 2.0  # seconds before the first retry of a failed reconcile; doubles up to the interval


class AppRunner:
    """Runs one application until cancelled. The daemon starts one named task per runner."""

    def __init__(self, reconciler: Reconciler, config: Config):
        self.app: AppConfig = reconciler.app
        self.config = config
        self.trigger = Trigger()
        self.reconciler = reconciler
        reconciler.wake = self._wake  # drift (self-heal), resume and rollback ask for a reconcile
        # Held during each reconcile, so a caller can wait for the one in flight (asyncio's
        # lock: no waiter queue until someone waits, where anyio's allocates one per app).
        self.busy = asyncio.Lock()
        self._failures = 0
        self.passes = 0
        """Reconciles this runner has finished (failed ones included)."""
        self.on_progress: Callable[[AppRunner], None] | None = None
        """Called after each reconcile and each pin change (the daemon notices the first one)."""
        self.idle_checks: IdleChecks | None = None
        """The daemon's interval checks of parked apps (None: the app checks in its own task)."""
        self.wakes = 0
        """Times this runner's task woke from its wait (an app parked while idle does not)."""
        self._parked: int | None = None  # the tick of the interval check filed with idle_checks

    @property
    def gate(self) -> DependencyGate | None:
        """The daemon's ``depends_on`` gate (None outside the daemon)."""
        return self.reconciler.gate

    @gate.setter
    def gate(self, gate: DependencyGate | None) -> None:
        self.reconciler.gate = gate

    def _wake(self, reason: str, force: bool) -> None:
        self.trigger.fire(reason, force=force)

    @property
    def status(self) -> AppStatus:
        return self.reconciler.status

    @property
    def source(self) -> Source:
        return self.reconciler.source

    @property
    def cluster(self) -> Cluster:
        assert self.reconciler.cluster is not None
        return self.reconciler.cluster

    @property
    def desired(self) -> list[Manifest] | None:
        """The manifests last applied (or found in sync); None before the first render."""
        applied = self.reconciler.applied
        return list(applied.manifests) if applied is not None else None

    async def set_pin(self, pin: Pin) -> None:
        """Suspend/resume or pin to a revision (see :meth:`Reconciler.set_pin`)."""
        await self.reconciler.set_pin(pin)
        if self.on_progress is not None:
            self.on_progress(self)

    async def decide(self, revision: str, *, approve: bool, by: str) -> str:
        """Approve or reject the app's pending revision; an approval wakes the app at once.

        Raises :class:`~gitopsd.engine.approvals.ApprovalError` when ``revision`` is not pending.
        """
        return await self.reconciler.decide(revision, approve=approve, by=by)

    async def run(self, stopping: anyio.Event) -> None:
        """Reconcile now, then on every trigger or interval, until ``stopping`` is set."""
        # Every log line of this task (plugins' included) carries the app and its cluster.
        structlog.contextvars.bind_contextvars(app=self.app.name, cluster=self.app.cluster)
        await self.reconciler.load()
        changes = self.source.changes()
        if changes is None:
            # A polled source (git, OCI, helm): the app is one task, asleep on its trigger.
            await self._loop(stopping)
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._follow_changes, changes, name=f"app:{self.app.name}:changes")
            await self._loop(stopping)
            tg.cancel_scope.cancel()

    async def _loop(self, stopping: anyio.Event) -> None:
        wake = Wake(["start"])
        while not stopping.is_set():
            if wake.fired_at and not {"webhook", "refresh"}.isdisjoint(wake.reasons):
                # Someone says the source changed: a cached poll from before that is stale.
                self.source.invalidate(before=wake.fired_at)
            async with self.busy:
                await self.reconcile(wake.reasons, force=wake.force)
            self._passed()
            if stopping.is_set():
                break
            wake = await self._wait()
            self.wakes += 1

    def _passed(self) -> None:
        self.passes += 1
        if self.on_progress is not None:
            self.on_progress(self)
        if self.gate is not None:
            self.gate.settled(self.app.name)  # depends_on: wake the apps this one holds

    async def _wait(self) -> Wake:
        """Wait for a trigger or the end of the interval; park when the interval check can be
        made without waking this task (see :mod:`gitopsd.engine.idle`)."""
        delay = self._next_delay()
        group = self._poll_group()
        if not group:
            return await self.trigger.wait(delay)
        assert self.idle_checks is not None
        self._parked = self.idle_checks.park(self, group, delay)
        try:
            return await self.trigger.wait(None)
        finally:
            self._parked = None

    def _poll_group(self) -> str:
        """The poll group to park under, or "" to wait on a timer: with a backoff or a hold
        pending, or a source that polls alone, the task wakes itself as before."""
        if self.idle_checks is None or self._failures or self.reconciler.next_wake() is not None:
            return ""
        return self.source.poll_group

    async def interval_check(self, tick: int) -> None:
        """The interval check of a parked app, made by :class:`IdleChecks` at ``tick``: when
        nothing changed it is counted as an ``unchanged`` reconcile and the app parks again;
        otherwise the app wakes and reconciles in its own task, as at the end of any interval."""
        if self._parked != tick:
            return  # woke meanwhile (a trigger): its own reconcile polls
        try:
            revision = await self.reconciler.interval_poll()
            if self._parked != tick:
                return
            group = self._poll_group()
            if revision is None or not group or not self.reconciler.unchanged(revision):
                self._parked = None
                self.trigger.expire()
                return
            self._passed()
            assert self.idle_checks is not None
            self._parked = self.idle_checks.park(self, group, self._next_delay())
        except Exception:
            log.exception("interval check failed; the app reconciles", app=self.app.name)
            self._parked = None
            self.trigger.expire()

    async def reconcile(self, reasons: list[str], *, force: bool = False) -> SyncResult | None:
        """One reconcile; failures are already reported by the Reconciler and only counted here."""
        try:
            result = await self.reconciler.reconcile(reasons, force=force)
        except GitopsdError:
            self._failures += 1
            return None
        self._failures = 0 if result is None or result.ok else self._failures + 1
        return result

    async def _follow_changes(self, changes: object) -> None:
        async for _ in changes:  # type: ignore[attr-defined]
            self.trigger.fire("source-changed")

    def _next_delay(self) -> float:
        delay = self._usual_delay()
        # A held sync (window, approval timeout) is retried as soon as its hold can end.
        hold = self.reconciler.next_wake()
        return delay if hold is None else min(delay, hold)

    def _usual_delay(self) -> float:
        interval = self.config.interval(self.app)
        if self._failures:
            # Exponential backoff after failures, capped by the app's interval.
            return min(interval, RETRY_MIN * 2 ** (self._failures - 1))
        # Aligned per source rather than random: every app of a repository polls at the same
        # instants, and the source's shared poll serves them all (bench: 3 -> 1 ls-remote per
        # interval at 1000 apps on one repository).
        return aligned(interval, self.config.daemon.interval_jitter, self.source.url or self.app.name)
