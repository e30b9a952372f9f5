"""Unified YAML diffs of desired vs live, restricted to the fields gitopsd applies."""

from __future__ import annotations

import difflib

import yaml

from gitopsd.kube.normalize import comparable, matches, project
from gitopsd.models import Manifest, ObjectRef


def _dump(obj: object) -> list[str]:
    if obj is None:
        return []
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False).splitlines(keepends=True)


def object_diff(desired: Manifest, live: Manifest | None) -> str:
    """A unified diff (``live`` -> ``desired``), "" when the live object matches."""
    if matches(desired, live):
        return ""
    wanted = comparable(desired)
    shown_live = project(live, wanted) if live is not None else None
    ref = ObjectRef.from_manifest(desired)
    header = {"apiVersion": desired.get("apiVersion"), "kind": desired.get("kind")}
    before = _dump({**header, **shown_live}) if isinstance(shown_live, dict) else []
    after = _dump({**header, **wanted})
    label = str(ref)
    lines = difflib.unified_diff(before, after, fromfile=f"live/{label}", tofile=f"desired/{label}")
    return "".join(lines)
