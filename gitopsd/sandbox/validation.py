"""Validation and defaulting of built-in kinds, with the real API server's messages."""

from __future__ import annotations

import json
import re
from typing import Any

from .kinds import ResourceType
from .openapi import Path, show_path
from .openapi import unknown_fields as unknown_fields_deep
from .status import ApiError, bad_request, invalid

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME_KINDS = {"Namespace", "Service"}
_PATH_SEGMENT_KINDS = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
_WORKLOADS = {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"}

Cause = tuple[str, str, str]


def _name_causes(rt: ResourceType, name: str) -> list[Cause]:
    if rt.kind in _PATH_SEGMENT_KINDS:
        if name in (".", "..") or "/" in name or "%" in name:
            return [("FieldValueInvalid", "metadata.name", f'Invalid value: "{name}": may not contain \'/\' or \'%\'')]
        return []
    if rt.kind in _LABEL_NAME_KINDS:
        if len(name) > 63 or not _LABEL.match(name):
            return [("FieldValueInvalid", "metadata.name",
                     f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower case '
                     "alphanumeric characters or '-', and must start and end with an alphanumeric character "
                     "(e.g. 'my-name',  or '123-abc', regex used for validation is "
                     "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")]
        return []
    if len(name) > 253 or not _SUBDOMAIN.match(name):
        return [("FieldValueInvalid", "metadata.name",
                 f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                 "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character "
                 "(e.g. 'example.com', regex used for validation is "
                 "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")]
    return []


def _pod_spec_causes(spec: Any, prefix: str) -> list[Cause]:
    if not isinstance(spec, dict):
        return [("FieldValueRequired", prefix, "Required value")]
    containers = spec.get("containers")
    if not containers:
        return [("FieldValueRequired", f"{prefix}.containers", "Required value")]
    causes: list[Cause] = []
    seen = set()
    for i, c in enumerate(containers):
        if not isinstance(c, dict):
            causes.append(("FieldValueInvalid", f"{prefix}.containers[{i}]", "Invalid value: must be an object"))
            continue
        name = c.get("name")
        if not name:
            causes.append(("FieldValueRequired", f"{prefix}.containers[{i}].name", "Required value"))
        elif name in seen:
            causes.append(("FieldValueDuplicate", f"{prefix}.containers[{i}].name", f'Duplicate value: "{name}"'))
        seen.add(name)
        if not c.get("image"):
            causes.append(("FieldValueRequired", f"{prefix}.containers[{i}].image", "Required value"))
    return causes


def _selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _go_map(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


MAX_DATA_BYTES = 1024 * 1024
"""ConfigMaps and Secrets hold at most 1 MiB of data, as the real API server enforces."""


def _data_size_causes(obj: dict[str, Any]) -> list[Cause]:
    size = 0
    for field in ("data", "binaryData", "stringData"):
        for key, value in (obj.get(field) or {}).items():
            size += len(str(key)) + len(str(value))
    if size > MAX_DATA_BYTES:
        return [("FieldValueTooLong", "", f"Too long: must have at most {MAX_DATA_BYTES} bytes")]
    return []


def validate(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Raise 422 Invalid for a bad object (``old`` is the stored object on update)."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    causes: list[Cause] = []
    if not name:
        causes.append(("FieldValueRequired", "metadata.name", "Required value: name or generateName is required"))
    else:
        causes += _name_causes(rt, name)
    if rt.crd or causes:
        if causes:
            raise invalid(rt.kind, rt.group, name, causes)
        return
    spec = obj.get("spec") or {}
    old_spec = (old or {}).get("spec") or {}
    if rt.kind in _WORKLOADS:
        selector = spec.get("selector")
        template = spec.get("template") or {}
        if not selector:
            causes.append(("FieldValueRequired", "spec.selector", "Required value"))
        else:
            labels = (template.get("metadata") or {}).get("labels") or {}
            if not _selector_matches(selector, labels):
                causes.append(("FieldValueInvalid", "spec.template.metadata.labels",
                               f"Invalid value: {_go_map(labels)}: `selector` does not match template `labels`"))
            if old is not None and old_spec.get("selector") != selector:
                causes.append(("FieldValueInvalid", "spec.selector",
                               f"Invalid value: {_go_map(selector)}: field is immutable"))
        causes += _pod_spec_causes(template.get("spec"), "spec.template.spec")
        if rt.kind == "StatefulSet" and old is not None:
            for fld in ("serviceName", "volumeClaimTemplates", "podManagementPolicy"):
                if old_spec.get(fld) != spec.get(fld):
                    causes.append(("FieldValueForbidden", "spec",
                                   "Forbidden: updates to statefulset spec for fields other than 'replicas', "
                                   "'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' "
                                   "and 'minReadySeconds' are forbidden"))
                    break
    elif rt.kind == "Job":
        causes += _pod_spec_causes((spec.get("template") or {}).get("spec"), "spec.template.spec")
        if old is not None:
            if old_spec.get("template") != spec.get("template"):
                causes.append(("FieldValueInvalid", "spec.template",
                               "Invalid value: field is immutable"))
            if old_spec.get("selector") != spec.get("selector"):
                causes.append(("FieldValueInvalid", "spec.selector", "Invalid value: field is immutable"))
    elif rt.kind in ("ConfigMap", "Secret"):
        causes += _data_size_causes(obj)
    elif rt.kind == "CronJob":
        if not spec.get("schedule"):
            causes.append(("FieldValueRequired", "spec.schedule", "Required value"))
    elif rt.kind == "Pod":
        causes += _pod_spec_causes(spec, "spec")
    elif rt.kind == "Service" and old is not None:
        old_ip, ip = old_spec.get("clusterIP"), spec.get("clusterIP")
        if old_ip and ip != old_ip:
            causes.append(("FieldValueInvalid", "spec.clusterIP", f'Invalid value: "{ip}": field is immutable'))
    elif rt.kind in ("ConfigMap", "Secret") and old is not None and old.get("immutable"):
        if any(old.get(f) != obj.get(f) for f in ("data", "binaryData")):
            causes.append(("FieldValueForbidden", "data", "Forbidden: field is immutable when `immutable` is set"))
    elif rt.kind in ("RoleBinding", "ClusterRoleBinding") and old is not None:
        if old.get("roleRef") != obj.get("roleRef"):
            raise invalid(rt.kind, rt.group, name,
                          [("FieldValueInvalid", "roleRef", "Invalid value: cannot change roleRef")])
    if causes:
        raise invalid(rt.kind, rt.group, name, causes)


def unknown_fields(rt: ResourceType, obj: dict[str, Any]) -> list[Path]:
    """Unknown top-level fields of a built-in object (when no schema is at hand)."""
    if rt.crd:
        return []
    return [(k,) for k in obj if k not in rt.extra_fields]


def duplicate_fields(body: bytes) -> list[str]:
    """Keys that appear twice in one JSON object of a request body (Strict validation)."""
    dups: list[str] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                dups.append(k)
            seen.add(k)
        return dict(pairs)

    try:
        json.loads(body, object_pairs_hook=hook)
    except ValueError:
        return []
    return dups


def _drop(obj: Any, path: Path) -> None:
    for p in path[:-1]:
        obj = obj[p]
    obj.pop(path[-1], None)


def check_fields(rt: ResourceType, obj: dict[str, Any], mode: str | None, warnings: list[str],
                 schema: tuple[dict[str, Any], dict[str, Any]] | None = None,
                 duplicates: list[str] | None = None) -> None:
    """fieldValidation Strict/Warn/Ignore for undeclared and duplicate fields.

    With ``schema`` (the kind's OpenAPI schema and definitions) every level is checked,
    otherwise only the top level. Strict rejects (400, the real server's "strict decoding
    error"); Warn drops the fields and adds warnings; Ignore drops them silently.
    """
    unknown = unknown_fields_deep(obj, *schema) if schema is not None else unknown_fields(rt, obj)
    if not unknown and not duplicates:
        return
    mode = mode or "Warn"
    if mode not in ("Strict", "Warn", "Ignore"):
        raise bad_request(f"fieldValidation must be one of Ignore, Warn, Strict (got {mode!r})")
    if mode == "Strict":
        text = ", ".join([f'duplicate field "{d}"' for d in duplicates or ()]
                         + [f'unknown field "{show_path(u)}"' for u in unknown])
        raise bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                          f"strict decoding error: {text}")
    for u in unknown:
        _drop(obj, u)
        if mode == "Warn":
            warnings.append(f'unknown field "{show_path(u)}"')


def check_type_meta(rt: ResourceType, obj: Any) -> None:
    """The body is an object of this kind (apiVersion/kind may be omitted)."""
    if not isinstance(obj, dict):
        raise bad_request("the body of the request is not a JSON object")
    kind = obj.get("kind")
    if kind and kind != rt.kind:
        raise bad_request(f"the API version in the data ({obj.get('apiVersion')}) does not match the expected API version ({rt.api_version}) or kind {kind!r} is not {rt.kind!r}")
    if not isinstance(obj.get("metadata", {}), dict):
        raise bad_request("metadata must be an object")


def forbidden(message: str) -> ApiError:
    """403 Forbidden."""
    return ApiError(403, "Forbidden", message)
