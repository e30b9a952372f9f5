"""One application's reconcile loop: wait for a trigger, poll, fetch, render, sync, report."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
import structlog

from gitopsd.core import events as ev
from gitopsd.core.errors import ApplyError, GitopsdError, RenderError, SourceError
from gitopsd.core.events import Event
from gitopsd.core.models import Artifact, Health, Manifest, ObjectRef, SyncResult, SyncStatus
from gitopsd.core.state import Pin, StateStore
from gitopsd.engine import stages
from gitopsd.engine.protocols import Cluster
from gitopsd.engine.stages import Workspace
from gitopsd.engine.triggers import Trigger, Wake, aligned
from gitopsd.plugin.config import AppConfig, Config
from gitopsd.plugin.interfaces import Source

log = structlog.get_logger("gitopsd.engine")

RETRY_MIN = 2.0  # seconds before the first retry of a failed reconcile; doubles up to the interval


@dataclass
class AppStatus:
    """What the API and ``gitopsd status`` show about one app."""

    name: str
    cluster: str
    namespace: str
    revision: str = ""
    sync: SyncStatus = SyncStatus.UNKNOWN
    health: Health = Health.UNKNOWN
    suspended: bool = False
    pinned_revision: str = ""
    last_sync_time: datetime | None = None
    last_result: str = ""
    last_message: str = ""
    last_counts: dict[str, int] = field(default_factory=dict)
    reconciles: int = 0
    last_duration: float = 0.0


class RunnerMetrics(Protocol):
    """What a runner reports to the metrics (see :class:`gitopsd.server.metrics.Metrics`)."""

    def reconcile(self, app: str, outcome: str, seconds: float) -> None: ...

    def source_fetch(self, source_type: str, result: str) -> None: ...


class _NoMetrics:
    def reconcile(self, app: str, outcome: str, seconds: float) -> None:
        pass

    def source_fetch(self, source_type: str, result: str) -> None:
        pass


class StateInventory:
    """The :class:`gitopsd.engine.protocols.Inventory` of one app, stored in the state database."""

    def __init__(self, store: StateStore, app: str):
        self._store = store
        self._app = app

    async def current(self) -> list[ObjectRef]:
        return await self._store.inventory(self._app)

    async def add(self, refs: Iterable[ObjectRef]) -> None:
        await self._store.add_to_inventory(self._app, refs)

    async def remove(self, refs: Iterable[ObjectRef]) -> None:
        await self._store.remove_from_inventory(self._app, refs)


class AppRunner:
    """Runs one application until cancelled. The daemon starts one named task per runner."""

    def __init__(
        self,
        app: AppConfig,
        config: Config,
        workspace: Workspace,
        store: StateStore,
        cluster: Cluster,
        emit: Callable[[Event], None],
        metrics: RunnerMetrics | None = None,
    ):
        self.app = app
        self.config = config
        self.metrics: RunnerMetrics = metrics or _NoMetrics()
        self.workspace = workspace
        self.store = store
        self.cluster = cluster
        self.emit = emit
        self.source: Source = workspace.source_for(app)
        self.trigger = Trigger()
        self.status = AppStatus(app.name, app.cluster, app.namespace, suspended=app.suspended)
        self.busy = anyio.Lock()  # held while reconciling, so shutdown can wait for it
        self._manifests: list[Manifest] | None = None  # what was last applied (or found in sync)
        self._manifests_revision = ""
        self._drifted: list[ObjectRef] = []
        self._drift_reported = False
        self._health_degraded = False  # a health-degraded event was sent and not yet recovered
        self._last_seen_revision = ""
        self._failures = 0

    def _event(self, cls: type[Event], *, data: dict[str, Any] | None = None, **fields: Any) -> None:
        """Emit ``cls`` for this app, with the context every notifier wants in ``data``."""
        fields.setdefault("revision", self.status.revision)
        context = {"namespace": self.app.namespace, "source_url": self.source.url, **(data or {})}
        self.emit(cls.make(app=self.app.name, cluster=self.app.cluster, data=context, **fields))

    # -- the loop ------------------------------------------------------------------------

    async def run(self, stopping: anyio.Event) -> None:
        """Reconcile now, then on every trigger or interval, until ``stopping`` is set."""
        # Every log line of this task (plugins' included) carries the app and its cluster.
        structlog.contextvars.bind_contextvars(app=self.app.name, cluster=self.app.cluster)
        pin = await self.store.pin(self.app.name)
        self.status.suspended = pin.suspended or self.app.suspended
        self.status.pinned_revision = pin.revision
        record = await self.store.app(self.app.name)
        if record is not None:
            self.status.revision = record.revision
            self._last_seen_revision = record.revision
        async with anyio.create_task_group() as tg:
            changes = self.source.changes()
            if changes is not None:
                tg.start_soon(self._follow_changes, changes, name=f"app:{self.app.name}:changes")
            wake = Wake(["start"])
            while not stopping.is_set():
                if wake.fired_at and not {"webhook", "refresh"}.isdisjoint(wake.reasons):
                    # Someone says the source changed: a cached poll from before that is stale.
                    self.source.invalidate(before=wake.fired_at)
                async with self.busy:
                    await self.reconcile(wake.reasons, force=wake.force)
                if stopping.is_set():
                    break
                wake = await self.trigger.wait(self._next_delay())
            tg.cancel_scope.cancel()

    async def _follow_changes(self, changes: object) -> None:
        async for _ in changes:  # type: ignore[attr-defined]
            self.trigger.fire("source-changed")

    def _next_delay(self) -> float:
        interval = self.config.interval(self.app)
        if self._failures:
            return min(interval, RETRY_MIN * 2 ** (self._failures - 1))
        # Aligned per source rather than random: every app of a repository polls at the same
        # instants, and the source's shared poll serves them all (bench: 3 -> 1 ls-remote per
        # interval at 1000 apps on one repository).
        return aligned(interval, self.config.daemon.interval_jitter, self.source.url or self.app.name)

    @property
    def desired(self) -> list[Manifest] | None:
        """The manifests last applied (or found in sync); None before the first render."""
        return self._manifests

    def on_drift(self, refs: list[ObjectRef]) -> None:
        """Called by the cluster's live cache when tracked objects stop matching."""
        self._drifted = refs
        self.status.sync = SyncStatus.OUT_OF_SYNC
        if self.app.self_heal and not self.status.suspended:
            self.trigger.fire("drift")
        elif not self._drift_reported:
            self._drift_reported = True
            self._event(
                ev.DriftDetected,
                reason="LiveStateChanged",
                message=f"{len(refs)} object(s) differ from {self.status.revision}: " + ", ".join(map(str, refs[:10])),
                data={"objects": [str(r) for r in refs]},
            )

    # -- one reconcile -------------------------------------------------------------------

    async def reconcile(self, reasons: list[str], *, force: bool = False) -> SyncResult | None:
        """One pass of the pipeline. Never raises for app-level failures: they become events."""
        if self.status.suspended:
            self.metrics.reconcile(self.app.name, "skipped", 0.0)
            return None
        started = time.monotonic()
        self.status.reconciles += 1
        try:
            result = await self._reconcile(reasons, force, started)
        except GitopsdError as exc:
            self._failures += 1
            self._record_failure(exc)
            self.metrics.reconcile(self.app.name, "failed", time.monotonic() - started)
            return None
        self._failures = 0 if result is None or result.ok else self._failures + 1
        outcome = "unchanged" if result is None else ("succeeded" if result.ok else "failed")
        self.metrics.reconcile(self.app.name, outcome, time.monotonic() - started)
        return result

    async def _reconcile(self, reasons: list[str], force: bool, started: float) -> SyncResult | None:
        revision = self.status.pinned_revision or await self._poll()
        structlog.contextvars.bind_contextvars(revision=revision)
        if revision != self._last_seen_revision:
            self._last_seen_revision = revision
            self._event(ev.RevisionDetected, revision=revision, message=f"new revision {revision}")
        drifted = "drift" in reasons and bool(self._drifted)
        if not force and not drifted and self._manifests is not None and revision == self._manifests_revision:
            # Nothing new from the source: ask the live cache, which costs no API request.
            if self.cluster.in_sync(self.app, self._manifests) is not False:
                self.status.sync = SyncStatus.SYNCED
                return None
        artifact = await self._fetch(revision)
        try:
            manifests = await stages.render(self.workspace, self.app, artifact)
        except RenderError as exc:
            self._event(ev.RenderFailed, revision=revision, reason=exc.reason, message=str(exc))
            raise
        if not force and not drifted and revision == self.status.revision and self.cluster.in_sync(self.app, manifests):
            # A restart, or a re-render of what is applied: nothing to send.
            self._remember(manifests, revision)
            self.status.sync = SyncStatus.SYNCED
            self.status.health = self.cluster.health(self.app, manifests)
            return None
        return await self._sync(artifact.revision, artifact.digest, manifests, reasons, started)

    async def _poll(self) -> str:
        try:
            return await self.source.latest_revision()
        except SourceError as exc:
            self._event(ev.FetchFailed, reason=exc.reason, message=f"{self.app.name}: {exc}")
            raise

    async def _fetch(self, revision: str) -> Artifact:
        try:
            artifact = await stages.fetch(self.workspace, self.source, revision)
        except SourceError as exc:
            self.metrics.source_fetch(self.app.source.type, "failed")
            self._event(ev.FetchFailed, revision=revision, reason=exc.reason, message=f"{self.app.name}: {exc}")
            raise
        self.metrics.source_fetch(self.app.source.type, "ok")
        return artifact

    async def _sync(
        self, revision: str, digest: str, manifests: list[Manifest], reasons: list[str], started: float
    ) -> SyncResult:
        drift_fix = "drift" in reasons and revision == self.status.revision
        if not drift_fix:
            self._event(ev.SyncStarted, revision=revision, message=f"syncing {revision} ({', '.join(reasons)})")
        try:
            result = await self.cluster.sync(self.app, manifests, StateInventory(self.store, self.app.name))
        except ApplyError as exc:
            self.status.sync = SyncStatus.UNKNOWN
            self.status.health = Health.UNKNOWN
            self._event(ev.SyncFailed, revision=revision, reason=exc.reason, message=str(exc), data={"objects": exc.objects})
            raise
        result = replace(result, revision=revision, duration=time.monotonic() - started)
        await self.store.record_sync(
            self.app.name,
            revision=revision,
            result="succeeded" if result.ok else "failed",
            message=result.message,
            counts=result.counts,
            applied_digest=digest if result.ok else None,
            trigger=",".join(reasons),
        )
        self._report(result, revision, drift_fix)
        if result.ok:
            self.status.revision = revision
            self._remember(manifests, revision)
        return result

    def _remember(self, manifests: list[Manifest], revision: str) -> None:
        self._manifests = manifests
        self._manifests_revision = revision
        self._drifted = []
        self._drift_reported = False
        self.cluster.track(self.app, manifests, self.on_drift)

    def _report(self, result: SyncResult, revision: str, drift_fix: bool) -> None:
        self.status.health = result.health
        self.status.sync = SyncStatus.SYNCED if result.ok else SyncStatus.OUT_OF_SYNC
        self.status.last_sync_time = datetime.now(UTC)
        self.status.last_result = "succeeded" if result.ok else "failed"
        self.status.last_message = result.message
        self.status.last_counts = result.counts
        self.status.last_duration = result.duration
        data = {
            "counts": result.counts,
            "duration": round(result.duration, 3),
            "objects": {str(o.ref): o.message for o in result.objects if o.action == "failed" or o.message},
        }
        pruned = [str(o.ref) for o in result.objects if o.action == "pruned"]
        if pruned:
            self._event(ev.Pruned, revision=revision, message=f"pruned {len(pruned)} object(s)", data={"objects": pruned})
        if not result.ok:
            self._event(ev.SyncFailed, revision=revision, reason="SyncFailed", message=result.message, data=data)
        elif drift_fix:
            self._event(ev.DriftCorrected, revision=revision, reason="SelfHeal", message=result.message, data=data)
        elif result.count("created") or result.count("changed") or result.count("pruned") or revision != self.status.revision:
            self._event(ev.SyncSucceeded, revision=revision, message=result.message, data=data)
        # One event per transition: degraded once, recovered once after it.
        if result.health in (Health.DEGRADED, Health.MISSING, Health.UNKNOWN) and not self._health_degraded:
            self._health_degraded = True
            self._event(ev.HealthDegraded, revision=revision, reason=str(result.health), message=result.message, data=data)
        elif result.health == Health.HEALTHY and self._health_degraded:
            self._health_degraded = False
            self._event(ev.HealthRecovered, revision=revision, message=f"{self.app.name} is healthy again")

    def _record_failure(self, exc: GitopsdError) -> None:
        self.status.last_sync_time = datetime.now(UTC)
        self.status.last_result = "failed"
        self.status.last_message = str(exc)
        log.warning("reconcile failed", reason=exc.reason, error=str(exc))

    # -- operator actions ----------------------------------------------------------------

    async def set_pin(self, pin: Pin) -> None:
        """Suspend/resume or pin to a revision; persisted so it survives restarts."""
        was_suspended = self.status.suspended
        await self.store.set_pin(self.app.name, pin)
        self.status.suspended = pin.suspended
        self.status.pinned_revision = pin.revision
        if pin.suspended and not was_suspended:
            self._event(ev.AppSuspended, message=f"{self.app.name} suspended")
        elif was_suspended and not pin.suspended:
            self._event(ev.AppResumed, message=f"{self.app.name} resumed")
            self.trigger.fire("resume", force=True)
        elif pin.revision:
            self.trigger.fire("rollback", force=True)
