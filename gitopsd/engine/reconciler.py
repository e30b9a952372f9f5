"""One reconcile of one app: poll -> fetch -> render -> sync -> record -> events.

:class:`Reconciler` is the only implementation of that path. The daemon's
:class:`~gitopsd.engine.runner.AppRunner` calls it on every trigger; ``gitopsd sync``,
``gitopsd diff``, ``gitopsd render`` and the testing kit's ``run_app`` call it once
(through :mod:`gitopsd.daemon.wiring`), so every caller sees the same events, the same
status and the same state records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from gitopsd.core import events as ev
from gitopsd.core.errors import ApplyError, GitopsdError, InternalError, RenderError, SourceError
from gitopsd.core.events import Event
from gitopsd.core.models import Artifact, Health, ObjectRef, Rendered, SyncResult, SyncStatus
from gitopsd.core.secrets import REDACTOR
from gitopsd.core.state import Pin, StateStore
from gitopsd.engine import stages
from gitopsd.engine.dependencies import DependencyGate
from gitopsd.engine.stages import Workspace
from gitopsd.engine.windows import SyncWindows
from gitopsd.plugin.config import AppConfig
from gitopsd.plugin.interfaces import Source

if TYPE_CHECKING:
    # Annotations only: engine.approvals comes with the first app that has `approval`, and
    # engine.protocols (two frozen dataclasses) with the Kubernetes layer, after ready.
    from gitopsd.engine.approvals import ApprovalGate
    from gitopsd.engine.protocols import Cluster, ObjectDiff

log = structlog.get_logger("gitopsd.engine")


class AppStatus:
    """What the API and ``gitopsd status`` show about one app (one per app, changed in place)."""

    __slots__ = (
        "cluster", "health", "hold", "hold_message", "hold_revision", "hold_until", "last_counts", "last_duration",
        "last_message", "last_reason", "last_result", "last_sync_time", "name", "namespace", "pinned_revision",
        "reconciles", "revision", "source_revision", "suspended", "sync", "waiting",
    )

    def __init__(self, name: str, cluster: str, namespace: str, *, suspended: bool = False) -> None:
        self.name = name
        self.cluster = cluster
        self.namespace = namespace
        self.revision = ""
        self.sync = SyncStatus.UNKNOWN
        self.health = Health.UNKNOWN
        self.suspended = suspended
        self.pinned_revision = ""
        self.last_sync_time: datetime | None = None
        self.last_result = ""
        self.last_reason = ""
        self.last_message = ""
        self.last_counts: dict[str, int] = {}
        self.reconciles = 0
        self.last_duration = 0.0  # seconds the last sync took
        self.source_revision = ""  # what the source reported at the last poll (dependencies: "current revision")
        self.waiting = ""  # depends_on not ready: "waiting for db (OutOfSync)"; "" otherwise
        # Change control: "" or "awaiting-approval", "rejected", "window-closed" (the new revision waits).
        self.hold = ""
        self.hold_revision = ""
        self.hold_message = ""
        self.hold_until: datetime | None = None  # when the window ends, or the approval request expires


class ReconcileMetrics(Protocol):
    """What a reconcile reports to the metrics (see :class:`gitopsd.server.metrics.Metrics`)."""

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


_DEGRADED = (Health.DEGRADED, Health.MISSING, Health.UNKNOWN)
"""Healths that send ``health-degraded`` (once per transition)."""


def _no_wake(reason: str, force: bool) -> None:
    pass


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, scrubbed of known secrets and shortened."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = REDACTOR.scrub(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Reconciler:
    """Reconciles one app: the whole pipeline, its events, its status and its state records.

    Args:
        app: The app's config.
        workspace: Plugins, caches and single-flight shared by every app of the process.
        store: The state database (sync records, inventory, pins). Needed by
            :meth:`reconcile`; :meth:`render` works without it.
        cluster: The app's cluster. Needed by :meth:`reconcile` and :meth:`diff`.
        emit: Receives every event (the daemon's bus, or a list in tests).
        metrics: Reconcile and fetch counters (the daemon's metrics).
        wake: ``wake(reason, force)`` asks for another reconcile (the daemon's trigger):
            on drift with self-heal, and after resume or rollback.
        windows: The sync windows (and the clock) of the process; none: syncs never wait.
    """

    def __init__(
        self,
        app: AppConfig,
        workspace: Workspace,
        *,
        store: StateStore | None = None,
        cluster: Cluster | None = None,
        emit: Callable[[Event], None] | None = None,
        metrics: ReconcileMetrics | None = None,
        wake: Callable[[str, bool], None] | None = None,
        windows: SyncWindows | None = None,
    ):
        self.app = app
        self.workspace = workspace
        self.store = store
        self.cluster = cluster
        self.emit = emit or (lambda event: None)
        self.metrics: ReconcileMetrics = metrics or _NoMetrics()
        self.wake = wake or _no_wake
        self.source: Source = workspace.source_for(app)
        self.status = AppStatus(app.name, app.cluster, app.namespace, suspended=app.suspended)
        self._applied: Rendered | None = None  # what was last applied (or found in sync)
        self._drifted: list[ObjectRef] = []
        self._drift_reported = False
        self._health_degraded = False  # a health-degraded event was sent and not yet recovered
        self._last_seen_revision = ""
        self.gate: DependencyGate | None = None  # depends_on: the daemon's gate; None in one-shot runs
        self.windows = windows or SyncWindows()
        self.approvals: ApprovalGate | None = None  # set for apps with `approval`
        if app.approval is not None and store is not None:
            from gitopsd.engine.approvals import ApprovalGate  # only apps with `approval` need it

            self.approvals = ApprovalGate(app, store, self._event, self.windows.now, lambda: self.wake("approved", False))
        self._window_reported: tuple[str, str] = ("", "")
        self._started = False  # Cluster.started was called
        self.fence: Callable[[], bool] | None = None
        """Coordination (several members): True while this member holds the app's lock. The daemon
        sets it; the cluster checks it before each write phase (see ``Cluster.sync``)."""

    def _event(self, cls: type[Event], *, data: dict[str, Any] | None = None, **fields: Any) -> None:
        """Emit ``cls`` for this app, with the context every notifier wants in ``data``."""
        fields.setdefault("revision", self.status.revision)
        context = {"namespace": self.app.namespace, "source_url": self.source.url, **(data or {})}
        self.emit(cls.make(app=self.app.name, cluster=self.app.cluster, data=context, **fields))

    def _need_store(self) -> StateStore:
        assert self.store is not None, "this Reconciler was made without a state store"
        return self.store

    def _need_cluster(self) -> Cluster:
        assert self.cluster is not None, "this Reconciler was made without a cluster"
        return self.cluster

    async def load(self) -> None:
        """Read the persisted pin and last sync record into the status (once, before reconciling)."""
        start = await self._need_store().app_start(self.app.name)
        self.status.suspended = start.pin.suspended or self.app.suspended
        self.status.pinned_revision = start.pin.revision
        if start.record is not None:
            self.status.revision = start.record.revision
            self._last_seen_revision = start.record.revision
        if start.last_health is not None:
            self._health_degraded = start.last_health in _DEGRADED
        if self.approvals is not None:
            await self.approvals.load()

    async def aclose(self) -> None:
        """Stop tracking drift and close the source."""
        if self.cluster is not None:
            self.cluster.untrack(self.app.name)
        await self.source.aclose()

    @property
    def applied(self) -> Rendered | None:
        """The render last applied (or found in sync); None before the first one."""
        return self._applied

    # -- stages ----------------------------------------------------------------------------

    async def poll(self) -> str:
        """The revision to apply: the pinned one, or the source's latest (a cheap poll)."""
        if self.status.pinned_revision:
            return self.status.pinned_revision
        try:
            return await self.source.latest_revision()
        except SourceError as exc:
            self._event(ev.FetchFailed, reason=exc.reason, message=f"{self.app.name}: {exc}")
            raise

    async def fetch(self, revision: str) -> Artifact:
        """Fetch ``revision`` (shared with every app of the same source)."""
        try:
            artifact = await stages.fetch(self.workspace, self.source, revision)
        except SourceError as exc:
            self.metrics.source_fetch(self.app.source.type, "failed")
            self._event(ev.FetchFailed, revision=revision, reason=exc.reason, message=f"{self.app.name}: {exc}")
            raise
        self.metrics.source_fetch(self.app.source.type, "ok")
        return artifact

    async def render(self, revision: str | None = None) -> Rendered:
        """Poll (unless ``revision`` is given), fetch and render: what ``gitopsd render`` prints."""
        return await self._render(await self.fetch(revision or await self.poll()))

    async def _render(self, artifact: Artifact) -> Rendered:
        try:
            return await stages.render(self.workspace, self.app, artifact)
        except RenderError as exc:
            self._event(ev.RenderFailed, revision=artifact.revision, reason=exc.reason, message=str(exc))
            raise

    async def diff(self) -> list[ObjectDiff]:
        """Desired vs live for the latest revision (objects that differ or are missing)."""
        return await self._need_cluster().diff(self.app, await self.render())

    # -- one reconcile -----------------------------------------------------------------------

    async def reconcile(self, reasons: Iterable[str] = ("manual",), *, force: bool = False, dry_run: bool = False) -> SyncResult | None:
        """One pass of the pipeline; None when nothing had to be sent.

        Failures are reported (events, status, state) and then raised as
        :class:`~gitopsd.core.errors.GitopsdError`; an unexpected exception becomes an
        :class:`InternalError` with a ``sync-failed`` event (the traceback goes to the log).
        A dry run asks the API server to validate the apply and records nothing.
        """
        reasons = list(reasons)
        if self.status.suspended and not dry_run:
            self.metrics.reconcile(self.app.name, "skipped", 0.0)
            return None
        if not self._started and self.cluster is not None:  # the first reconcile here (see Cluster.started)
            self._started = True
            self.cluster.started(self.app.name)
        started = time.monotonic()
        self.status.reconciles += 1
        try:
            result = await self._reconcile(reasons, force, dry_run)
        except GitopsdError as exc:
            self._record_failure(exc)
            self.metrics.reconcile(self.app.name, "failed", time.monotonic() - started)
            raise
        except Exception as exc:
            log.exception("reconcile failed with an unexpected error", app=self.app.name)
            error = InternalError(f"{self.app.name}: internal error: {_one_line(exc)} (the traceback is in the log)")
            self._event(ev.SyncFailed, reason=error.reason, message=str(error))
            self._record_failure(error)
            self.metrics.reconcile(self.app.name, "failed", time.monotonic() - started)
            raise error from exc
        outcome = "unchanged" if result is None else ("succeeded" if result.ok else "failed")
        self.metrics.reconcile(self.app.name, outcome, time.monotonic() - started)
        return result

    async def _reconcile(self, reasons: list[str], force: bool, dry_run: bool) -> SyncResult | None:
        cluster = self._need_cluster()
        revision = await self.poll()
        structlog.contextvars.bind_contextvars(revision=revision)
        self.status.source_revision = revision
        self.status.waiting = ""
        if revision != self._last_seen_revision:
            self._last_seen_revision = revision
            self._event(ev.RevisionDetected, revision=revision, message=f"new revision {revision}")
        # Approval gate (engine/approvals.py): a new revision waits for a person's yes; until
        # then the applied revision stays the desired one, so self-heal keeps working.
        if self.status.hold == "window-closed":
            self._set_hold("")  # set again below if a window still holds this sync
        held = False if dry_run else await self._held(revision)
        if held:
            if not self.status.revision:
                return None  # nothing approved was ever applied: nothing to reconcile
            revision = self.status.revision
        drifted = "drift" in reasons and bool(self._drifted)
        quick = not force and not drifted and not dry_run
        applied = self._applied
        if quick and applied is not None and revision == applied.revision:
            # Nothing new from the source: ask the live cache, which costs no API request.
            if cluster.in_sync(self.app, applied) is not False:
                self.status.sync = SyncStatus.SYNCED
                return None
        artifact = await self.fetch(revision)
        rendered: Rendered | None = None
        if quick and applied is not None and applied.revision == self.status.revision:
            # A new revision that changes none of the app's inputs: keep the manifests.
            rendered = await stages.carry_over(self.workspace, self.app, self.source, applied, artifact)
            if rendered is not None and cluster.in_sync(self.app, rendered) is not False:
                await self._need_store().move_revision(self.app.name, revision, rendered.digest)
                self.status.revision = revision
                self._remember(rendered)
                self.status.sync = SyncStatus.SYNCED
                log.debug("new revision changes none of the app's inputs: not rendered again")
                return None
        if rendered is None:
            rendered = await self._render(artifact)
        if self.approvals is not None and rendered.revision != revision:
            # The source gave other content than the revision approved (a local directory
            # changed meanwhile): never apply it; the next poll asks for approval of it.
            self.wake("source-changed", False)
            return None
        if quick and revision == self.status.revision and cluster.in_sync(self.app, rendered):
            # A restart, or a re-render of what is applied: nothing to send.
            self._remember(rendered)
            self.status.sync = SyncStatus.SYNCED
            self.status.health = cluster.health(self.app, rendered)
            return None
        # Sync windows (engine/windows.py): automatic syncs wait while a window blocks them.
        if not dry_run and self._window_blocks(reasons, self_heal=revision == self.status.revision):
            return None
        # depends_on (gitopsd.engine.dependencies): hold the sync until every dependency is ready.
        self.status.waiting = self.gate.waiting_for(self.app) if self.gate is not None and not dry_run else ""
        if self.status.waiting:
            log.info("sync held by dependencies", detail=self.status.waiting)
            return None
        if self.fence is not None and not dry_run and not self.fence():
            log.warning("not syncing: this member does not hold the app's coordination lock")
            return None
        return await self._sync(cluster, rendered, reasons, dry_run)

    # -- the interval check of an idle app (gitopsd.engine.idle) -----------------------------

    def idle(self) -> bool:
        """Whether an interval reconcile now could only find nothing to do: the app reconciled
        here, its applied revision is the one last polled, it is synced, and nothing is held,
        waiting or suspended. Only then may :meth:`interval_poll` and :meth:`unchanged` stand
        in for :meth:`reconcile`."""
        s = self.status
        applied = self._applied
        return (
            self._started
            and applied is not None
            and applied.revision == s.revision == s.source_revision == self._last_seen_revision
            and s.sync == SyncStatus.SYNCED
            and not (s.suspended or s.hold or s.waiting)
        )

    async def interval_poll(self) -> str | None:
        """The revision an interval reconcile would poll, or None when it must run to tell
        (the app is not :meth:`idle`, or the poll failed: its reconcile reports the failure)."""
        if not self.idle():
            return None
        if self.status.pinned_revision:
            return self.status.pinned_revision
        try:
            return await self.source.latest_revision()
        except Exception:
            return None

    def unchanged(self, revision: str) -> bool:
        """An interval reconcile that polled ``revision`` without running it: True, counted as
        an ``unchanged`` reconcile, when the app is :meth:`idle` at ``revision`` and the live
        cache finds its objects in sync (what :meth:`reconcile` then does: no event, no
        write); False, recording nothing, when :meth:`reconcile` must run."""
        applied = self._applied
        if not self.idle() or applied is None or revision != applied.revision:
            return False
        started = time.monotonic()
        if self._need_cluster().in_sync(self.app, applied) is False:
            return False
        self.status.reconciles += 1
        self.metrics.reconcile(self.app.name, "unchanged", time.monotonic() - started)
        return True

    # -- change control (approvals, sync windows) --------------------------------------------

    async def _held(self, revision: str) -> bool:
        """True while ``revision`` (new) waits for approval; keeps the status's hold fields."""
        if self.approvals is None or self.status.pinned_revision or revision == self.status.revision:
            if self.status.hold in ("awaiting-approval", "rejected"):
                self._set_hold("")
            return False
        admitted = await self.approvals.admit(revision, self.status.revision, lambda: self._approval_details(revision))
        record = self.approvals.record
        if admitted or record is None:
            if self.status.hold in ("awaiting-approval", "rejected"):
                self._set_hold("")
            return False
        if record.status == "rejected":
            why = "no decision in time" if record.reason == "Timeout" else f"rejected by {record.decided_by}"
            self._set_hold("rejected", revision, f"{revision} was not approved ({why})")
        else:
            self._set_hold("awaiting-approval", revision, f"{revision} waits for approval", self.approvals.expires_at())
        self.status.sync = SyncStatus.OUT_OF_SYNC
        return True

    async def _approval_details(self, revision: str) -> dict[str, Any]:
        """The commit and diff summary an approval request shows."""
        from gitopsd.engine.approvals import summarize

        rendered = await self.render(revision)  # first: the source then has the revision to describe
        try:
            commit = await self.source.describe(revision)
        except Exception as exc:  # a describe failure must not block the request
            log.warning("source could not describe the revision", error=_one_line(exc))
            commit = {}
        try:
            diffs = await self._need_cluster().diff(self.app, rendered)
            inventory = await self._need_store().inventory(self.app.name)
            diff = summarize(diffs, rendered.manifests, inventory, self.app.namespace, self.app.prune)
        except GitopsdError as exc:
            diff = {"error": _one_line(exc)}
        return {"commit": dict(commit), "diff": diff}

    def _window_blocks(self, reasons: list[str], *, self_heal: bool) -> bool:
        block = self.windows.block(self.app.name, reasons, self_heal=self_heal and "drift" in reasons)
        if block is None:
            if self.status.hold == "window-closed":
                self._set_hold("")
            return False
        revision = self._last_seen_revision
        self._set_hold("window-closed", revision, block.describe(), block.until)
        self.status.sync = SyncStatus.OUT_OF_SYNC
        if self._window_reported != (block.window, revision):
            self._window_reported = (block.window, revision)
            self._event(
                ev.SyncWindowClosed,
                revision=revision,
                reason="SyncWindow",
                message=f"{self.app.name}: {block.describe()}",
                data={"window": block.window, "until": block.until.isoformat()},
            )
        return True

    def _set_hold(self, hold: str, revision: str = "", message: str = "", until: datetime | None = None) -> None:
        self.status.hold, self.status.hold_revision, self.status.hold_message, self.status.hold_until = hold, revision, message, until

    def next_wake(self) -> float | None:
        """Seconds until a hold may end by itself (a window ends, a request expires), or None."""
        if self.status.hold_until is None or self.status.hold not in ("window-closed", "awaiting-approval"):
            return None
        return max(1.0, (self.status.hold_until - self.windows.now()).total_seconds())

    async def decide(self, revision: str, *, approve: bool, by: str) -> str:
        """Approve or reject the pending revision (see :meth:`ApprovalGate.decide`)."""
        if self.approvals is None:
            from gitopsd.engine.approvals import ApprovalError

            raise ApprovalError(f"{self.app.name} has no approval gate (set approval = {{ notifier = ... }})")
        return await self.approvals.decide(revision, approve=approve, by=by)

    async def _sync(self, cluster: Cluster, rendered: Rendered, reasons: list[str], dry_run: bool) -> SyncResult:
        store = self._need_store()
        revision = rendered.revision
        drift_fix = "drift" in reasons and revision == self.status.revision
        if not drift_fix and not dry_run:
            self._event(ev.SyncStarted, revision=revision, message=f"syncing {revision} ({', '.join(reasons)})")
        fencing = {"fence": self.fence} if self.fence is not None and not dry_run else {}
        try:
            result = await cluster.sync(
                self.app, rendered, StateInventory(store, self.app.name), dry_run=dry_run, run_hooks=not drift_fix, **fencing
            )
        except ApplyError as exc:
            if not dry_run:
                self.status.sync = SyncStatus.UNKNOWN
                self.status.health = Health.UNKNOWN
                self._event(ev.SyncFailed, revision=revision, reason=exc.reason, message=str(exc), data={"objects": exc.objects})
            raise
        if dry_run:
            return result
        await store.record_sync(
            self.app.name,
            revision=revision,
            result="succeeded" if result.ok else "failed",
            message=result.message,
            counts=result.counts,
            applied_digest=rendered.digest if result.ok else None,
            health=str(result.health),
            trigger=",".join(reasons),
        )
        self._report(result, revision, drift_fix)
        if result.ok:
            self.status.revision = revision
            self._remember(rendered)
        return result

    def _remember(self, rendered: Rendered) -> None:
        self._applied = rendered
        self._drifted = []
        self._drift_reported = False
        self._need_cluster().track(self.app, rendered, self.on_drift)

    def _report(self, result: SyncResult, revision: str, drift_fix: bool) -> None:
        self.status.health = result.health
        self.status.sync = SyncStatus.SYNCED if result.ok else SyncStatus.OUT_OF_SYNC
        self.status.last_sync_time = datetime.now(UTC)
        self.status.last_duration = result.duration
        self.status.last_result = "succeeded" if result.ok else "failed"
        self.status.last_reason = "" if result.ok else "SyncFailed"
        self.status.last_message = result.message
        self.status.last_counts = result.counts
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
        if result.health in _DEGRADED and not self._health_degraded:
            self._health_degraded = True
            self._event(ev.HealthDegraded, revision=revision, reason=str(result.health), message=result.message, data=data)
        elif result.health == Health.HEALTHY and self._health_degraded:
            self._health_degraded = False
            self._event(ev.HealthRecovered, revision=revision, message=f"{self.app.name} is healthy again")

    def _record_failure(self, exc: GitopsdError) -> None:
        self.status.last_sync_time = datetime.now(UTC)
        self.status.last_result = "failed"
        self.status.last_reason = exc.reason
        self.status.last_message = str(exc)
        log.warning("reconcile failed", reason=exc.reason, error=str(exc))

    # -- live state and operator actions -----------------------------------------------------

    def on_drift(self, refs: list[ObjectRef]) -> None:
        """Called by the cluster's live cache when tracked objects stop matching."""
        self._drifted = refs
        self.status.sync = SyncStatus.OUT_OF_SYNC
        if self.app.self_heal and not self.status.suspended:
            self.wake("drift", False)
        elif not self._drift_reported:
            self._drift_reported = True
            self._event(
                ev.DriftDetected,
                reason="LiveStateChanged",
                message=f"{len(refs)} object(s) differ from {self.status.revision}: " + ", ".join(map(str, refs[:10])),
                data={"objects": [str(r) for r in refs]},
            )

    async def set_pin(self, pin: Pin) -> None:
        """Suspend/resume or pin to a revision; persisted so it survives restarts."""
        was_suspended = self.status.suspended
        await self._need_store().set_pin(self.app.name, pin)
        self.status.suspended = pin.suspended
        self.status.pinned_revision = pin.revision
        if pin.suspended and not was_suspended:
            self._event(ev.AppSuspended, message=f"{self.app.name} suspended")
        elif was_suspended and not pin.suspended:
            self._event(ev.AppResumed, message=f"{self.app.name} resumed")
            self.wake("resume", True)
        elif pin.revision:
            self.wake("rollback", True)
