"""Helpers shared by the renderers that run a program (kustomize, helm template)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio.to_thread

from gitopsd import Manifest, RenderError
from gitopsd.yamlio import load_all


def flatten(doc: Any, where: str) -> list[Manifest]:
    """One object, or the items of a ``*List``; anything else is a RenderError naming ``where``."""
    if not isinstance(doc, dict):
        raise RenderError(f"{where}: expected a Kubernetes object (a mapping), got {type(doc).__name__}")
    kind = doc.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
        items = doc.get("items") or []
        if not isinstance(items, list):
            raise RenderError(f"{where}: {kind}.items must be a list")
        out: list[Manifest] = []
        for i, item in enumerate(items):
            out.extend(flatten(item, f"{where} item {i}"))
        return out
    if not kind or not doc.get("apiVersion"):
        raise RenderError(f"{where}: object has no kind or apiVersion")
    return [doc]


def _parse(text: str, where: str) -> list[Manifest]:
    manifests: list[Manifest] = []
    for index, doc in load_all(text, where):
        manifests.extend(flatten(doc, f"{where}: document {index}"))
    return manifests


async def parse_stream(output: bytes, where: str) -> list[Manifest]:
    """Parse a program's YAML output (alias bombs bounded) in a worker thread."""
    try:
        text = output.decode("utf-8")
    except UnicodeDecodeError:
        raise RenderError(f"{where}: output is not UTF-8") from None
    return await anyio.to_thread.run_sync(_parse, text, where)


def inside(root: Path, relative: str, option: str) -> Path:
    """``root / relative``, refusing paths that leave ``root`` (also through symlinks)."""
    candidate = (root / relative).resolve()
    real_root = root.resolve()
    if candidate != real_root and real_root not in candidate.parents:
        raise RenderError(f"{option}: {relative!r} points outside the artifact")
    return candidate
