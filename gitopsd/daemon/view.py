"""The daemon seen through :class:`gitopsd.server.view.AppsView`: what the API and web page read and trigger.

A thin adapter: it reads the runners' status, the state store and the clusters' live
caches, keeps a bounded ring of recent events per app (fed by the event bus), and turns
operator actions into pins and triggers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import structlog

from gitopsd.core.errors import GitopsdError
from gitopsd.core.events import Event
from gitopsd.core.models import HistoryEntry, ObjectRef, SyncStatus
from gitopsd.core.state import HISTORY_KEPT, Pin, StateStore
from gitopsd.daemon.appsets import AppSetController
from gitopsd.engine.runner import AppRunner
from gitopsd.engine.windows import SyncWindows
from gitopsd.plugin.config import Config
from gitopsd.server.view import ACTIONS, ActionRefused, AppNotFound

if TYPE_CHECKING:
    # Annotations only: engine.protocols (two frozen dataclasses) comes with the Kubernetes layer, after ready.
    from gitopsd.engine.protocols import ClusterPool
    from gitopsd.server.viewdata import AppSummary, DiffView, ObjectView, PushTarget


class _HasRunner(Protocol):
    @property
    def runner(self) -> AppRunner: ...


class ViewedDaemon(Protocol):
    """What the view reads of the daemon (:class:`gitopsd.daemon.supervisor.Daemon`)."""

    @property
    def apps(self) -> Mapping[str, _HasRunner]: ...

    @property
    def appsets(self) -> AppSetController: ...

    @property
    def stopping(self) -> anyio.Event: ...

    @property
    def store(self) -> StateStore | None: ...

    @property
    def pool(self) -> ClusterPool | None: ...

    @property
    def config(self) -> Config: ...

    @property
    def accepting(self) -> anyio.Event: ...

    @property
    def windows(self) -> SyncWindows: ...

log = structlog.get_logger("gitopsd.daemon.view")

EVENTS_KEPT = 50
"""Recent events kept in memory per app (and for daemon-wide events)."""


class EventLog:
    """A bounded ring of recent events per app; wakes whoever waits for a change."""

    def __init__(self, size: int = EVENTS_KEPT):
        self._size = size
        # Lists, oldest first: a deque costs a 64-slot block (about 0.6 KiB) per app from its
        # first event on, and an app has a handful of events after its first sync.
        self._rings: dict[str, list[Event]] = {}
        # Made by the first waiter, set and dropped by the next event: no anyio.Event per event
        # while nobody watches (the live web page waits here).
        self._changed: anyio.Event | None = None

    def record(self, event: Event) -> None:
        """Keep ``event`` (the event bus calls this for every event)."""
        ring = self._rings.get(event.app)
        if ring is None:
            ring = self._rings[event.app] = []
        ring.append(event)
        if len(ring) > self._size:
            del ring[0]
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    def recent(self, app: str, limit: int) -> list[Event]:
        """The newest ``limit`` events of ``app`` ("" for daemon-wide ones), newest first."""
        ring = self._rings.get(app)
        return list(reversed(ring))[:limit] if ring else []

    def forget(self, app: str) -> None:
        self._rings.pop(app, None)

    async def wait(self, timeout: float) -> None:
        """Until the next event, or ``timeout`` seconds."""
        changed = self._changed
        if changed is None:
            changed = self._changed = anyio.Event()
        with anyio.move_on_after(timeout):
            await changed.wait()


class DaemonView:
    """:class:`gitopsd.server.view.AppsView` over a running daemon."""

    def __init__(self, daemon: ViewedDaemon, events: EventLog):
        self._daemon = daemon
        self._events = events

    @property
    def stopping(self) -> bool:
        return self._daemon.stopping.is_set()

    def not_ready(self) -> list[str]:
        """Ready: the config loaded, the state read, the API serving, every app's runner made; not stopping.

        Clusters are not part of it: their clients are set up just after (no request is
        needed to start, the runners' tasks wait for it), and an unreachable
        cluster is reported by its apps, ``cluster-unreachable`` events and the metrics
        (docs/operations.md, "Start-up and readiness").
        """
        daemon = self._daemon
        reasons = []
        if daemon.stopping.is_set():
            reasons.append("stopping")
        if not daemon.accepting.is_set():
            reasons.append("starting")
        return reasons

    async def members_report(self) -> dict[str, Any] | None:
        """Coordination (:class:`gitopsd.server.members.MembersView`): the coordinator's report, or None."""
        coordinator = getattr(self._daemon, "coordinator", None)
        return await coordinator.report() if coordinator is not None else None

    def _runner(self, name: str) -> AppRunner:
        running = self._daemon.apps.get(name)
        if running is None:
            raise AppNotFound(f"no app named {name!r}")
        return running.runner

    @staticmethod
    def _summary(runner: AppRunner) -> AppSummary:
        # Here, not at the top: the first request loads the view's data types, not the start.
        from gitopsd.server.viewdata import AppSummary

        s = runner.status
        source = runner.source
        return AppSummary(
            name=s.name,
            cluster=s.cluster,
            namespace=s.namespace,
            source_type=runner.app.source.type,
            source_url=source.url,
            source_ref=source.ref,
            source_path=source.subdir,
            revision=s.revision,
            sync=s.sync,
            health=s.health,
            suspended=s.suspended,
            pinned_revision=s.pinned_revision,
            self_heal=runner.app.self_heal,
            last_sync_time=s.last_sync_time,
            last_duration=s.last_duration,
            last_result=s.last_result,
            last_message=s.last_message,
            last_counts=dict(s.last_counts),
            reconciles=s.reconciles,
            waiting=s.waiting,
            appset=runner.app.appset,
            hold=s.hold,
            hold_revision=s.hold_revision,
            hold_message=s.hold_message,
            hold_until=s.hold_until,
        )

    def apps(self) -> list[AppSummary]:
        apps = self._daemon.apps
        return [self._summary(apps[name].runner) for name in sorted(apps)]

    def app(self, name: str) -> AppSummary:
        return self._summary(self._runner(name))

    async def history(self, name: str, limit: int) -> list[HistoryEntry]:
        self._runner(name)
        assert self._daemon.store is not None
        return await self._daemon.store.history(name, limit)

    def events(self, name: str, limit: int) -> list[Event]:
        return self._events.recent(name, limit)

    async def objects(self, name: str) -> list[ObjectView]:
        # engine.protocols is loaded with the clusters (after ready).
        from gitopsd.engine.protocols import DescribesObjects
        from gitopsd.server.viewdata import ObjectView

        runner = self._runner(name)
        desired = runner.desired
        if desired is None:
            return []
        states = None
        if isinstance(runner.cluster, DescribesObjects):
            states = runner.cluster.object_states(runner.app, desired)
        if states is None:  # the cluster cannot tell yet: the objects, status unknown
            return [ObjectView(ObjectRef.from_manifest(m)) for m in desired]
        return [
            ObjectView(
                ref=s.ref,
                wave=s.wave,
                step=s.step,
                health=s.health.health,
                health_message=s.health.message,
                sync=SyncStatus.UNKNOWN if s.in_sync is None else SyncStatus.SYNCED if s.in_sync else SyncStatus.OUT_OF_SYNC,
                live_exists=s.live_exists,
            )
            for s in states
        ]

    async def inventory(self, name: str) -> list[ObjectRef]:
        self._runner(name)
        assert self._daemon.store is not None
        return sorted(await self._daemon.store.inventory(name))

    async def diff(self, name: str) -> list[DiffView]:
        from gitopsd.server.viewdata import DiffView

        runner = self._runner(name)
        applied = runner.reconciler.applied
        if applied is None:
            return []
        return [DiffView(d.ref, d.diff, d.live_exists) for d in await runner.cluster.diff(runner.app, applied)]

    async def act(self, name: str, action: str, revision: str = "") -> str:
        runner = self._runner(name)
        if action not in ACTIONS:
            raise ActionRefused(f"no such action: {action}", status=404)
        if action in ("refresh", "sync"):
            runner.trigger.fire(action, force=True)
        elif action == "suspend":
            await runner.set_pin(Pin(suspended=True, revision=runner.status.pinned_revision))
        elif action == "resume":
            await runner.set_pin(Pin())
            runner.trigger.fire("resume", force=True)  # also after a rollback pin without suspension
        elif action in ("approve", "reject"):
            # The change-control gate (engine/approvals.py), as from Slack or `gitopsd approve`.
            await self.decide(name, revision or runner.status.hold_revision, approve=action == "approve", by="web")
        else:
            assert self._daemon.store is not None
            history = await self._daemon.store.history(name, HISTORY_KEPT)
            resolved = resolve_revision(revision, history) if revision else None
            if resolved is None:
                raise ActionRefused(
                    f"revision {revision!r} is not a unique, successfully applied revision in {name}'s history"
                )
            await runner.set_pin(Pin(suspended=False, revision=resolved))
            return resolved
        return ""

    async def wait_changed(self, timeout: float) -> None:
        await self._events.wait(timeout)

    def push_targets(self) -> Sequence[PushTarget]:
        from gitopsd.server.viewdata import PushTarget

        return [
            PushTarget(name, r.runner.source.url, r.runner.source.ref, r.runner.source.version_range, r.runner.source.subdir)
            for name, r in self._daemon.apps.items()
        ]

    def fire(self, names: Sequence[str], reason: str) -> None:
        if self._daemon.stopping.is_set():
            return
        for name in names:
            running = self._daemon.apps.get(name)
            if running is not None:
                running.runner.trigger.fire(reason)

    def appset_push_targets(self) -> Sequence[tuple[str, str, str]]:
        return self._daemon.appsets.push_targets()

    def refresh_appsets(self, names: Sequence[str]) -> None:
        self._daemon.appsets.poke(list(names))

    def open_windows(self) -> list[dict[str, Any]]:
        return [
            {"name": w.name, "kind": w.kind, "start": w.start.isoformat(), "end": w.end.isoformat()}
            for w in self._daemon.windows.open_windows()
        ]

    async def decide(self, name: str, revision: str, *, approve: bool, by: str) -> str:
        runner = self._runner(name)
        try:
            return await runner.decide(revision, approve=approve, by=by)
        except GitopsdError as exc:
            raise ActionRefused(str(exc), status=409) from None


def resolve_revision(wanted: str, history: list[HistoryEntry]) -> str | None:
    """The successfully applied revision in ``history`` that ``wanted`` names.

    Exact match first; else a unique prefix of the whole revision or of its hash part
    (``main@sha1:<hex>``: a prefix of ``<hex>``, at least 7 characters).
    """
    applied = list(dict.fromkeys(h.revision for h in history if h.result == "succeeded"))
    if wanted in applied:
        return wanted
    candidates = []
    for revision in applied:
        digest = revision.rpartition(":")[2]
        if revision.startswith(wanted) or (len(wanted) >= 7 and digest.startswith(wanted)):
            candidates.append(revision)
    return candidates[0] if len(candidates) == 1 else None

