"""The API verbs over the store: get, list, create, update, patch/apply, delete, deletecollection.

Independent of HTTP: :class:`Api` methods take a :class:`Call` and return
``(code, body)``; errors are raised as :class:`~gitopsd.sandbox.status.ApiError`.
"""

from __future__ import annotations

import base64
import json
import random
import string
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from . import managed
from .defaults import Allocator, apply_defaults
from .kinds import Registry, ResourceType
from .patch import json_patch, merge_patch, strategic_merge
from .selectors import parse_field_selector, parse_label_selector
from .status import (
    STRICT_DECODING,
    ApiError,
    already_exists,
    bad_request,
    conflict,
    invalid_patch,
    method_not_allowed,
    not_found,
    status_success,
    unsupported_media_type,
)
from .store import Store, clone
from .validation import check_fields, check_type_meta, duplicate_fields, forbidden, validate

_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"

_NS_KEY = "namespaces"


_NOW: tuple[int, str] = (0, "")


def now_iso() -> str:
    """The current time as the API server writes it (RFC 3339, seconds)."""
    global _NOW
    second = int(time.time())
    if _NOW[0] != second:  # formatted once per second: every write stamps times
        _NOW = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _NOW[1]


@dataclass
class Call:
    """One parsed API request."""

    rt: ResourceType
    namespace: str | None
    name: str | None = None
    subresource: str = ""
    params: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str = ""
    user_agent: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def dry_run(self) -> bool:
        return self.params.get("dryRun") == "All"

    @property
    def manager(self) -> str:
        """fieldManager, or the user agent's program name as the real server derives it."""
        fm = self.params.get("fieldManager")
        if fm:
            return fm
        return (self.user_agent.split("/", 1)[0] or "unknown")[:128]


def _decode_json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise bad_request(f"error decoding request body: {exc}") from None


