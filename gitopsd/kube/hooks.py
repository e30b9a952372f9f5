"""Sync hooks: objects created in a phase of a sync (PreSync, Sync, PostSync, SyncFail), not applied state.

A manifest is a hook when it carries ``gitopsd.dev/hook`` or Argo CD's
``argocd.argoproj.io/hook`` (a comma-separated list of phases), or Helm's ``helm.sh/hook``
mapped the way Argo CD maps it:

============================  ===========
``helm.sh/hook``              phase
============================  ===========
pre-install, pre-upgrade      PreSync
post-install, post-upgrade    PostSync
test, test-success, others    not run
============================  ===========

``Skip`` (and Argo CD's ``PostDelete``, which gitopsd does not run) leaves the manifest out
of the sync altogether. A hook may use ``metadata.generateName``. Its wave is
``gitopsd.dev/sync-wave`` / ``argocd.argoproj.io/sync-wave``, else ``helm.sh/hook-weight``.

Hooks are not desired state: they are not compared with the live state (no drift, no
OutOfSync), never pruned and never in the inventory. They run only on a sync that was asked
to run them (the engine passes ``run_hooks``: a new revision or a manual sync, not a
self-heal of drift). Within a phase, waves run in order; every hook of a wave must complete
(a Job ``Complete``, a Pod ``Succeeded``, any other kind healthy) before the next wave.

Delete policies (``gitopsd.dev/hook-delete-policy``, ``argocd.argoproj.io/hook-delete-policy``
or Helm's ``helm.sh/hook-delete-policy``, comma-separated): ``BeforeHookCreation`` (the
default: the previous object of this hook is deleted before it is created again; for
``generateName`` hooks, the earlier ones of the same app and prefix), ``HookSucceeded`` and
``HookFailed`` (deleted once it succeeded / failed).

Hook objects carry the ``app.kubernetes.io/managed-by: gitopsd`` label (the live cache
watches them while they run) and ``gitopsd.dev/hook-of: <app>`` instead of the ownership
label, so prune never considers them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import anyio
import structlog

from gitopsd.core.models import Health, Manifest, ObjectRef, ObjectResult
from gitopsd.kube.apply import impersonation, prepare
from gitopsd.kube.cache import APP_LABEL, Key, LiveCache, key_of
from gitopsd.kube.client import ApiError, KubeClient, Unreachable, backoff
from gitopsd.kube.discovery import Discovery, Resource, UnknownKind
from gitopsd.kube.health import HealthHook, object_health
from gitopsd.kube.order import WAVE_ANNOTATIONS, wave_of
from gitopsd.kube.ownership import DEFAULT_INSTANCE, OWNER_ANNOTATION, owner_value
from gitopsd.plugin.config import AppConfig

log = structlog.get_logger("gitopsd.kube.hooks")

PRE_SYNC, SYNC, POST_SYNC, SYNC_FAIL = "PreSync", "Sync", "PostSync", "SyncFail"
PHASES = (PRE_SYNC, SYNC, POST_SYNC, SYNC_FAIL)

HOOK_ANNOTATIONS = ("gitopsd.dev/hook", "argocd.argoproj.io/hook")
DELETE_POLICY_ANNOTATIONS = ("gitopsd.dev/hook-delete-policy", "argocd.argoproj.io/hook-delete-policy")
HELM_HOOK = "helm.sh/hook"
HELM_WEIGHT = "helm.sh/hook-weight"
HELM_DELETE_POLICY = "helm.sh/hook-delete-policy"

BEFORE_HOOK_CREATION, HOOK_SUCCEEDED, HOOK_FAILED = "BeforeHookCreation", "HookSucceeded", "HookFailed"
_HELM_PHASES = {
    "pre-install": PRE_SYNC,
    "pre-upgrade": PRE_SYNC,
    "post-install": POST_SYNC,
    "post-upgrade": POST_SYNC,
}
_HELM_POLICIES = {
    "before-hook-creation": BEFORE_HOOK_CREATION,
    "hook-succeeded": HOOK_SUCCEEDED,
    "hook-failed": HOOK_FAILED,
}

HOOK_OF_LABEL = "gitopsd.dev/hook-of"
HOOK_ID_LABEL = "gitopsd.dev/hook-id"
"""A hash of (kind, namespace, name or generateName): finds the earlier objects of one hook."""


@dataclass(frozen=True, slots=True)
class Hook:
    """One hook manifest and when it runs."""

    obj: Manifest
    phases: frozenset[str]
    delete_policies: frozenset[str]
    wave: int

    @property
    def ref(self) -> ObjectRef:
        ref = ObjectRef.from_manifest(self.obj)
        if not ref.name:
            meta = self.obj.get("metadata") or {}
            ref = ObjectRef(ref.group, ref.version, ref.kind, ref.namespace, f"{meta.get('generateName', '')}*")
        return ref


_HOOK_KEYS = (*HOOK_ANNOTATIONS, HELM_HOOK)


def _annotations(obj: Manifest) -> dict[str, str]:
    return {str(k): str(v) for k, v in ((obj.get("metadata") or {}).get("annotations") or {}).items()}


def _words(value: str) -> list[str]:
    return [w.strip() for w in value.split(",") if w.strip()]


def hook_phases(obj: Manifest) -> frozenset[str] | None:
    """The phases ``obj`` runs in; None when it is not a hook; empty when it is never run (Skip, Helm tests)."""
    raw = (obj.get("metadata") or {}).get("annotations")
    if not raw or not any(key in raw for key in _HOOK_KEYS):
        return None  # most objects: no copy of their annotations (this runs for every object of a sync)
    annotations = _annotations(obj)
    for key in HOOK_ANNOTATIONS:
        if key in annotations:
            return frozenset(p for p in _words(annotations[key]) if p in PHASES)
    if HELM_HOOK in annotations:
        return frozenset(_HELM_PHASES[h] for h in _words(annotations[HELM_HOOK]) if h in _HELM_PHASES)
    return None


def is_hook(obj: Manifest) -> bool:
    """Whether ``obj`` is a hook (or skipped), i.e. not part of the app's applied state."""
    return hook_phases(obj) is not None


