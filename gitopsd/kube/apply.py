"""Server-side apply of one object: field manager ``gitopsd``, conflicts reported, immutable fields.

Objects are prepared before anything is compared or sent: the app's namespace is set on
namespaced objects without one (and dropped from cluster-scoped ones), read-only metadata
is removed, and two labels are added to every object:

- ``app.kubernetes.io/managed-by: gitopsd`` (what the live cache watches), and
- ``gitopsd.dev/app: <app name>`` (selection),

and the annotation ``gitopsd.dev/owner: <instance>/<app>`` (ownership, see
:mod:`gitopsd.kube.ownership`: prune deletes only objects whose live copy names this app, and
no app applies an object another one owns). Shared objects get neither the app label nor the
owner annotation.

An apply is first sent with ``force=false``. When that reports a conflict with another field
manager and the app has ``force_conflicts`` (the default), it is sent again with
``force=true`` and the result names the manager and the fields taken over; otherwise the
object fails with them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import anyio

from gitopsd.core.models import Health, Manifest, ObjectRef, ObjectResult
from gitopsd.kube.cache import APP_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, Key, LiveCache, key_of
from gitopsd.kube.client import APPLY_PATCH, ApiError, KubeClient, backoff
from gitopsd.kube.discovery import Resource
from gitopsd.kube.ignore import (
    ignored_managers,
    is_ignored_manager,
    without_fields,
    without_ignored,
    without_managed,
)
from gitopsd.kube.ownership import DEFAULT_INSTANCE, OWNER_ANNOTATION, owner_value
from gitopsd.plugin.config import AppConfig

FIELD_MANAGER = "gitopsd"
PRUNE_ANNOTATION = "gitopsd.dev/prune"
_READ_ONLY_META = (
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
)


@dataclass(frozen=True, slots=True)
class Desired:
    """A prepared object and where it is served (``obj`` is not changed after this is made)."""

    obj: Manifest
    resource: Resource
    key: Key = field(init=False, repr=False, compare=False)
    _ref: ObjectRef | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Computed once: health waits look keys up on every change of the live cache.
        object.__setattr__(self, "key", key_of(self.obj))

    @property
    def ref(self) -> ObjectRef:
        """The object's reference, made at the first ask (a sync asks about five times per object)."""
        ref = self._ref
        if ref is None:
            ref = ObjectRef.from_manifest(self.obj)
            object.__setattr__(self, "_ref", ref)
        return ref


SHARED_ANNOTATION = "gitopsd.dev/shared"
"""``"true"`` on an object several apps apply identically (the namespace gitopsd creates for
them): it gets no ownership label, so apps do not take it from each other and prune never
deletes it."""


def is_shared(obj: Manifest) -> bool:
    """Whether ``obj`` is a shared object (see :data:`SHARED_ANNOTATION`): applied, never owned."""
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(SHARED_ANNOTATION) == "true"


_IMPERSONATION: dict[str, tuple[AppConfig, list[tuple[str, str]] | None]] = {}
"""app name -> (the app's config, its headers): every request of an apply asks (see impersonation)."""


def impersonation(app: AppConfig) -> list[tuple[str, str]] | None:
    """The ``Impersonate-User``/``Impersonate-Group`` headers of the app's policy, or None.

    Remembered per app config (configs are not changed once loaded; a reload makes new ones):
    the policy is a pydantic private attribute, slow to read, and every object's apply asks.
    """
    memo = _IMPERSONATION.get(app.name)
    if memo is not None and memo[0] is app:
        return memo[1]
    effective = app.effective_policy
    headers: list[tuple[str, str]] | None = None
    user = effective[1].impersonate_user if effective is not None else None
    if effective is not None and user:
        rules = effective[1]
        headers = [("Impersonate-User", user)] + [
            ("Impersonate-Group", group) for group in rules.impersonate_groups
        ]
    if len(_IMPERSONATION) >= 100_000:
        _IMPERSONATION.clear()  # bounded: apps renamed or removed over a long life
    _IMPERSONATION[app.name] = (app, headers)
    return headers


