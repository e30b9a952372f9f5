"""The sync pipeline of one cluster: resolve, check, apply in ordered steps, hooks, prune, health.

A sync:

1. resolves every manifest's resource (discovery, or a CRD in the same render) and prepares
   it (namespace, labels, owner; :mod:`gitopsd.kube.desired`); an unknown kind, a duplicate
   or a breach of the app's policy (:mod:`gitopsd.kube.tenancy`, hooks included) fails the
   sync before any request that changes something;
2. waits for the live cache of every kind in use (its first LIST; later syncs send nothing);
3. walks the ordered steps (:mod:`gitopsd.kube.order`): objects that already match the cache
   are ``unchanged`` and cost no request; the others pass the owner checks
   (:mod:`gitopsd.kube.ownership`), are added to the inventory (SQLite and the cluster
   record, :mod:`gitopsd.kube.inventory`; the objects of a namespace the foundation step
   creates in the same write as that namespace, and taken out again if never sent), then
   applied concurrently; a failed or refused
   object stops later steps; waited steps must become healthy (CRDs Established, Namespaces
   Active, each wave) before the next; sync hooks run between them (:mod:`gitopsd.kube.hooks`);
4. prunes (only after every apply succeeded, :mod:`gitopsd.kube.prune`);
5. waits for the app to be healthy until ``app.timeout``.

:class:`SyncPipeline` is a base of :class:`gitopsd.kube.cluster.KubeCluster`: it uses the
cluster's client, cache and helpers, declared below.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from gitopsd.core.errors import ApplyError
from gitopsd.core.fanout import run_all
from gitopsd.core.models import Health, HealthStatus, Manifest, ObjectResult, Rendered, SyncResult
from gitopsd.engine.protocols import Inventory
from gitopsd.kube.apply import Applier, Desired, impersonation, is_shared
from gitopsd.kube.cache import Key, LiveCache, key_of
from gitopsd.kube.client import KubeClient, Unreachable, unreachable_error
from gitopsd.kube.desired import DesiredObjects
from gitopsd.kube.discovery import Discovery, Resource, UnknownKind
from gitopsd.kube.drift import DriftTracker
from gitopsd.kube.hooks import (
    POST_SYNC,
    PRE_SYNC,
    SYNC,
    SYNC_FAIL,
    Hook,
    HookRunner,
    hook_object,
    split,
)
from gitopsd.kube.inventory import InventoryRecords
from gitopsd.kube.normalize import matches
from gitopsd.kube.order import Step, plan_steps
from gitopsd.kube.prune import Pruner, ref_key
from gitopsd.kube.tenancy import Checked, OwnershipGate, policy_refusals
from gitopsd.plugin.config import AppConfig, ClusterConfig

UNREACHABLE_GRACE = 5.0
"""A sync fails at once (ClusterUnreachable) only when the cluster has been unreachable this long."""

FENCED = "fenced: this member no longer holds the app's coordination lock"


class SyncPipeline:
    """One sync of one app into the cluster (see the module docstring for the steps)."""

    name: str
    config: ClusterConfig
    instance: str
    client: KubeClient
    discovery: Discovery
    cache: LiveCache
    drift: DriftTracker
    desired: DesiredObjects
    applier: Applier
    pruner: Pruner
    ownership: OwnershipGate
    records: InventoryRecords
    hooks: HookRunner
    _object_health: Callable[[Manifest | None], HealthStatus]

    def _check_reachable(self) -> None:
        if self.client.unreachable_for() > UNREACHABLE_GRACE:
            raise unreachable_error(self.name, "no answer from the API server")

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

    async def _sync(
        self,
        app: AppConfig,
        rendered: Rendered,
        inventory: Inventory,
        *,
        dry_run: bool,
        run_hooks: bool,
        fence: Callable[[], bool] | None = None,
    ) -> SyncResult:
        manifests = rendered.manifests

        def fenced() -> str:
            """Coordination: "" while this member may write the app (checked before each write phase)."""
            return "" if dry_run or fence is None or fence() else FENCED
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

        desired, bad = await self.desired.resolve(app, manifests)
        if bad:
            skipped = [
                ObjectResult(d.ref, "skipped", Health.UNKNOWN, "not applied: the render has errors")
                for d in desired
            ]
            names = "; ".join(f"{o.ref}: {o.message}" for o in bad)
            return result(False, f"render cannot be applied: {names}", bad + skipped)
        if not dry_run:
            self.desired.remember(app, rendered, desired)
        # Hooks (gitopsd.kube.hooks) are checked against the policy with the rest, before any write.
        hook_list = split(manifests) if run_hooks else []
        refused = policy_refusals(app, desired + await self._hooks_as_desired(app, hook_list))
        if refused:
            bad_refs = {o.ref for o in refused}
            skipped = [
                ObjectResult(d.ref, "skipped", Health.UNKNOWN, "not applied: the render breaks the app's policy")
                for d in desired
                if d.ref not in bad_refs
            ]
            names = "; ".join(f"{o.ref}: {o.message}" for o in refused)
            return result(False, f"refused by policy: {names}", refused + skipped)

        if not dry_run and self.drift.tracked(app.name):
            self.drift.track(app.name, {d.key: d.obj for d in desired}, None)
        await self._watch_kinds(d.resource for d in desired)

        previous = await inventory.current()
        owned = {ref_key(r) for r in previous}
        ahead: set[Key] = set()  # added with the namespace that holds them, not yet by their own step
        results: dict[Key, ObjectResult] = {}
        failure = ""
        steps = plan_steps([d.obj for d in desired])
        by_key = {d.key: d for d in desired}
        # Hooks: PreSync after the foundation step (namespaces, CRDs) they may need, Sync after
        # every step, PostSync once healthy, SyncFail when anything failed.
        hook_results: list[ObjectResult] = []
        pre_at = next((i for i, s in enumerate(steps) if s.name != "foundation"), len(steps))
        for index, step in enumerate(steps):
            skip_from = index + 1
            if index == pre_at and hook_list:
                failure = await self._hook_phase(app, hook_list, PRE_SYNC, deadline, hook_results, dry_run)
                skip_from = index if failure else skip_from  # a failed PreSync: nothing more applied
            if not failure:
                failure = fenced()
                skip_from = index if failure else skip_from  # this step is not applied either
            if not failure:
                step_desired = [by_key[key_of(o)] for o in step.objects]
                step_desired = await self._refresh_hinted(step_desired)
                beyond = (
                    [by_key[key_of(o)] for after in steps[index + 1 :] for o in after.objects]
                    if step.name == "foundation"
                    else []
                )
                failure = await self._apply_step(
                    app, step_desired, inventory, owned, results, dry_run=dry_run, later=beyond, ahead=ahead
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
        # Added with their namespace but never sent (refused, or in a step a failure left out): taken out again.
        unsent = [by_key[k].ref for k in ahead - owned]
        if unsent and not fenced():
            await inventory.remove(unsent)
        if hook_list and not failure:
            failure = fenced()
        if hook_list and not failure:
            if pre_at == len(steps):
                failure = await self._hook_phase(app, hook_list, PRE_SYNC, deadline, hook_results, dry_run)
            if not failure:
                failure = await self._hook_phase(app, hook_list, SYNC, deadline, hook_results, dry_run)

        pruned: list[ObjectResult] = []
        desired_keys = set(by_key)
        leftovers = [r for r in previous if ref_key(r) not in desired_keys]
        if not failure and leftovers:
            failure = fenced()
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

    async def _hooks_as_desired(self, app: AppConfig, hooks: list[Hook]) -> list[Desired]:
        """The hooks as they would be created, for the policy check (kinds resolved by discovery)."""
        out = []
        for hook in hooks:
            try:
                resource = await self.discovery.resolve(hook.ref.api_version, hook.ref.kind)
            except UnknownKind:
                continue  # reported when the hook runs
            out.append(Desired(hook_object(app, hook, resource, self.instance), resource))
        return out

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
        later: list[Desired] | None = None,
        ahead: set[Key] | None = None,
    ) -> str:
        """Apply what differs in one step; the failure message, or "".

        ``later`` (the objects of the steps after the foundation step): those in a namespace this
        step creates are added to the inventory with it, in the same write (nothing can own an
        object in a namespace that does not exist yet), and their keys to ``ahead``.
        """
        differ: list[tuple[Desired, Manifest | None]] = []
        for d in step:
            live = self.cache.get(d.key)
            if matches(d.obj, live):  # our owner annotation included: ours already
                results[d.key] = ObjectResult(d.ref, "unchanged", self._object_health(live).health)
            else:
                differ.append((d, live))
        new_namespaces = frozenset(
            r.ref.name
            for r in results.values()
            if r.ref.kind == "Namespace" and r.ref.group == "" and r.action == "created"
        )
        checked = await self.ownership.check(app, differ, owned, new_namespaces) if differ else []
        try:
            return await self._apply_checked(
                app, step, checked, inventory, owned, results, dry_run=dry_run, later=later or [], ahead=ahead
            )
        finally:
            self.ownership.release(app, [c.desired.key for c in checked])

    async def _apply_checked(
        self,
        app: AppConfig,
        step: list[Desired],
        checked: list[Checked],
        inventory: Inventory,
        owned: set[Key],
        results: dict[Key, ObjectResult],
        *,
        dry_run: bool,
        later: list[Desired],
        ahead: set[Key] | None,
    ) -> str:
        """The rest of :meth:`_apply_step`, once the owner checks are done."""
        refused = [c for c in checked if not c.admission.allowed]
        for c in refused:
            results[c.desired.key] = ObjectResult(
                c.desired.ref, c.admission.action, Health.UNKNOWN, c.admission.message
            )
        refused_keys = {c.desired.key for c in refused}
        if not dry_run:
            # Everything the render holds is the app's, sent or not (an unchanged object may be
            # missing from a lost or older inventory, and must stay prunable).
            new = [
                d.ref
                for d in step
                if d.key not in owned and d.key not in refused_keys and not is_shared(d.obj)
            ]
            inside = _in_new_namespaces(checked, later, owned) if ahead is not None else []
            if new or inside:
                # persisted before the apply that may create them
                await inventory.add(new + [d.ref for d in inside])
                owned.update(ref_key(r) for r in new)
                if ahead is not None:
                    ahead.update(d.key for d in inside)
        to_send = [(c.desired, c.live) for c in checked if c.admission.allowed]
        adopting = {c.desired.key for c in checked if c.admission.adopted}
        refusal = "; ".join(f"{c.desired.ref}: {c.admission.message}" for c in refused)
        if not to_send:
            return f"refused: {refusal}" if refused else ""
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

        await run_all([one(d, live) for d, live in to_send])
        if unreachable:
            raise Unreachable(unreachable[0])
        adopted = [d for d, _ in to_send if d.key in adopting and results[d.key].action != "failed"]
        for d in adopted:
            old = results[d.key]
            note = "adopted: it existed without a gitopsd owner"
            results[d.key] = ObjectResult(d.ref, old.action, old.health, "; ".join(filter(None, [note, old.message])))
        if adopted and not dry_run:
            self.ownership.adopted(app, [d.ref for d in adopted])
        failed = [(d, live) for d, live in to_send if results[d.key].action == "failed"]
        if not failed:
            return f"refused: {refusal}" if refused else ""
        if not dry_run:
            # Nothing was created for a refused object that did not exist: keep the inventory exact.
            never_created = [d.ref for d, live in failed if live is None and await self._absent(app, d)]
            if never_created:
                await inventory.remove(never_created)
                owned.difference_update(ref_key(r) for r in never_created)
        message = "apply failed: " + "; ".join(f"{d.ref}: {results[d.key].message}" for d, _ in failed)
        return f"{message}; refused: {refusal}" if refused else message

    async def _absent(self, app: AppConfig, d: Desired) -> bool:
        try:
            await self.client.request(
                "GET",
                d.resource.object_path(
                    str(d.obj["metadata"].get("namespace") or ""), d.obj["metadata"]["name"]
                ),
                headers=impersonation(app),
            )
        except Exception as exc:
            return getattr(exc, "status", None) == 404
        return False

    async def _wait_healthy(
        self, step: Step, desired: list[Desired], results: dict[Key, ObjectResult], deadline: float
    ) -> str:
        """Wait until ``desired`` are healthy; updates results' health; the failure message, or ""."""
        seen: dict[Key, str | None] = {}
        statuses: dict[Key, HealthStatus] = {}
        while True:
            # Recompute only what changed: the cached resourceVersion says so without parsing
            # the object (absent or without a version: computed again, which is cheap or rare).
            # An unchanged object's result would be rebuilt the same: it is left as it is.
            for d in desired:
                version = self.cache.version(d.key)
                if version and seen.get(d.key) == version:
                    continue
                seen[d.key] = version
                status = statuses[d.key] = self._object_health(self.cache.get(d.key))
                old = results.get(d.key)
                if old is not None and old.action != "failed":
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


def _in_new_namespaces(checked: list[Checked], later: list[Desired], owned: set[Key]) -> list[Desired]:
    """The objects of ``later`` in a namespace ``checked`` creates (this app's own, absent, allowed)."""
    creating = {
        c.desired.ref.name
        for c in checked
        if c.desired.ref.kind == "Namespace"
        and c.desired.ref.group == ""
        and c.live is None
        and c.admission.allowed
        and not is_shared(c.desired.obj)
    }
    if not creating:
        return []
    return [
        d
        for d in later
        if d.key not in owned and not is_shared(d.obj) and str(d.obj["metadata"].get("namespace") or "") in creating
    ]


def _namespace_created_first(d: Desired, results: dict[Key, ObjectResult]) -> bool:
    """True when ``d``'s namespace is a Namespace this same sync creates (earlier step)."""
    namespace = str(d.obj["metadata"].get("namespace") or "")
    return bool(namespace) and any(
        r.ref.kind == "Namespace" and r.ref.group == "" and r.ref.name == namespace and r.action == "created"
        for r in results.values()
    )