def regular(manifests: Iterable[Manifest]) -> Iterator[Manifest]:
    """The manifests that are desired state (hooks left out)."""
    return (m for m in manifests if not is_hook(m))


def split(manifests: Iterable[Manifest]) -> list[Hook]:
    """The hooks among ``manifests`` (those that run in at least one phase)."""
    hooks = []
    for m in manifests:
        phases = hook_phases(m)
        if not phases:
            continue
        annotations = _annotations(m)
        policies: list[str] = []
        for key in DELETE_POLICY_ANNOTATIONS:
            if key in annotations:
                policies = _words(annotations[key])
                break
        else:
            if HELM_DELETE_POLICY in annotations:
                policies = [_HELM_POLICIES.get(p, p) for p in _words(annotations[HELM_DELETE_POLICY])]
        if not policies:
            policies = [BEFORE_HOOK_CREATION]
        wave = wave_of(m)
        if not any(k in annotations for k in WAVE_ANNOTATIONS) and HELM_WEIGHT in annotations:
            try:
                wave = int(annotations[HELM_WEIGHT].strip())
            except ValueError:
                wave = 0
        hooks.append(Hook(m, phases, frozenset(policies), wave))
    return hooks


def _hook_id(obj: Manifest) -> str:
    meta = obj.get("metadata") or {}
    ident = "/".join(
        str(x)
        for x in (obj.get("kind"), meta.get("namespace") or "", meta.get("name") or "", meta.get("generateName") or "")
    )
    return hashlib.sha256(ident.encode()).hexdigest()[:40]


def hook_state(obj: Manifest | None, health_hook: HealthHook | None = None) -> tuple[str, str]:
    """("running" | "succeeded" | "failed", message) of a live hook object."""
    if obj is None:
        return "failed", "deleted while running"
    kind = obj.get("kind")
    status = obj.get("status") or {}
    if kind == "Pod":
        phase = status.get("phase")
        if phase == "Succeeded":
            return "succeeded", ""
        if phase == "Failed":
            return "failed", str(status.get("message") or status.get("reason") or "pod failed")
        return "running", ""
    health = object_health(obj, health_hook)
    if health.health == Health.HEALTHY:
        return "succeeded", ""
    if health.health == Health.DEGRADED:
        return "failed", health.message
    return "running", ""


