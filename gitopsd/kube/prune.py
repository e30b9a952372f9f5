"""Prune: delete what left the render, safely.

Only objects in the app's own inventory are candidates. A candidate is deleted only when
its live copy's owner annotation names this app (``gitopsd.dev/owner: <instance>/<app>``,
:func:`gitopsd.kube.ownership.may_prune`), it is not annotated ``gitopsd.dev/prune:
disabled``, and it is not a Namespace (unless the app has ``prune_namespaces = true``); the
DELETE carries the live uid as a precondition, so an object re-created by someone else in
between is never deleted. Requests are impersonated as the app's policy says. Groups are deleted in reverse install order
(custom resources first, then workloads, ..., Namespaces and CRDs last). An object leaves
the inventory only when it is confirmed gone (or is not ours to delete).
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from gitopsd.core.models import Health, Manifest, ObjectRef, ObjectResult
from gitopsd.engine.protocols import Inventory
from gitopsd.kube.apply import PRUNE_ANNOTATION, impersonation
from gitopsd.kube.cache import Key, LiveCache
from gitopsd.kube.client import ApiError, KubeClient, Unreachable, backoff
from gitopsd.kube.discovery import Discovery, Resource, UnknownKind
from gitopsd.kube.order import prune_groups
from gitopsd.kube.ownership import DEFAULT_INSTANCE, may_prune, owner_value
from gitopsd.plugin.config import AppConfig

GONE_WAIT = 10.0
"""Seconds to wait for a deleted object to disappear before leaving it for the next sync."""


def ref_key(ref: ObjectRef) -> Key:
    return (ref.group, ref.kind, ref.namespace, ref.name)


class Pruner:
    """Deletes one app's leftover objects on one cluster."""

    def __init__(
        self,
        client: KubeClient,
        cache: LiveCache,
        discovery: Discovery,
        instance: str = DEFAULT_INSTANCE,
    ):
        self.client = client
        self.cache = cache
        self.discovery = discovery
        self.instance = instance

    async def prune(
        self, app: AppConfig, candidates: list[ObjectRef], inventory: Inventory, *, dry_run: bool
    ) -> list[ObjectResult]:
        """Delete ``candidates`` (inventory refs not in the render) group by group.

        What is confirmed gone leaves the inventory in one write at the end (a crash before it
        leaves refs whose objects are gone: the next prune finds them absent and drops them).
        """
        results: list[ObjectResult] = []
        all_gone: list[ObjectRef] = []
        as_manifests: list[Manifest] = [
            {
                "apiVersion": r.api_version,
                "kind": r.kind,
                "metadata": {"namespace": r.namespace, "name": r.name},
            }
            for r in candidates
        ]
        for group in prune_groups(as_manifests):
            refs = [ObjectRef.from_manifest(m) for m in group]
            gone: list[ObjectRef] = []
            group_results: list[ObjectResult | None] = [None] * len(refs)

            unreachable: list[Unreachable] = []

            async def one(
                i: int,
                ref: ObjectRef,
                gone: list[ObjectRef] = gone,
                out: list[ObjectResult | None] = group_results,
                unreachable: list[Unreachable] = unreachable,
            ) -> None:
                try:
                    result, is_gone = await self._prune_one(app, ref, dry_run=dry_run)
                except Unreachable as exc:  # raised as itself below, not inside an exception group
                    unreachable.append(exc)
                    return
                out[i] = result
                if is_gone:
                    gone.append(ref)

            async with anyio.create_task_group() as tg:
                for i, ref in enumerate(refs):
                    tg.start_soon(one, i, ref)
            if unreachable:
                if all_gone and not dry_run:
                    await inventory.remove(all_gone)  # the groups before; this one's on the next prune
                raise unreachable[0]
            all_gone.extend(gone)
            results.extend(r for r in group_results if r is not None)
            if any(r is not None and r.action == "failed" for r in group_results):
                break  # do not delete what the failed group's objects may depend on
        if all_gone and not dry_run:
            await inventory.remove(all_gone)
        return results

    async def _live(self, app: AppConfig, resource: Resource, ref: ObjectRef) -> Manifest | None:
        if self.cache.synced(resource.group, resource.kind):
            cached = self.cache.get(ref_key(ref))
            if cached is not None:
                return cached
        # Not in the cache: it may exist without our labels, so ask.
        try:
            answer: Manifest = await self.client.request(
                "GET", resource.object_path(ref.namespace, ref.name), headers=impersonation(app)
            )
            return answer
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def _prune_one(
        self, app: AppConfig, ref: ObjectRef, *, dry_run: bool
    ) -> tuple[ObjectResult | None, bool]:
        """(result, confirmed gone or not ours: drop from the inventory)."""
        try:
            resource = await self.discovery.resolve(ref.api_version, ref.kind)
        except UnknownKind:
            return None, True  # its kind is not served any more: nothing of it exists
        try:
            live = await self._live(app, resource, ref)
            if live is None:
                return None, True
            meta = live.get("metadata") or {}
            not_ours = may_prune(live, owner_value(self.instance, app.name))
            if not_ours:
                return ObjectResult(ref, "skipped", Health.HEALTHY, not_ours), True
            if ref.group == "" and ref.kind == "Namespace" and not app.prune_namespaces:
                return ObjectResult(
                    ref,
                    "skipped",
                    Health.HEALTHY,
                    "not deleted: Namespaces are pruned only with prune_namespaces = true",
                ), True
            if (meta.get("annotations") or {}).get(PRUNE_ANNOTATION) == "disabled":
                return ObjectResult(
                    ref, "skipped", Health.HEALTHY, f"not deleted: {PRUNE_ANNOTATION} is disabled"
                ), True
            if dry_run:
                return ObjectResult(
                    ref, "pruned", Health.MISSING, "would be deleted (dry run)"
                ), False
            body: dict[str, Any] = {
                "kind": "DeleteOptions",
                "apiVersion": "v1",
                "propagationPolicy": "Background",
                "preconditions": {"uid": meta.get("uid")} if meta.get("uid") else {},
            }
            path = resource.object_path(ref.namespace, ref.name)
            try:
                await self.client.request("DELETE", path, body=body, headers=impersonation(app))
            except ApiError as exc:
                if exc.status == 404:
                    self.cache.forget(ref_key(ref))
                    return ObjectResult(ref, "pruned", Health.MISSING), True
                if exc.status == 409:  # uid precondition: someone else's object now
                    return ObjectResult(
                        ref, "skipped", Health.HEALTHY, "not deleted: replaced by another object"
                    ), True
                raise
            if await self._wait_gone(app, resource, ref, path):
                return ObjectResult(ref, "pruned", Health.MISSING), True
            return ObjectResult(
                ref, "pruned", Health.PROGRESSING, "deletion in progress (finalizers)"
            ), False
        except ApiError as exc:
            return ObjectResult(ref, "failed", Health.UNKNOWN, f"prune failed: {exc}"), False

    async def _wait_gone(self, app: AppConfig, resource: Resource, ref: ObjectRef, path: str) -> bool:
        deadline = time.monotonic() + GONE_WAIT
        key = ref_key(ref)
        attempt = 0
        while time.monotonic() < deadline:
            if self.cache.synced(resource.group, resource.kind):
                if self.cache.get(key) is None:
                    return True
                await self.cache.wait_change(min(0.5, deadline - time.monotonic()))
                continue
            try:
                await self.client.request("GET", path, headers=impersonation(app))
            except ApiError as exc:
                if exc.status == 404:
                    return True
                raise
            await anyio.sleep(backoff(attempt, base=0.05, cap=1.0) + 0.02)
            attempt += 1
        return False