def _decode_apply(body: bytes) -> Any:
    """An apply patch body: YAML, or JSON (what kubectl and client libraries send).

    JSON is YAML too, but ``json`` reads it several times faster than the YAML loader, and
    with the JSON number rules the real server uses for it.
    """
    if body.lstrip()[:1] == b"{":
        try:
            return json.loads(body)
        except ValueError:
            pass  # e.g. YAML flow style that is not JSON: the YAML loader decides
    try:
        return yaml.load(body or b"", Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise bad_request(f"error decoding YAML: {exc}") from None


def _strip_meta(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without resourceVersion, for no-op detection."""
    meta = dict(obj.get("metadata") or {})
    meta.pop("resourceVersion", None)
    return dict(obj, metadata=meta)


def _writable(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored object as the apply path may change it, without a deep copy of all of it.

    managed.apply copies what it changes (the rest stays shared with the stored object, which
    is never changed), but defaults are filled in place in the spec: the spec is copied.
    """
    spec = stored.get("spec")
    return dict(stored, spec=clone(spec)) if isinstance(spec, dict) else dict(stored)


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Api:
    """The semantics of the Kubernetes API over a :class:`Store`."""

    def __init__(self, store: Store, registry: Registry, seed: int = 0) -> None:
        self.store = store
        self.registry = registry
        self.alloc = Allocator()
        self._rand = random.Random(seed)
        self.on_namespace_delete: Callable[[str], None] | None = None
        self.schemas: Callable[[ResourceType], tuple[dict[str, Any], dict[str, Any]] | None] | None = None
        """The OpenAPI schema of a kind, for fieldValidation (set by the Sandbox)."""

    # -- helpers -------------------------------------------------------------
    def _out(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        if obj.get("apiVersion") != rt.api_version:
            return dict(obj, apiVersion=rt.api_version)
        return obj

    def _get(self, c: Call) -> dict[str, Any]:
        assert c.name is not None
        obj = self.store.get(c.rt.key, c.namespace or "", c.name)
        if obj is None:
            raise not_found(c.rt.plural, c.rt.group, c.name)
        return obj

    def _require_namespace(self, c: Call, creating: bool) -> None:
        if not c.rt.namespaced:
            return
        ns = self.store.get(_NS_KEY, "", c.namespace or "")
        if ns is None:
            raise not_found("namespaces", "", c.namespace or "")
        if creating and ns["metadata"].get("deletionTimestamp"):
            raise forbidden(
                f'{c.rt.plural}{"." + c.rt.group if c.rt.group else ""} "{c.name}" is forbidden: unable to create '
                f"new content in namespace {c.namespace} because it is being terminated"
            )

    def _check_identity(self, c: Call, obj: dict[str, Any]) -> dict[str, Any]:
        check_type_meta(c.rt, obj)
        meta = obj.setdefault("metadata", {})
        if c.rt.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and body_ns != c.namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = c.namespace
        else:
            meta.pop("namespace", None)
        if c.name is not None and meta.get("name") and meta["name"] != c.name:
            raise bad_request("the name of the object ({}) does not match the name on the URL ({})".format(meta["name"], c.name))
        if c.name is not None:
            meta["name"] = c.name
        obj["apiVersion"] = c.rt.api_version
        obj["kind"] = c.rt.kind
        return meta

    def _check_fields(self, c: Call, obj: dict[str, Any]) -> None:
        mode = c.params.get("fieldValidation")
        schema = self.schemas(c.rt) if self.schemas is not None else None
        dups = duplicate_fields(c.body) if mode == "Strict" and c.body[:1] == b"{" else None
        check_fields(c.rt, obj, mode, c.warnings, schema, dups)

    # -- reads ---------------------------------------------------------------
    def get(self, c: Call) -> tuple[int, dict[str, Any]]:
        """GET one object (or its status / scale)."""
        obj = self._get(c)
        if c.subresource == "scale":
            return 200, self._scale_of(c.rt, obj)
        return 200, self._out(c.rt, obj)

    def list_objects(self, c: Call) -> tuple[int, dict[str, Any]]:
        """LIST with label/field selectors and limit/continue."""
        items, rv, cont, remaining = self.select(c)
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if cont:
            meta["continue"] = cont
            meta["remainingItemCount"] = remaining
        return 200, {
            "kind": f"{c.rt.kind}List",
            "apiVersion": c.rt.api_version,
            "metadata": meta,
            "items": [self._out(c.rt, o) for o in items],
        }

    def predicate(self, c: Call) -> tuple[Callable[[dict[str, Any]], bool] | None, str | None]:
        """The combined label and field selector of a list or watch."""
        labels = parse_label_selector(c.params.get("labelSelector"))
        fields, exact = parse_field_selector(c.params.get("fieldSelector"), c.rt.plural)
        if labels and fields:
            return (lambda o: labels(o) and fields(o)), exact
        return labels or fields, exact

    def select(self, c: Call) -> tuple[list[dict[str, Any]], int, str, int]:
        """Matching objects, the list resourceVersion, the continue token and remaining count."""
        pred, exact = self.predicate(c)
        limit = int(c.params.get("limit") or 0)
        after: tuple[str, str] | None = None
        rv = self.store.rv
        token = c.params.get("continue")
        if token:
            try:
                data = json.loads(base64.urlsafe_b64decode(token.encode()))
                after = (data["ns"], data["name"])
                rv = int(data["rv"])
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid: incorrect encoded start resourceVersion") from None
            if rv < self.store.window_start:
                raise ApiError(410, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
        if exact is not None and c.namespace is not None:
            one = self.store.get(c.rt.key, c.namespace, exact)
            candidates = [one] if one is not None else []
        else:
            candidates = self.store.iter(c.rt.key, c.namespace)  # type: ignore[assignment]
        out: list[dict[str, Any]] = []
        remaining = 0
        last: tuple[str, str] | None = None
        for obj in candidates:
            meta = obj["metadata"]
            ident = (meta.get("namespace", ""), meta["name"])
            if after is not None and ident <= after:
                continue
            if pred is not None and not pred(obj):
                continue
            if limit and len(out) >= limit:
                remaining += 1
                continue
            out.append(obj)
            last = ident
        cont = ""
        if remaining and last is not None:
            cont = base64.urlsafe_b64encode(
                json.dumps({"rv": rv, "ns": last[0], "name": last[1]}).encode()
            ).decode()
        return out, self.store.rv, cont, remaining

    # -- create --------------------------------------------------------------
    def create(self, c: Call) -> tuple[int, dict[str, Any]]:
        """POST: create (409 AlreadyExists)."""
        if c.subresource or c.name:
            raise method_not_allowed()
        obj = _decode_json(c.body)
        if not isinstance(obj, dict):
            raise bad_request("the body of the request is not a JSON object")
        meta = self._check_identity(c, obj)
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(self._rand.choice(string.ascii_lowercase + string.digits) for _ in range(5))
            meta["name"] = meta["generateName"] + suffix
        c.name = meta.get("name") or ""
        self._check_fields(c, obj)
        if meta.get("managedFields"):
            meta.pop("managedFields")
        self._prepare_new(c, obj)  # obj is freshly decoded: no copy needed
        managed.record_update(None, obj, c.manager, c.rt.api_version, c.rt.status, c.rt.crd, now_iso())
        return 201, self._commit_create(c, obj)

    def _prepare_new(self, c: Call, obj: dict[str, Any]) -> None:
        if c.rt.status:
            obj.pop("status", None)
        validate(c.rt, obj, None)
        self._require_namespace(c, creating=True)
        if self.store.get(c.rt.key, c.namespace or "", c.name or "") is not None:
            raise already_exists(c.rt.plural, c.rt.group, c.name or "")
        meta = obj["metadata"]
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(k, None)
        meta["uid"] = str(uuid.UUID(int=self._rand.getrandbits(128), version=4))
        meta["creationTimestamp"] = now_iso()
        meta["generation"] = 1
        apply_defaults(c.rt, obj, None, self.alloc)
        if c.rt.kind == "Namespace":
            obj["status"] = {"phase": "Active"}

    def _commit_create(self, c: Call, obj: dict[str, Any]) -> dict[str, Any]:
        if c.dry_run:
            return self._out(c.rt, obj)
        return self._out(c.rt, self.store.put(c.rt.key, obj, "ADDED"))

    # -- update --------------------------------------------------------------
    def update(self, c: Call) -> tuple[int, dict[str, Any]]:
        """PUT: replace (409 Conflict on a stale resourceVersion)."""
        if not c.name:
            raise method_not_allowed()
        body = _decode_json(c.body)
        if not isinstance(body, dict):
            raise bad_request("the body of the request is not a JSON object")
        old = self._get(c)
        if c.subresource == "scale":
            return self._write_scale(c, old, body)
        self._check_identity(c, body)
        self._check_fields(c, body)
        rv = body["metadata"].get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(c.rt.plural, c.rt.group, c.name,
                           "the object has been modified; please apply your changes to the latest version and try again")
        return 200, self._finish(c, old, body, record=True)  # body is freshly decoded: no copy needed

    def _finish(self, c: Call, old: dict[str, Any], new: dict[str, Any], record: bool) -> dict[str, Any]:
        """Common tail of every update: metadata rules, status split, defaults, validation, write."""
        rt = c.rt
        meta = new.setdefault("metadata", {})
        old_meta = old["metadata"]
        for k in ("uid", "creationTimestamp", "name", "namespace", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if k in old_meta:
                meta[k] = old_meta[k]
            else:
                meta.pop(k, None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        if c.subresource == "status":
            status = new.get("status")
            new = dict(clone(old), metadata=meta)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
            # a status write keeps the object's metadata, except managedFields
            meta.update({k: v for k, v in old_meta.items() if k != "managedFields"})
            for k in list(meta):
                if k not in old_meta and k != "managedFields":
                    meta.pop(k)
        elif rt.status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        apply_defaults(rt, new, old, self.alloc)
        validate(rt, new, old)
        if record:
            managed.record_update(old, new, c.manager, rt.api_version, rt.status, rt.crd, now_iso(),
                                  c.subresource if c.subresource in ("status", "scale") else "")
        if _spec_part(new) != _spec_part(old):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        else:
            meta["generation"] = old_meta.get("generation", 1)
        if _strip_meta(new) == _strip_meta(old):
            return self._out(rt, old)  # no-op: no new resourceVersion, no event
        if c.dry_run:
            return self._out(rt, new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._out(rt, self._remove(rt, new))
        return self._out(rt, self.store.put(rt.key, new, "MODIFIED"))

    # -- patch / apply ---------------------------------------------------------
    def patch(self, c: Call) -> tuple[int, dict[str, Any]]:
        """PATCH: merge, JSON, strategic merge, or server-side apply."""
        if not c.name:
            raise method_not_allowed()
        ctype = c.content_type.split(";")[0].strip()
        if ctype == APPLY:
            return self._apply(c)
        if ctype not in (MERGE, JSON_PATCH, STRATEGIC):
            raise unsupported_media_type(ctype)
        if ctype == STRATEGIC and c.rt.crd:
            raise unsupported_media_type(ctype)
        body = _decode_json(c.body)
        old = self._get(c)
        current: dict[str, Any] = self._scale_of(c.rt, old) if c.subresource == "scale" else old
        if ctype == MERGE:
            if not isinstance(body, dict):
                raise bad_request("merge patch must be a JSON object")
            new = merge_patch(current, body)
        elif ctype == JSON_PATCH:
            new = json_patch(current, body)
        else:
            if not isinstance(body, dict):
                raise bad_request("strategic merge patch must be a JSON object")
            new = strategic_merge(current, body, (), c.rt.crd)
        if not isinstance(new, dict):
            raise bad_request("patch did not produce an object")
        if c.subresource == "scale":
            return self._write_scale(c, old, new)
        new = clone(new)
        self._check_identity(c, new)
        try:
            self._check_fields(c, new)
        except ApiError as exc:
            if exc.code == 400 and STRICT_DECODING in str(exc):
                raise invalid_patch(body, exc) from None
            raise
        rv = (new.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(c.rt.plural, c.rt.group, c.name,
                           "the object has been modified; please apply your changes to the latest version and try again")
        return 200, self._finish(c, old, new, record=True)

    def _apply(self, c: Call) -> tuple[int, dict[str, Any]]:
        if not c.params.get("fieldManager"):
            raise ApiError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
                           {"group": "meta.k8s.io", "kind": "PatchOptions",
                            "causes": [{"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"}]})
        applied = _decode_apply(c.body)
        if not isinstance(applied, dict):
            raise bad_request("the body of an apply patch must be an object")
        if not applied.get("apiVersion") or not applied.get("kind"):
            raise bad_request("invalid object type: apiVersion and kind must be set in an apply patch")
        if (applied.get("metadata") or {}).get("managedFields"):
            raise bad_request("metadata.managedFields must be nil")
        if c.subresource == "scale":
            raise method_not_allowed("apply is not supported on the scale subresource")
        self._check_identity(c, applied)
        self._check_fields(c, applied)
        applied["metadata"].pop("resourceVersion", None)
        force = c.params.get("force", "") in ("1", "t", "T", "true", "TRUE", "True")
        sub = "status" if c.subresource == "status" else ""
        old = self.store.get(c.rt.key, c.namespace or "", c.name or "")
        if old is None:
            if c.subresource:
                raise not_found(c.rt.plural, c.rt.group, c.name or "")
            # managed.apply builds new containers from ``applied`` (no copy needed); ``old`` is stored, so copied
            obj = managed.apply(None, applied, c.manager, force, c.rt.api_version,
                                c.rt.status, c.rt.crd, now_iso())
            self._prepare_new(c, obj)
            return 201, self._commit_create(c, obj)
        new = managed.apply(_writable(old), applied, c.manager, force, c.rt.api_version,
                            c.rt.status, c.rt.crd, now_iso(), sub)
        return 200, self._finish(c, old, new, record=False)

    # -- scale -------------------------------------------------------------------
    def _scale_of(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        if not rt.scale:
            raise not_found(rt.plural, rt.group, obj["metadata"]["name"])
        meta = obj["metadata"]
        spec = obj.get("spec") or {}
        sel = spec.get("selector") or {}
        selector = ",".join(f"{k}={v}" for k, v in (sel.get("matchLabels") or {}).items())
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta},
            "spec": {"replicas": spec.get("replicas", 0)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0), "selector": selector},
        }

    def _write_scale(self, c: Call, old: dict[str, Any], scale: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not c.rt.scale:
            raise not_found(c.rt.plural, c.rt.group, c.name or "")
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(c.rt.plural, c.rt.group, c.name or "",
                           "the object has been modified; please apply your changes to the latest version and try again")
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(422, "Invalid", f'Scale.autoscaling "{c.name}" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0')
        new = clone(old)
        new.setdefault("spec", {})["replicas"] = replicas
        result = self._finish(c, old, new, record=True)
        return 200, self._scale_of(c.rt, result)

    # -- delete ------------------------------------------------------------------
    def delete(self, c: Call) -> tuple[int, dict[str, Any]]:
        """DELETE one object (finalizers and namespaces delay the removal)."""
        if c.subresource:
            raise method_not_allowed()
        options = _decode_json(c.body) if c.body.strip() else {}
        if not isinstance(options, dict):
            options = {}
        if (options.get("dryRun") or []) == ["All"]:
            c.params["dryRun"] = "All"
        policy = options.get("propagationPolicy") or c.params.get("propagationPolicy") or "Background"
        obj = self._get(c)
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != obj["metadata"].get("uid"):
            raise conflict(c.rt.plural, c.rt.group, c.name or "", f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {obj['metadata'].get('uid')}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != obj["metadata"].get("resourceVersion"):
            raise conflict(c.rt.plural, c.rt.group, c.name or "", f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, ResourceVersion in object meta: {obj['metadata'].get('resourceVersion')}")
        return 200, self._delete_obj(c, obj, policy)

    def _delete_obj(self, c: Call, obj: dict[str, Any], policy: str) -> dict[str, Any]:
        rt = c.rt
        meta = obj["metadata"]
        if c.dry_run:
            return self._out(rt, obj)
        if rt.kind == "Namespace" and not rt.crd:
            if meta.get("deletionTimestamp"):
                return self._out(rt, obj)
            new = clone(obj)
            new["metadata"]["deletionTimestamp"] = now_iso()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["status"] = {"phase": "Terminating"}
            stored = self.store.put(rt.key, new, "MODIFIED")
            if self.on_namespace_delete:
                self.on_namespace_delete(meta["name"])
            return self._out(rt, stored)
        finalizers = list(meta.get("finalizers") or [])
        if policy == "Foreground" and "foregroundDeletion" not in finalizers and self.store.dependents(meta.get("uid", "")):
            finalizers.append("foregroundDeletion")
        if finalizers:
            if meta.get("deletionTimestamp"):
                return self._out(rt, obj)
            new = clone(obj)
            new["metadata"]["deletionTimestamp"] = now_iso()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["metadata"]["finalizers"] = finalizers
            stored = self.store.put(rt.key, new, "MODIFIED")
            if "foregroundDeletion" in finalizers:
                self._collect(meta.get("uid", ""))
                self._release_foreground(rt, stored)
            return self._out(rt, stored)
        gone = self._remove(rt, obj, orphan=policy == "Orphan")
        return self._out(rt, gone)

    def _release_foreground(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        if self.store.dependents(meta.get("uid", "")):
            return
        new = clone(obj)
        new["metadata"]["finalizers"] = [f for f in meta.get("finalizers") or [] if f != "foregroundDeletion"]
        if new["metadata"]["finalizers"]:
            self.store.put(rt.key, new, "MODIFIED")
        else:
            self._remove(rt, new)

    def _remove(self, rt: ResourceType, obj: dict[str, Any], orphan: bool = False) -> dict[str, Any]:
        gone = self.store.remove(rt.key, obj)
        if not orphan:
            self._collect(obj["metadata"].get("uid", ""))
        return gone

    def _collect(self, uid: str) -> None:
        """Garbage-collect dependents of a deleted owner (background propagation)."""
        for key, ns, name in self.store.dependents(uid):
            dep = self.store.get(key, ns, name)
            types = self.registry.by_key(key)
            if dep is None or not types:
                continue
            refs = [r for r in dep["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            if refs:
                new = clone(dep)
                new["metadata"]["ownerReferences"] = refs
                self.store.put(key, new, "MODIFIED")
            else:
                self._delete_obj(Call(types[0], ns or None, name), dep, "Background")

    def delete_collection(self, c: Call) -> tuple[int, dict[str, Any]]:
        """DELETE on a collection: every object matching the selectors."""
        options = _decode_json(c.body) if c.body.strip() else {}
        if isinstance(options, dict) and (options.get("dryRun") or []) == ["All"]:
            c.params["dryRun"] = "All"
        policy = (options or {}).get("propagationPolicy") or c.params.get("propagationPolicy") or "Background"
        if c.rt.kind == "Namespace":
            raise method_not_allowed()
        pred, _ = self.predicate(c)
        items = [o for o in self.store.iter(c.rt.key, c.namespace) if pred is None or pred(o)]
        out = [self._delete_obj(c, o, policy) for o in items]
        return 200, {"kind": f"{c.rt.kind}List", "apiVersion": c.rt.api_version,
                     "metadata": {"resourceVersion": str(self.store.rv)}, "items": out}

    # -- used by controllers -----------------------------------------------------------
    def finalize_namespace(self, name: str) -> None:
        """Delete everything in a terminating namespace, then the namespace."""
        for key, obj in list(self.store.namespaced_in(name)):
            current = self.store.get(key, name, obj["metadata"]["name"])
            if current is None:
                continue
            if current["metadata"].get("finalizers"):
                if not current["metadata"].get("deletionTimestamp"):
                    new = clone(current)
                    new["metadata"]["deletionTimestamp"] = now_iso()
                    self.store.put(key, new, "MODIFIED")
                continue
            self.store.remove(key, current)
        ns = self.store.get(_NS_KEY, "", name)
        if ns is None:
            return
        if any(True for _ in self.store.namespaced_in(name)):
            return  # objects with finalizers remain: the namespace stays Terminating
        self.store.remove(_NS_KEY, ns)

    def deleted_ok(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """The Status a real server returns for some deletes."""
        meta = obj["metadata"]
        return status_success({"name": meta["name"], "group": rt.group, "kind": rt.plural, "uid": meta.get("uid")})
