"""One cluster: client (through a tunnel if configured), discovery, live cache, sync pipeline.

Implements :class:`gitopsd.engine.protocols.Cluster`. A sync:

1. resolves every manifest's resource (discovery, or a CRD in the same render) and prepares
   it (namespace, labels); an unknown kind or a duplicate fails the sync before any request
   that changes something;
2. waits for the live cache of every kind in use (its first LIST; later syncs send nothing);
3. walks the ordered steps (:mod:`gitopsd.kube.order`): objects that already match the cache
   are ``unchanged`` and cost no request; the others are added to the inventory, then
   applied concurrently; a failed object stops later steps; waited steps must become
   healthy (CRDs Established, Namespaces Active, each wave) before the next;
4. prunes (only after every apply succeeded, :mod:`gitopsd.kube.prune`);
5. waits for the app to be healthy until ``app.timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio
import structlog

from gitopsd.core.errors import ApplyError
from gitopsd.core.events import ClusterReachable, ClusterUnreachable, Event
from gitopsd.core.models import (
    Health,
    HealthStatus,
    Manifest,
    ObjectRef,
    ObjectResult,
    Rendered,
    SyncResult,
)
from gitopsd.engine.protocols import DriftCallback, Inventory, ObjectDiff
from gitopsd.kube.apply import Applier, Desired, is_shared, prepare
from gitopsd.kube.background import Background
from gitopsd.kube.cache import Key, LiveCache, key_of
from gitopsd.kube.client import KubeClient, Unreachable, unreachable_error
from gitopsd.kube.diff import object_diff
from gitopsd.kube.discovery import Discovery, Resource, UnknownKind, is_crd, resources_from_crd
from gitopsd.kube.drift import DriftTracker
from gitopsd.kube.health import HealthHook, object_health
from gitopsd.kube.hooks import (
    POST_SYNC,
    PRE_SYNC,
    SYNC,
    SYNC_FAIL,
    Hook,
    HookRunner,
    regular,
    split,
)
from gitopsd.kube.normalize import matches
from gitopsd.kube.order import Step, plan_steps
from gitopsd.kube.prune import Pruner, ref_key
from gitopsd.plugin.config import AppConfig, ClusterConfig

if TYPE_CHECKING:
    from gitopsd.kube.tunnel import Tunnel

log = structlog.get_logger("gitopsd.kube")

Desires = Rendered | Sequence[Manifest]
"""What the Cluster methods accept: a :class:`Rendered`, or plain manifests (tests, one-off
calls: wrapped in a Rendered with a unique key, so never memoised)."""


def as_rendered(desires: Desires) -> Rendered:
    return desires if isinstance(desires, Rendered) else Rendered.of(desires)


UNREACHABLE_GRACE = 5.0
"""A sync fails at once (ClusterUnreachable) only when the cluster has been unreachable this long."""


class KubeCluster:
    """A :class:`gitopsd.engine.protocols.Cluster` on kubernetes-asyncio.

    Args:
        name: The cluster's name in the config.
        config: Its ``[clusters.NAME]`` table.
        health_hook: The ``gitopsd_health`` hook (kinds without built-in rules).
        emit: Receives ClusterUnreachable / ClusterReachable events.
        on_request: Called with (cluster, verb, code or "error") per API request (metrics).
        background: Where its long-lived tasks run (the pool's); by default its own.
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
        self.pruner = Pruner(self.client, self.cache, self.discovery)
        self.hooks = HookRunner(self.client, self.discovery, self.cache, lambda: self._health_hook)
        self.tunnel: Tunnel | None = None
        self._sync_locks: dict[str, anyio.Lock] = {}
        # app name -> (app config, render key, prepared objects): see _prepare_cached
        self._prepared: dict[str, tuple[AppConfig, str, dict[Key, Desired]]] = {}

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
            self.name, self.config.ssh, parts.hostname, parts.port or 443, on_state=self._on_tunnel
        )
        port = await self.tunnel.start()
        await self.client.open(host_override=f"https://127.0.0.1:{port}")

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

    def _check_reachable(self) -> None:
        if self.client.unreachable_for() > UNREACHABLE_GRACE:
            raise unreachable_error(self.name, "no answer from the API server")

    # -- preparation ----------------------------------------------------------------------

    @staticmethod
    def _hints(manifests: Sequence[Manifest]) -> dict[tuple[str, str], Resource]:
        return {
            (r.api_version, r.kind): r
            for m in manifests
            if is_crd(m)
            for r in resources_from_crd(m)
        }

    async def _resolve(
        self, app: AppConfig, manifests: Sequence[Manifest]
    ) -> tuple[list[Desired], list[ObjectResult]]:
        hints = self._hints(manifests)
        desired: list[Desired] = []
        failed: list[ObjectResult] = []
        seen: set[Key] = set()
        for manifest in regular(manifests):  # hooks are not desired state (gitopsd.kube.hooks)
            ref = ObjectRef.from_manifest(manifest)
            if not ref.version or not ref.kind or not ref.name:
                failed.append(
                    ObjectResult(
                        ref,
                        "failed",
                        Health.UNKNOWN,
                        "manifest needs apiVersion, kind and metadata.name",
                    )
                )
                continue
            try:
                resource = await self.discovery.resolve(ref.api_version, ref.kind, hints=hints)
            except UnknownKind as exc:
                failed.append(ObjectResult(ref, "failed", Health.UNKNOWN, str(exc)))
                continue
            d = Desired(prepare(app, manifest, resource), resource)
            if d.key in seen:
                failed.append(
                    ObjectResult(
                        d.ref, "failed", Health.UNKNOWN, "the render contains this object twice"
                    )
                )
                continue
            seen.add(d.key)
            desired.append(d)
        return desired, failed

    def _prepare_cached(self, app: AppConfig, rendered: Rendered) -> dict[Key, Desired] | None:
        """Prepared objects from what discovery already knows (no request); None if a kind is unknown.

        Memoised per app by the app config's identity and the render's key: the engine
        passes the same render to ``track``, ``in_sync`` and ``health`` until the next one.
        """
        memo = self._prepared.get(app.name)
        if memo is not None and memo[0] is app and memo[1] == rendered.key:
            return memo[2]
        prepared = self._prepare_from_discovery(app, rendered.manifests)
        if prepared is not None:
            self._prepared[app.name] = (app, rendered.key, prepared)
        return prepared

    def _prepare_from_discovery(
        self, app: AppConfig, manifests: Sequence[Manifest]
    ) -> dict[Key, Desired] | None:
        hints = self._hints(manifests)
        out: dict[Key, Desired] = {}
        for manifest in regular(manifests):
            ref = ObjectRef.from_manifest(manifest)
            resource = self.discovery.cached(ref.api_version, ref.kind) or hints.get(
                (ref.api_version, ref.kind)
            )
            if resource is None:
                return None
            d = Desired(prepare(app, manifest, resource), resource)
            out[d.key] = d
        return out

    async def _watch_kinds(self, resources: Iterable[Resource]) -> None:
        served = {
            (r.group, r.kind): r
            for r in resources
            if self.discovery.cached(r.api_version, r.kind) is not None
        }
        if not served:
            return
        ok = await self.cache.wait_synced(list(served.values()), within=self.config.request_timeout)
        if not ok:
            if not self.client.reachable:
                raise unreachable_error(self.name, "listing objects failed")
            raise ApplyError(
                f"cluster {self.name}: listing objects timed out", reason="ClusterUnreachable"
            )

    # -- the Cluster protocol ---------------------------------------------------------------

    async def sync(
        self,
        app: AppConfig,
        rendered: Desires,
        inventory: Inventory,
        *,
        dry_run: bool = False,
        run_hooks: bool = True,
    ) -> SyncResult:
        """See :meth:`gitopsd.engine.protocols.Cluster.sync`."""
        rendered = as_rendered(rendered)
        lock = self._sync_locks.setdefault(app.name, anyio.Lock())
        async with lock:
            self.drift.pause(app.name)
            try:
                return await self._sync(app, rendered, inventory, dry_run=dry_run, run_hooks=run_hooks)
            except Unreachable as exc:
                raise unreachable_error(self.name, str(exc).split(": ", 1)[-1]) from None
            finally:
                self.drift.resume(app.name, self.cache.get)

    async def _sync(
        self, app: AppConfig, rendered: Rendered, inventory: Inventory, *, dry_run: bool, run_hooks: bool
    ) -> SyncResult:
        manifests = rendered.manifests
        started = time.monotonic()
        deadline = started + app.timeout
        self._check_reachable()

        def result(ok: bool, message: str, objects: list[ObjectResult]) -> SyncResult:
            health = Health.worst(
                [o.health for o in objects if o.action not in ("pruned", "skipped")]
            )
            return SyncResult(
                app=app.name,
                revision=rendered.revision,
                ok=ok,
                message=message,
                objects=tuple(objects),
                health=health,
                duration=time.monotonic() - started,
                dry_run=dry_run,
            )

        desired, bad = await self._resolve(app, manifests)
        if bad:
            skipped = [
                ObjectResult(d.ref, "skipped", Health.UNKNOWN, "not applied: the render has errors")
                for d in desired
            ]
            names = "; ".join(f"{o.ref}: {o.message}" for o in bad)
            return result(False, f"render cannot be applied: {names}", bad + skipped)

        if not dry_run and self.drift.tracked(app.name):
            self.drift.track(app.name, {d.key: d.obj for d in desired}, None)
        await self._watch_kinds(d.resource for d in desired)

        previous = await inventory.current()
        owned = {ref_key(r) for r in previous}
        results: dict[Key, ObjectResult] = {}
        failure = ""
        steps = plan_steps([d.obj for d in desired])
        by_key = {d.key: d for d in desired}
        # Hooks (gitopsd.kube.hooks): PreSync after the foundation step (namespaces, CRDs) they
        # may need, Sync after every step, PostSync once healthy, SyncFail when anything failed.
        hook_list = split(manifests) if run_hooks else []
        hook_results: list[ObjectResult] = []
        pre_at = next((i for i, s in enumerate(steps) if s.name != "foundation"), len(steps))
        for index, step in enumerate(steps):
            skip_from = index + 1
            if index == pre_at and hook_list:
                failure = await self._hook_phase(app, hook_list, PRE_SYNC, deadline, hook_results, dry_run)
                skip_from = index if failure else skip_from  # a failed PreSync: nothing more applied
            if not failure:
                step_desired = [by_key[key_of(o)] for o in step.objects]
                step_desired = await self._refresh_hinted(step_desired)
                failure = await self._apply_step(
                    app, step_desired, inventory, owned, results, dry_run=dry_run
                )
            if not failure and step.wait and not dry_run and index < len(steps) - 1:
                failure = await self._wait_healthy(step, step_desired, results, deadline)
            if failure:
                for later in steps[skip_from:]:
                    for obj in later.objects:
                        d = by_key[key_of(obj)]
                        results[d.key] = ObjectResult(
                            d.ref, "skipped", Health.UNKNOWN, f"not applied: {failure}"
                        )
                break
        if hook_list and not failure:
            if pre_at == len(steps):
                failure = await self._hook_phase(app, hook_list, PRE_SYNC, deadline, hook_results, dry_run)
            if not failure:
                failure = await self._hook_phase(app, hook_list, SYNC, deadline, hook_results, dry_run)

        pruned: list[ObjectResult] = []
        desired_keys = set(by_key)
        leftovers = [r for r in previous if ref_key(r) not in desired_keys]
        if not failure and leftovers:
            if not desired and not app.allow_empty:
                failure = (
                    f"the render is empty: refusing to prune {len(leftovers)} object(s) "
                    "(set allow_empty = true if the app really should be empty)"
                )
            elif app.prune:
                pruned = await self.pruner.prune(app, leftovers, inventory, dry_run=dry_run)
                failed_prunes = [p for p in pruned if p.action == "failed"]
                if failed_prunes:
                    failure = "prune failed: " + "; ".join(
                        f"{p.ref}: {p.message}" for p in failed_prunes
                    )

        if not failure and not dry_run:
            failure = await self._wait_healthy(Step("all"), desired, results, deadline)
        if hook_list:
            if not failure:
                failure = await self._hook_phase(app, hook_list, POST_SYNC, deadline, hook_results, dry_run)
            if failure:
                await self._hook_phase(app, hook_list, SYNC_FAIL, time.monotonic() + app.timeout, hook_results, dry_run)

        objects = [results[d.key] for d in desired if d.key in results] + pruned + hook_results
        if failure:
            return result(False, failure, objects)
        counts = {
            a: sum(1 for o in objects if o.action == a)
            for a in ("created", "changed", "unchanged", "pruned")
        }
        summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n) or "nothing to do"
        return result(True, summary, objects)

    async def _hook_phase(
        self, app: AppConfig, hook_list: list[Hook], phase: str, deadline: float, out: list[ObjectResult], dry_run: bool
    ) -> str:
        """Run one phase's hooks (results appended to ``out``); the failure message, or ""."""
        results, failure = await self.hooks.run_phase(app, hook_list, phase, deadline, dry_run=dry_run)
        out.extend(results)
        return failure

    async def _refresh_hinted(self, step: list[Desired]) -> list[Desired]:
        """Kinds known only from a CRD in the render: ask discovery again now that the CRD exists."""
        out = []
        for d in step:
            if self.discovery.cached(d.resource.api_version, d.resource.kind) is None:
                try:
                    resource = await self.discovery.resolve(d.resource.api_version, d.resource.kind)
                    d = Desired(d.obj, resource)
                except UnknownKind:
                    pass  # dry run before the CRD exists: keep the CRD's own description
            out.append(d)
        await self._watch_kinds(d.resource for d in out)
        return out

    async def _apply_step(
        self,
        app: AppConfig,
        step: list[Desired],
        inventory: Inventory,
        owned: set[Key],
        results: dict[Key, ObjectResult],
        *,
        dry_run: bool,
    ) -> str:
        """Apply what differs in one step; the failure message, or ""."""
        if not dry_run:
            # Everything the render holds is the app's, sent or not (an unchanged object may be
            # missing from a lost or older inventory, and must stay prunable).
            new = [d.ref for d in step if d.key not in owned and not is_shared(d.obj)]
            if new:
                await inventory.add(new)  # persisted before the apply that may create them
                owned.update(ref_key(r) for r in new)
        to_send: list[tuple[Desired, Manifest | None]] = []
        for d in step:
            live = self.cache.get(d.key)
            if matches(d.obj, live):
                results[d.key] = ObjectResult(d.ref, "unchanged", self._object_health(live).health)
            else:
                to_send.append((d, live))
        if not to_send:
            return ""
        unreachable: list[str] = []

        async def one(d: Desired, live: Manifest | None) -> None:
            try:
                result = await self.applier.apply(app, d, live, dry_run=dry_run)
                if dry_run and result.action == "failed" and _namespace_created_first(d, results):
                    # A dry run persists nothing, so the namespace an earlier step "created"
                    # is not there: the object would be created inside it.
                    result = ObjectResult(d.ref, "created", Health.PROGRESSING, "dry run: in a namespace this sync creates")
                results[d.key] = result
            except Unreachable as exc:
                unreachable.append(str(exc))
                results[d.key] = ObjectResult(
                    d.ref, "failed", Health.UNKNOWN, "cluster unreachable"
                )

        async with anyio.create_task_group() as tg:
            for d, live in to_send:
                tg.start_soon(one, d, live)
        if unreachable:
            raise Unreachable(unreachable[0])
        failed = [(d, live) for d, live in to_send if results[d.key].action == "failed"]
        if not failed:
            return ""
        if not dry_run:
            # Nothing was created for a refused object that did not exist: keep the inventory exact.
            never_created = [d.ref for d, live in failed if live is None and await self._absent(d)]
            if never_created:
                await inventory.remove(never_created)
                owned.difference_update(ref_key(r) for r in never_created)
        return "apply failed: " + "; ".join(f"{d.ref}: {results[d.key].message}" for d, _ in failed)

    async def _absent(self, d: Desired) -> bool:
        try:
            await self.client.request(
                "GET",
                d.resource.object_path(
                    str(d.obj["metadata"].get("namespace") or ""), d.obj["metadata"]["name"]
                ),
            )
        except Exception as exc:
            return getattr(exc, "status", None) == 404
        return False

    def _object_health(self, live: Manifest | None) -> HealthStatus:
        hook = self._health_hook
        return object_health(live, hook)

    async def _wait_healthy(
        self, step: Step, desired: list[Desired], results: dict[Key, ObjectResult], deadline: float
    ) -> str:
        """Wait until ``desired`` are healthy; updates results' health; the failure message, or ""."""
        seen: dict[Key, tuple[Manifest | None, str]] = {}
        statuses: dict[Key, HealthStatus] = {}
        while True:
            # Every change in the cluster wakes every waiter: recompute only what changed.
            for d in desired:
                live = self.cache.get(d.key)
                version = (live or {}).get("metadata", {}).get("resourceVersion", "")
                last = seen.get(d.key)
                if last is None or last[0] is not live or last[1] != version:
                    seen[d.key] = (live, version)
                    statuses[d.key] = self._object_health(live)
            for d in desired:
                old = results.get(d.key)
                if old is not None and old.action != "failed":
                    status = statuses[d.key]
                    results[d.key] = ObjectResult(
                        old.ref, old.action, status.health, old.message or status.message
                    )
            degraded = [d for d in desired if statuses[d.key].health == Health.DEGRADED]
            if degraded:
                for d in degraded:
                    old = results[d.key]
                    results[d.key] = ObjectResult(
                        old.ref, old.action, Health.DEGRADED, statuses[d.key].message
                    )
                return "unhealthy: " + "; ".join(
                    f"{d.ref}: {statuses[d.key].message}" for d in degraded
                )
            waiting = [
                d
                for d in desired
                if statuses[d.key].health not in (Health.HEALTHY, Health.SUSPENDED)
            ]
            if not waiting:
                return ""
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for d in waiting:
                    old = results[d.key]
                    results[d.key] = ObjectResult(
                        old.ref, old.action, statuses[d.key].health, statuses[d.key].message
                    )
                where = "" if step.name == "all" else f" ({step.name})"
                return f"timed out waiting for health{where}: " + "; ".join(
                    f"{d.ref}: {statuses[d.key].health} {statuses[d.key].message}".rstrip()
                    for d in waiting
                )
            if self.client.unreachable_for() > UNREACHABLE_GRACE:
                raise unreachable_error(self.name, "lost while waiting for health")
            await self.cache.wait_change(min(remaining, 1.0), keys=[d.key for d in waiting])

    async def diff(self, app: AppConfig, rendered: Desires) -> list[ObjectDiff]:
        """See :meth:`gitopsd.engine.protocols.Cluster.diff`."""
        self._check_reachable()
        try:
            desired, bad = await self._resolve(app, as_rendered(rendered).manifests)
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
        prepared = self._prepare_cached(app, as_rendered(rendered))
        if prepared is None:
            return None
        for d in prepared.values():
            if not self.cache.synced(d.resource.group, d.resource.kind):
                return None
            if not matches(d.obj, self.cache.get(d.key)):
                return False
        return True

    def health(self, app: AppConfig, rendered: Desires) -> Health:
        """See :meth:`gitopsd.engine.protocols.Cluster.health` (no request)."""
        if not self.client.reachable:
            return Health.UNKNOWN
        prepared = self._prepare_cached(app, as_rendered(rendered))
        if prepared is None:
            return Health.UNKNOWN
        healths = []
        for d in prepared.values():
            if not self.cache.synced(d.resource.group, d.resource.kind):
                return Health.UNKNOWN
            healths.append(self._object_health(self.cache.get(d.key)).health)
        return Health.worst(healths)

    def track(self, app: AppConfig, rendered: Desires, on_drift: DriftCallback) -> None:
        """See :meth:`gitopsd.engine.protocols.Cluster.track`."""
        rendered = as_rendered(rendered)
        prepared = self._prepare_cached(app, rendered)
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
            desired, _ = await self._resolve(app, manifests)
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
        lock = self._sync_locks.setdefault(app.name, anyio.Lock())
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

    def untrack(self, app_name: str) -> None:
        """See :meth:`gitopsd.engine.protocols.Cluster.untrack`."""
        self.drift.untrack(app_name)
        self._prepared.pop(app_name, None)


def _namespace_created_first(d: Desired, results: dict[Key, ObjectResult]) -> bool:
    """True when ``d``'s namespace is a Namespace this same sync creates (earlier step)."""
    namespace = str(d.obj["metadata"].get("namespace") or "")
    return bool(namespace) and any(
        r.ref.kind == "Namespace" and r.ref.group == "" and r.ref.name == namespace and r.action == "created"
        for r in results.values()
    )