class HookRunner:
    """Runs the hooks of one phase in one cluster (waves in order, each wave to completion)."""

    def __init__(
        self,
        client: KubeClient,
        discovery: Discovery,
        cache: LiveCache,
        health_hook: Callable[[], HealthHook | None],
        instance: str = DEFAULT_INSTANCE,
    ):
        self.client = client
        self.discovery = discovery
        self.cache = cache
        self._health_hook = health_hook
        self.instance = instance

    async def run_phase(
        self, app: AppConfig, hooks: list[Hook], phase: str, deadline: float, *, dry_run: bool = False
    ) -> tuple[list[ObjectResult], str]:
        """Run every hook of ``phase``; (results, failure message or "")."""
        selected = [h for h in hooks if phase in h.phases]
        if not selected:
            return [], ""
        if dry_run:
            return [ObjectResult(h.ref, "skipped", Health.UNKNOWN, f"{phase} hook: not run in a dry run") for h in selected], ""
        results: list[ObjectResult] = []
        for wave in sorted({h.wave for h in selected}):
            batch = [h for h in selected if h.wave == wave]
            done = await self._run_wave(app, batch, phase, deadline)
            results.extend(done)
            failed = [r for r in done if r.action == "failed"]
            if failed:
                return results, f"{phase} hook failed: " + "; ".join(f"{r.ref}: {r.message}" for r in failed)
        return results, ""

    async def _run_wave(self, app: AppConfig, batch: list[Hook], phase: str, deadline: float) -> list[ObjectResult]:
        out: list[ObjectResult | None] = [None] * len(batch)
        unreachable: list[Unreachable] = []

        async def one(i: int, hook: Hook) -> None:
            try:
                out[i] = await self._run_one(app, hook, phase, deadline)
            except ApiError as exc:
                out[i] = ObjectResult(hook.ref, "failed", Health.UNKNOWN, f"{phase} hook: {exc}")
            except Unreachable as exc:
                unreachable.append(exc)

        async with anyio.create_task_group() as tg:
            for i, hook in enumerate(batch):
                tg.start_soon(one, i, hook)
        if unreachable:
            raise unreachable[0]  # the sync reports the cluster unreachable, as for applies
        return [r for r in out if r is not None]

    async def _run_one(self, app: AppConfig, hook: Hook, phase: str, deadline: float) -> ObjectResult:
        ref = hook.ref
        try:
            resource = await self.discovery.resolve(ref.api_version, ref.kind)
        except UnknownKind as exc:
            return ObjectResult(ref, "failed", Health.UNKNOWN, f"{phase} hook: {exc}")
        obj = hook_object(app, hook, resource, self.instance)
        namespace = str(obj["metadata"].get("namespace") or "")
        headers = impersonation(app)  # a hook is the app's object: the app's policy and RBAC apply
        try:
            await self.cache.wait_synced([resource], within=self.client.config.request_timeout)
            if BEFORE_HOOK_CREATION in hook.delete_policies:
                await self._delete_previous(app, obj, resource, namespace, deadline)
            try:
                live = await self.client.request("POST", resource.collection_path(namespace), body=obj, headers=headers)
            except ApiError as exc:
                if exc.status != 409 or not obj["metadata"].get("name"):
                    raise
                # Kept from an earlier sync (no BeforeHookCreation): the existing object is the
                # hook, if it is this app's; an object of the same name made by someone else is not.
                live = await self.client.request(
                    "GET", resource.object_path(namespace, obj["metadata"]["name"]), headers=headers
                )
                if not self._ours(app, live):
                    return ObjectResult(ref, "failed", Health.UNKNOWN, f"{phase} hook: {_foreign(live)}")
        except ForeignHook as exc:
            return ObjectResult(ref, "failed", Health.UNKNOWN, f"{phase} hook: {exc}")
        except ApiError as exc:
            return ObjectResult(ref, "failed", Health.UNKNOWN, f"{phase} hook: {exc}")
        live.setdefault("apiVersion", resource.api_version)
        live.setdefault("kind", resource.kind)
        self.cache.record(live)
        key = key_of(live)
        ref = ObjectRef.from_manifest(live)
        state, message = await self._wait(key, deadline)
        if state == "running":
            return ObjectResult(ref, "failed", Health.PROGRESSING, f"{phase} hook: timed out waiting for it to complete")
        delete = (state == "succeeded" and HOOK_SUCCEEDED in hook.delete_policies) or (
            state == "failed" and HOOK_FAILED in hook.delete_policies
        )
        if delete:
            await self._delete(app, resource, namespace, str(live["metadata"]["name"]))
        if state == "failed":
            return ObjectResult(ref, "failed", Health.DEGRADED, f"{phase} hook failed: {message}".rstrip(": "))
        return ObjectResult(ref, "hook", Health.HEALTHY, f"{phase} hook succeeded" + ("; deleted" if delete else ""))

    async def _wait(self, key: Key, deadline: float) -> tuple[str, str]:
        while True:
            state, message = hook_state(self.cache.get(key), self._health_hook())
            remaining = deadline - time.monotonic()
            if state != "running" or remaining <= 0:
                return state, message
            await self.cache.wait_change(min(remaining, 1.0), keys=[key])

    def _ours(self, app: AppConfig, live: Manifest | None) -> bool:
        """Whether ``live`` is a hook object of this app and installation (its owner annotation)."""
        annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
        return annotations.get(OWNER_ANNOTATION) == owner_value(self.instance, app.name)

    async def _delete(self, app: AppConfig, resource: Resource, namespace: str, name: str) -> None:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            await self.client.request(
                "DELETE", resource.object_path(namespace, name), body=body, headers=impersonation(app)
            )
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def _delete_previous(
        self, app: AppConfig, obj: Manifest, resource: Resource, namespace: str, deadline: float
    ) -> None:
        """BeforeHookCreation: delete this hook's earlier objects and wait until they are gone."""
        headers = impersonation(app)
        selector = f"{HOOK_OF_LABEL}={app.name},{HOOK_ID_LABEL}={obj['metadata']['labels'][HOOK_ID_LABEL]}"
        listed = await self.client.request(
            "GET", resource.collection_path(namespace), query=[("labelSelector", selector)], headers=headers
        )
        names = [str(i["metadata"]["name"]) for i in listed.get("items") or [] if self._ours(app, i)]
        name = obj["metadata"].get("name")
        if name and name not in names:
            try:
                existing = await self.client.request("GET", resource.object_path(namespace, name), headers=headers)
            except ApiError as exc:
                if exc.status != 404:
                    raise
            else:
                if not self._ours(app, existing):
                    raise ForeignHook(_foreign(existing))  # never delete what gitopsd does not own
                names.append(name)
        for n in names:
            await self._delete(app, resource, namespace, n)
        attempt = 0
        for n in names:
            while time.monotonic() < deadline:
                try:
                    await self.client.request("GET", resource.object_path(namespace, n), headers=headers)
                except ApiError as exc:
                    if exc.status == 404:
                        self.cache.forget((resource.group, resource.kind, namespace, n))
                        break
                    raise
                await anyio.sleep(backoff(attempt, base=0.05, cap=1.0))
                attempt += 1


class ForeignHook(Exception):
    """A hook's fixed name is taken by an object gitopsd does not own: it is neither deleted nor reused."""


def _foreign(live: Manifest | None) -> str:
    meta = (live or {}).get("metadata") or {}
    owner = (meta.get("annotations") or {}).get(OWNER_ANNOTATION)
    who = f"owned by {owner}" if owner else "not managed by gitopsd"
    return f"{meta.get('name')} exists and is {who}: rename the hook or use generateName"


def hook_object(app: AppConfig, hook: Hook, resource: Resource, instance: str = DEFAULT_INSTANCE) -> Manifest:
    """The hook ready to create: namespace set, owner annotation, hook labels instead of the ownership label."""
    obj = prepare(app, hook.obj, resource, instance)
    labels = dict(obj["metadata"]["labels"])
    labels.pop(APP_LABEL, None)
    labels[HOOK_OF_LABEL] = app.name
    labels[HOOK_ID_LABEL] = _hook_id(obj)
    obj["metadata"]["labels"] = labels
    return obj
