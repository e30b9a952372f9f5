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


def _mask_secret(after: Manifest, before: Manifest | None) -> tuple[Manifest, Manifest | None]:
    """Secret values never printed: ``***``, marked ``(before)``/``(after)`` where they differ (as kubectl does)."""
    new_data = dict(after.get("data") or {})
    old_data = dict((before or {}).get("data") or {})
    for key in set(new_data) | set(old_data):
        same = new_data.get(key) == old_data.get(key)
        if key in new_data:
            new_data[key] = "***" if same else "*** (after)"
        if key in old_data:
            old_data[key] = "***" if same else "*** (before)"
    after = {**after, "data": new_data}
    if before is not None:
        before = {**before, "data": old_data}
    return after, before


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