def prepare(
    app: AppConfig, manifest: Manifest, resource: Resource, instance: str = DEFAULT_INSTANCE
) -> Manifest:
    """``manifest`` ready to apply: namespace, labels, owner, no read-only metadata or status.

    Only the top level and ``metadata`` are copied; the rest is shared with ``manifest``
    (rendered manifests are read-only everywhere), which keeps one copy of each spec in memory.
    """
    obj = {key: value for key, value in manifest.items() if key != "status"}
    meta = obj["metadata"] = dict(obj.get("metadata") or {})
    for read_only in _READ_ONLY_META:
        meta.pop(read_only, None)
    if resource.namespaced:
        if not meta.get("namespace"):
            meta["namespace"] = app.namespace
    else:
        meta.pop("namespace", None)
    labels = {**(meta.get("labels") or {}), MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    if not is_shared(obj):
        labels[APP_LABEL] = app.name
        meta["annotations"] = {
            **(meta.get("annotations") or {}),
            OWNER_ANNOTATION: owner_value(instance, app.name),
        }
    meta["labels"] = labels
    return without_ignored(app, obj)  # ignore_differences: neither compared nor applied


_CONFLICT_WITH = re.compile(r'conflict with "(?P<manager>[^"]+)"(?: with subresource "(?P<sub>[^"]+)")?')


def _cause_type(cause: dict[str, Any]) -> str:
    # StatusCause's Go field Type is serialised as "reason"; accept "type" as well.
    return str(cause.get("reason") or cause.get("type") or "")


def conflict_summary(error: ApiError) -> str:
    """``kubectl: .spec.replicas, .data.x`` from a FieldManagerConflict Status."""
    causes = error.details.get("causes") or []
    by_manager: dict[str, list[str]] = {}
    for cause in causes:
        if _cause_type(cause) != "FieldManagerConflict":
            continue
        match = _CONFLICT_WITH.search(str(cause.get("message", "")))
        if match is None:
            continue
        manager = match["manager"] + (f" (subresource {match['sub']})" if match["sub"] else "")
        by_manager.setdefault(manager, []).append(str(cause.get("field", "")))
    if not by_manager:
        return error.message
    return "; ".join(f"{m}: {', '.join(f)}" for m, f in by_manager.items())


def _is_conflict(error: ApiError) -> bool:
    causes = error.details.get("causes") or []
    return error.status == 409 and (
        any(_cause_type(c) == "FieldManagerConflict" for c in causes)
        or "Apply failed with" in error.message
    )


def _fields_left_to_ignored_managers(error: ApiError, desired: Manifest) -> list[list[str]] | None:
    """The conflicting fields when every conflict is with a manager ``desired`` ignores, else None."""
    managers = ignored_managers(desired)
    if not managers or not _is_conflict(error):
        return None
    paths: list[list[str]] = []
    for cause in error.details.get("causes") or []:
        if _cause_type(cause) != "FieldManagerConflict":
            continue
        match = _CONFLICT_WITH.search(str(cause.get("message", "")))
        field_path = str(cause.get("field", ""))
        if match is None or not is_ignored_manager(match["manager"], managers):
            return None
        if not field_path.startswith(".") or "[" in field_path:
            return None
        paths.append(field_path[1:].split("."))
    return paths or None


def _is_immutable(error: ApiError) -> bool:
    return error.status == 422 and "immutable" in error.message.lower()


def _existed_before(answer: Manifest | None) -> bool:
    """Whether an apply answer shows earlier writers (so the apply changed, not created, it)."""
    fields = ((answer or {}).get("metadata") or {}).get("managedFields") or []
    return any(f.get("manager") != FIELD_MANAGER for f in fields)


class Applier:
    """Applies prepared objects to one cluster and records the answers in its cache."""

    def __init__(self, client: KubeClient, cache: LiveCache):
        self.client = client
        self.cache = cache

    async def _patch(self, app: AppConfig, d: Desired, *, force: bool, dry_run: bool) -> Manifest:
        query = [("fieldManager", FIELD_MANAGER), ("force", "true" if force else "false")]
        if dry_run:
            query.append(("dryRun", "All"))
        meta = d.obj["metadata"]
        answer: Manifest = await self.client.request(
            "PATCH",
            d.resource.object_path(str(meta.get("namespace") or ""), str(meta["name"])),
            query=query,
            body=d.obj,
            content_type=APPLY_PATCH,
            # The namespace create_namespace adds is gitopsd's, not the app's (never owned, never
            # pruned; the policy allowed it): a tenant needs no right to create namespaces.
            headers=None if is_shared(d.obj) else impersonation(app),
        )
        return answer

    async def apply(
        self, app: AppConfig, d: Desired, live: Manifest | None, *, dry_run: bool
    ) -> ObjectResult:
        """Apply one object; failures are returned as ``failed`` results (Unreachable propagates)."""
        action = "created" if live is None else "changed"
        notes: list[str] = []
        trimmed = without_managed(d.obj, live)  # ignore_differences.managers: their fields are theirs
        if trimmed is not d.obj:
            d = Desired(trimmed, d.resource)
        try:
            try:
                answer = await self._patch(app, d, force=False, dry_run=dry_run)
            except ApiError as exc:
                left_to = _fields_left_to_ignored_managers(exc, d.obj)
                if left_to is not None:
                    # Conflicts only with managers the app ignores: drop those fields, take nothing over.
                    d = Desired(without_fields(d.obj, left_to), d.resource)
                    answer = await self._patch(app, d, force=False, dry_run=dry_run)
                elif _is_conflict(exc):
                    summary = conflict_summary(exc)
                    if not app.force_conflicts:
                        return ObjectResult(
                            d.ref,
                            "failed",
                            Health.UNKNOWN,
                            f"conflict with another field manager: {summary}",
                        )
                    notes.append(f"took over fields from {summary}")
                    answer = await self._patch(app, d, force=True, dry_run=dry_run)
                elif _is_immutable(exc) and app.replace_on_immutable and live is not None:
                    notes.append("replaced: an immutable field changed")
                    if not dry_run:
                        await self._delete_and_wait(
                            app, d, live, deadline=time.monotonic() + app.timeout
                        )
                    answer = (
                        await self._patch(app, d, force=app.force_conflicts, dry_run=dry_run)
                        if not dry_run
                        else live
                    )
                else:
                    raise
        except ApiError as exc:
            message = str(exc)
            if _is_immutable(exc):
                message += " (set replace_on_immutable = true to recreate the object)"
            return ObjectResult(d.ref, "failed", Health.UNKNOWN, message)
        if live is None and (notes or _existed_before(answer)):
            action = "changed"  # it existed without our labels (adopted)
        if not dry_run and answer:
            answer.setdefault("apiVersion", d.resource.api_version)
            answer.setdefault("kind", d.resource.kind)
            self.cache.record(answer)
        return ObjectResult(d.ref, action, Health.PROGRESSING, "; ".join(notes))

    async def _delete_and_wait(
        self, app: AppConfig, d: Desired, live: Manifest, *, deadline: float
    ) -> None:
        headers = impersonation(app)
        meta = d.obj["metadata"]
        path = d.resource.object_path(str(meta.get("namespace") or ""), str(meta["name"]))
        body: dict[str, Any] = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": "Foreground",
        }
        uid = (live.get("metadata") or {}).get("uid")
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            await self.client.request("DELETE", path, body=body, headers=headers)
        except ApiError as exc:
            if exc.status != 404:
                raise
        attempt = 0
        while time.monotonic() < deadline:
            try:
                await self.client.request("GET", path, headers=headers)
            except ApiError as exc:
                if exc.status == 404:
                    self.cache.forget(d.key)
                    return
                raise
            await anyio.sleep(backoff(attempt, base=0.05, cap=1.0) + 0.02)
            attempt += 1
        raise ApiError(408, "Timeout", f"{d.ref} was not deleted in time to be recreated")
