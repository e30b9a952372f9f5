"""What a Kustomize or Helm render reads outside its own directory (``Renderer.inputs``).

Both walk the files that can name other directories (kustomization files, ``Chart.yaml``)
and return the directories they reach, relative to the artifact directory. The scan is
conservative: any string that climbs out with ``..`` counts as an input, and a file that
cannot be read or parsed makes the answer "cannot tell" (None, so the app renders).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gitopsd import RenderError

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_MAX_DIRS = 200


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


class _Unknown(Exception):
    """A file that cannot be read or parsed: the inputs cannot be told."""


def _load(path: Path) -> Any:
    """The one document of ``path``, with the limits of a render (an alias bomb in a
    kustomization must not cost more here than in kustomize)."""
    # YAML loads on first use, not at start (docs/operations.md, "Start-up and readiness")
    from gitopsd.core.yamlio import load_all

    docs = load_all(path.read_text(encoding="utf-8"), path.name)
    if len(docs) > 1:
        raise _Unknown(str(path))
    return docs[0][1] if docs else None


def _closure(root: Path, references: Callable[[str], list[str]]) -> set[str] | None:
    """``.`` plus every path outside ``root`` reachable through ``references(rel)`` (which
    returns the paths, relative to ``root``, that the directory ``rel`` refers to); None when
    a file cannot be read or the walk grows past ``_MAX_DIRS`` directories."""
    inputs = {"."}
    todo = ["."]
    seen: set[str] = set()
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        if len(seen) > _MAX_DIRS:
            return None
        try:
            targets = references(rel)
        except _Unknown:
            return None
        for target in targets:
            if target == ".." or target.startswith("../"):
                inputs.add(target)
            todo.append(target)
    return inputs


def _read(path: Path) -> Any:
    try:
        return _load(path)
    except (OSError, UnicodeDecodeError, RenderError):
        raise _Unknown(str(path)) from None


def kustomize_inputs(root: Path) -> set[str] | None:
    """``.`` plus every directory or file outside ``root`` its kustomizations refer to (recursively)."""

    def references(rel: str) -> list[str]:
        directory = root / rel
        found = next((directory / n for n in KUSTOMIZATION_FILES if (directory / n).is_file()), None)
        if found is None:
            return []
        out = []
        for text in _strings(_read(found)):
            text = text.strip()
            if not text or "\n" in text or "://" in text or text.startswith("/"):
                continue
            target = posixpath.normpath(posixpath.join(rel, text))
            if target == ".." or target.startswith("../") or (target != rel and (root / target).is_dir()):
                out.append(target)  # outside the app, or a base, overlay or component to follow
        return out

    return _closure(root, references)


def helm_inputs(chart: Path) -> set[str] | None:
    """``.`` plus the local (``file://``) dependencies of the chart named in ``Chart.yaml``, recursively."""

    def references(rel: str) -> list[str]:
        path = chart / rel / "Chart.yaml"
        if not path.is_file():
            return []
        doc = _read(path)
        deps = doc.get("dependencies") if isinstance(doc, dict) else None
        out = []
        for dep in deps if isinstance(deps, list) else []:
            repo = str(dep.get("repository") or "") if isinstance(dep, dict) else ""
            if repo.startswith("file://"):
                out.append(posixpath.normpath(posixpath.join(rel, repo.removeprefix("file://"))))
        return out

    return _closure(chart, references)
