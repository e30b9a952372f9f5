"""One cluster: client (through a tunnel if configured), discovery, live cache, and what its apps ask.

:class:`KubeCluster` implements :class:`gitopsd.engine.protocols.Cluster`: its lifecycle and
reachability live here, a sync in :mod:`gitopsd.kube.pipeline`, resolving and preparing
renders in :mod:`gitopsd.kube.desired`; ``in_sync``, ``health``, ``diff`` and drift tracking
read the watch-fed live cache (:mod:`gitopsd.kube.cache`) without a request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import structlog

from gitopsd.core.errors import ApplyError
from gitopsd.core.events import ClusterReachable, ClusterUnreachable, Event
from gitopsd.core.models import (
    Health,
    HealthStatus,
    Manifest,
    SyncResult,
)
from gitopsd.engine.protocols import DriftCallback, Inventory, ObjectDiff, ObjectState
from gitopsd.kube.admission import Admission
from gitopsd.kube.apply import Applier
from gitopsd.kube.background import Background
from gitopsd.kube.cache import LiveCache
from gitopsd.kube.client import KubeClient, Unreachable, unreachable_error
from gitopsd.kube.desired import DesiredObjects, Desires, as_rendered
from gitopsd.kube.diff import object_diff
from gitopsd.kube.discovery import Discovery
from gitopsd.kube.drift import DriftTracker
from gitopsd.kube.health import HealthHook, object_health
from gitopsd.kube.hooks import (
    HookRunner,
)
from gitopsd.kube.inventory import InventoryRecords
from gitopsd.kube.objects import object_states
from gitopsd.kube.ownership import DEFAULT_INSTANCE
from gitopsd.kube.pipeline import SyncPipeline
from gitopsd.kube.prune import Pruner
from gitopsd.kube.tenancy import OwnershipGate
from gitopsd.plugin.config import AppConfig, ClusterConfig

if TYPE_CHECKING:
    from gitopsd.kube.tunnel import Tunnel

log = structlog.get_logger("gitopsd.kube")

class KubeCluster(SyncPipeline):
    """A :class:`gitopsd.engine.protocols.Cluster` on kubernetes-asyncio.

    Args:
        name: The cluster's name in the config.
        config: Its ``[clusters.NAME]`` table.
        health_hook: The ``gitopsd_health`` hook (kinds without built-in rules).
        emit: Receives ClusterUnreachable / ClusterReachable events.
        on_request: Called with (cluster, verb, code or "error") per API request (metrics).
        background: Where its long-lived tasks run (the pool's); by default its own.
        instance: ``[daemon] instance``: the owner annotation is ``<instance>/<app>``.
        inventory_namespace: ``[daemon] inventory_namespace``: where inventory records live.
    """

    def __init__(
        self,
        name: str,
        config: ClusterConfig,
        *,
        health_hook: HealthHook | None = None,
        emit: Callable[[Event], None] | None = None,
        on_request: Callable[[str, str, int | str], None] | None = None,
        background: Background | None = None,
        instance: str = DEFAULT_INSTANCE,
        inventory_namespace: str = "gitopsd-system",
    ):
        self.name = name
        self.config = config
        self._emit = emit or (lambda event: None)
        self._health_hook = health_hook
        self.client = KubeClient(name, config, self._on_reachable, on_request)
        self.discovery = Discovery(self.client)
        self.drift = DriftTracker()
        self._owns_background = background is None
        self.background = background or Background(f"cluster {name}")
        self.cache = LiveCache(self.client, self.drift.on_change, self.background)
        self.applier = Applier(self.client, self.cache)
        self.instance = instance
        self.pruner = Pruner(self.client, self.cache, self.discovery, instance)
        self.ownership = OwnershipGate(self.client, self.cache, instance, name, self._emit)
        self.records = InventoryRecords(self.client, inventory_namespace, instance)
        self.hooks = HookRunner(self.client, self.discovery, self.cache, lambda: self._health_hook, instance)
        self.tunnel: Tunnel | None = None
        self._sync_locks: dict[str, asyncio.Lock] = {}  # asyncio's: no waiter queue until one waits
        self.desired = DesiredObjects(self.discovery, instance)
        self.drift.matcher = self.desired.judge  # one comparison per live version, for drift and in_sync
        self.admission = Admission(config.max_concurrent_syncs or 2 * config.max_concurrent_requests)

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Load the kubeconfig and start the tunnel (connecting in the background); no API request.

        Without a shared ``background`` (the pool's), the cluster's background tasks run in
        a task group entered here and left by :meth:`close`, from the same task.
        """
        if self._owns_background:
            await self.background.open()
        if self.config.ssh is None:
            await self.client.open()
            return
        await self.client.open()  # to learn the server address
        await self.client.close()
        parts = urlsplit(self.client.server)
        if not parts.hostname:
            raise ApplyError(
                f"cluster {self.name}: kubeconfig server {self.client.server!r} has no host"
            )
        from gitopsd.kube.tunnel import Tunnel  # asyncssh (~14 MiB) only for clusters behind SSH

        self.tunnel = Tunnel(
            self.name,
            self.config.ssh,
            parts.hostname,
            parts.port or 443,
            on_state=self._on_tunnel,
            background=self.background,
        )
        socket_path = await self.tunnel.start()
        await self.client.open(host_override=f"https://127.0.0.1:{parts.port or 443}", unix_socket=socket_path)

    async def close(self) -> None:
        self.cache.close()
        await self.client.close()
        if self.tunnel is not None:
            await self.tunnel.close()
        if self._owns_background:
            await self.background.aclose()

    @property
    def reachable(self) -> bool:
        return self.client.reachable

    def _on_reachable(self, reachable: bool, why: str) -> None:
        if reachable:
            self._emit(
                ClusterReachable.make(
                    cluster=self.name,
                    reason="ClusterReachable",
                    message=f"cluster {self.name} answers again",
                )
            )
        else:
            self._emit(
                ClusterUnreachable.make(
                    cluster=self.name,
                    reason="ClusterUnreachable",
                    message=f"cluster {self.name} is unreachable ({why}); its apps are Unknown until it is back",
                )
            )

    def _on_tunnel(self, up: bool, why: str) -> None:
        log.info("ssh tunnel up" if up else "ssh tunnel down", cluster=self.name, detail=why)
        if not up:  # cluster-unreachable with the tunnel's reason; the next answer marks it reachable
            self.client.mark_unreachable(f"ssh tunnel down: {why}")



    # -- the Cluster protocol ---------------------------------------------------------------

    async def sync(
        self,
        app: AppConfig,
        rendered: Desires,
        inventory: Inventory,
        *,
        dry_run: bool = False,
        run_hooks: bool = True,
        fence: Callable[[], bool] | None = None,
    ) -> SyncResult:
        """See :meth:`gitopsd.engine.protocols.Cluster.sync`."""
        rendered = as_rendered(rendered)
        lock = self._sync_locks.get(app.name) or self._sync_locks.setdefault(app.name, asyncio.Lock())
        inventory = self.records.wrap(app.name, inventory, dry_run=dry_run)
        async with lock, self.admission.admit():  # gitopsd.kube.admission: a bounded, fair apply path
            self.drift.pause(app.name)
            try:
                return await self._sync(app, rendered, inventory, dry_run=dry_run, run_hooks=run_hooks, fence=fence)
            except Unreachable as exc:
                raise unreachable_error(self.name, str(exc).split(": ", 1)[-1]) from None
            finally:
                self.drift.resume(app.name, self.cache.get)


    def _object_health(self, live: Manifest | None) -> HealthStatus:
        hook = self._health_hook
        return object_health(live, hook)


    async def diff(self, app: AppConfig, rendered: Desires) -> list[ObjectDiff]:
        """See :meth:`gitopsd.engine.protocols.Cluster.diff`."""
        self._check_reachable()
        try:
            desired, bad = await self.desired.resolve(app, as_rendered(rendered).manifests)
            if bad:
                raise ApplyError(
                    "; ".join(f"{o.ref}: {o.message}" for o in bad), reason="InvalidManifest"
                )
            await self._watch_kinds(d.resource for d in desired)
        except Unreachable as exc:
            raise unreachable_error(self.name, str(exc)) from None
        out = []
        for d in desired:
            live = self.cache.get(d.key)
            text = object_diff(d.obj, live)
            if text:
                out.append(ObjectDiff(d.ref, text, live is not None))
        return out

    def in_sync(self, app: AppConfig, rendered: Desires) -> bool | None:
        """See :meth:`gitopsd.engine.protocols.Cluster.in_sync` (no request)."""
        if not self.client.reachable:
            return None
        prepared = self.desired.prepare_cached(app, as_rendered(rendered))
        if prepared is None:
            return None
        for d in prepared.values():
            if not self.cache.synced(d.resource.group, d.resource.kind):
                return None
            if not self.desired.matches(d, self.cache):
                return False
        return True

    def health(self, app: AppConfig, rendered: Desires) -> Health:
        """See :meth:`gitopsd.engine.protocols.Cluster.health` (no request)."""
        if not self.client.reachable:
            return Health.UNKNOWN
        prepared = self.desired.prepare_cached(app, as_rendered(rendered))
        if prepared is None:
            return Health.UNKNOWN
        healths = []
        for d in prepared.values():
            if not self.cache.synced(d.resource.group, d.resource.kind):
                return Health.UNKNOWN
            healths.append(self._object_health(self.cache.get(d.key)).health)
        return Health.worst(healths)

    def object_states(self, app: AppConfig, rendered: Desires) -> list[ObjectState] | None:
        """See :class:`gitopsd.engine.protocols.DescribesObjects` (no request)."""
        prepared = self.desired.prepare_cached(app, as_rendered(rendered))
        if prepared is None:
            return None
        reachable = self.client.reachable
        return object_states(
            prepared, self.cache.get, lambda g, k: reachable and self.cache.synced(g, k), self._object_health
        )

    def track(self, app: AppConfig, rendered: Desires, on_drift: DriftCallback) -> None:
        """See :meth:`gitopsd.engine.protocols.Cluster.track`."""
        rendered = as_rendered(rendered)
        prepared = self.desired.prepare_cached(app, rendered)
        if prepared is None:
            self.background.start(self._track_later, app, rendered.manifests, on_drift, name=f"track {app.name}")
            return
        self.drift.track(app.name, {k: d.obj for k, d in prepared.items()}, on_drift)
        for d in prepared.values():
            if self.discovery.cached(d.resource.api_version, d.resource.kind) is not None:
                self.cache.ensure(d.resource)

    async def _track_later(
        self, app: AppConfig, manifests: Sequence[Manifest], on_drift: DriftCallback
    ) -> None:
        try:
            desired, _ = await self.desired.resolve(app, manifests)
        except (Unreachable, ApplyError) as exc:
            log.warning("cannot track app yet", app=app.name, cluster=self.name, error=str(exc))
            return
        self.drift.track(app.name, {d.key: d.obj for d in desired}, on_drift)
        for d in desired:
            if self.discovery.cached(d.resource.api_version, d.resource.kind) is not None:
                self.cache.ensure(d.resource)

    async def prune_all(self, app: AppConfig, inventory: Inventory) -> SyncResult:
        """Delete every object the removed app owned (see ``PrunesRemovedApps``), same rules as prune."""
        started = time.monotonic()
        self._check_reachable()
        lock = self._sync_locks.get(app.name) or self._sync_locks.setdefault(app.name, asyncio.Lock())
        inventory = self.records.wrap(app.name, inventory)
        async with lock:
            self.drift.untrack(app.name)
            try:
                objects = await self.pruner.prune(
                    app, await inventory.current(), inventory, dry_run=False
                )
            except Unreachable as exc:
                raise unreachable_error(self.name, str(exc).split(": ", 1)[-1]) from None
        failed = [o for o in objects if o.action == "failed"]
        pruned = sum(1 for o in objects if o.action == "pruned")
        message = (
            "prune failed: " + "; ".join(f"{o.ref}: {o.message}" for o in failed)
            if failed
            else f"{pruned} pruned"
        )
        return SyncResult(
            app=app.name,
            revision="",
            ok=not failed,
            message=message,
            objects=tuple(objects),
            health=Health.MISSING if not failed else Health.UNKNOWN,
            duration=time.monotonic() - started,
        )

    def started(self, app_name: str) -> None:
        """See :meth:`gitopsd.engine.protocols.Cluster.started`."""
        self.records.expect(app_name)

    def untrack(self, app_name: str) -> None:
        """See :meth:`gitopsd.engine.protocols.Cluster.untrack`."""
        self.drift.untrack(app_name)
        self.desired.forget(app_name)
        self.records.forget(app_name)


