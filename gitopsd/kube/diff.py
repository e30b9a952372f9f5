"""Unified YAML diffs of desired vs live, restricted to the fields gitopsd applies."""

from __future__ import annotations

import difflib

import yaml

from gitopsd.core.models import Manifest, ObjectRef
from gitopsd.kube.normalize import comparable, matches, project


def _dump(obj: object) -> list[str]:
    if obj is None:
        return []
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False).splitlines(keepends=True)


SECRET_FIELDS = ("data", "stringData")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _mask_secret(after: Manifest, before: Manifest | None) -> tuple[Manifest, Manifest | None]:
    """Secret values never shown, masked as Argo CD does: a run of ``+`` per distinct value.

    Equal values get the same run and different values different lengths (8, 9, ...), so a
    reader sees which keys changed without learning anything about the values. The
    last-applied annotation (which would hold the values) is masked too.
    """
    lengths: dict[object, int] = {}

    def mask(value: object) -> str:
        return "+" * lengths.setdefault(value, 8 + len(lengths))

    def masked(obj: Manifest) -> Manifest:
        out = dict(obj)
        for name in SECRET_FIELDS:
            if isinstance(out.get(name), dict):
                out[name] = {k: mask(v) for k, v in sorted(out[name].items())}
        annotations = (out.get("metadata") or {}).get("annotations")
        if isinstance(annotations, dict) and LAST_APPLIED in annotations:
            out["metadata"] = {**out["metadata"], "annotations": {**annotations, LAST_APPLIED: "++++++++"}}
        return out

    new = masked(after)
    return new, masked(before) if before is not None else None


def object_diff(desired: Manifest, live: Manifest | None) -> str:
    """A unified diff (``live`` -> ``desired``), "" when the live object matches."""
    if matches(desired, live):
        return ""
    wanted = comparable(desired)
    shown_live = project(live, wanted) if live is not None else None
    if desired.get("kind") == "Secret" and desired.get("apiVersion") == "v1":
        wanted, shown_live = _mask_secret(wanted, shown_live)
    ref = ObjectRef.from_manifest(desired)
    header = {"apiVersion": desired.get("apiVersion"), "kind": desired.get("kind")}
    before = _dump({**header, **shown_live}) if isinstance(shown_live, dict) else []
    after = _dump({**header, **wanted})
    label = str(ref)
    lines = difflib.unified_diff(before, after, fromfile=f"live/{label}", tofile=f"desired/{label}")
    return "".join(lines)
