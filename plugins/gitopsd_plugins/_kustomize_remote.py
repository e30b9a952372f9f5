"""Finding remote references in a tree of kustomizations, before kustomize runs.

kustomize fetches ``resources``/``bases``/``components`` given as URLs or git targets
(``https://...``, ``github.com/org/repo//dir?ref=v1``, ``git@host:repo``, ``git::...``), and
its file loader fetches any other path given as an http(s) URL (patches, generator files,
``helmCharts[].repo``). From a bastion that is server-side request forgery (cloud metadata,
internal services), so the kustomize renderer refuses them unless ``allow_remote = true``.
The check walks every kustomization reachable through local directories, cycles included.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gitopsd.core.lazyre import LazyPattern

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_URL = LazyPattern(r"^\s*(?:[a-z][a-z0-9+.-]*://|git::|git@|gh:|ssh:)", re.I)
# kustomize's "hosted git" shorthand: github.com/org/repo//path?ref=x, gitlab.com/..., host.tld/org/repo.git
_HOSTED = LazyPattern(r"^[a-z0-9-]+(\.[a-z0-9-]+)+(:\d+)?/.+", re.I)
_TARGET_KEYS = ("resources", "bases", "components")


def _is_remote(value: str, base: Path) -> bool:
    if _URL.match(value):
        return True
    if _HOSTED.match(value) and not (base / value).exists():
        return True
    return "?ref=" in value or "//" in value.split("?")[0].lstrip("/")


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


def remote_references(root: Path, *, limit: int = 500) -> list[str]:
    """Every remote reference in the kustomization at ``root`` and the local ones it includes.

    Each is described as ``<file relative to root>: <key>: <value>``. Unreadable or
    malformed kustomizations are left for kustomize to report.
    """
    found: list[str] = []
    # YAML loads on first use, not at start (docs/operations.md, "Start-up and readiness")
    import yaml

    from gitopsd.core.yamlio import SafeLoader

    seen: set[Path] = set()
    pending = [root]
    real_root = root.resolve()
    while pending and len(seen) < limit:
        directory = pending.pop()
        real = directory.resolve()
        if real in seen:
            continue
        seen.add(real)
        file = next((directory / n for n in KUSTOMIZATION_FILES if (directory / n).is_file()), None)
        if file is None:
            continue
        try:
            doc = yaml.load(file.read_text(encoding="utf-8", errors="replace"), Loader=SafeLoader)
        except (yaml.YAMLError, OSError, RecursionError):
            continue
        if not isinstance(doc, dict):
            continue
        try:
            shown = str(file.resolve().relative_to(real_root))
        except ValueError:
            shown = str(file)
        for key in _TARGET_KEYS:
            entries = doc.get(key) or []
            for i, entry in enumerate(entries if isinstance(entries, list) else []):
                if not isinstance(entry, str):
                    continue
                if _is_remote(entry, directory):
                    found.append(f"{shown}: {key}[{i}]: {entry}")
                elif (directory / entry).is_dir():
                    pending.append(directory / entry)
        for where, value in _strings({k: v for k, v in doc.items() if k not in _TARGET_KEYS}, ""):
            if _URL.match(value) and not value.lstrip().startswith("file://"):
                found.append(f"{shown}: {where}: {value}")
    return found
