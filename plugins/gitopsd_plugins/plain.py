"""The ``plain`` renderer: every .yaml/.yml/.json file under the artifact path.

Multi-document files are split, ``kind: List`` (and ``*List``) objects are
flattened, empty documents are skipped, and the order is deterministic (sorted
relative paths, then document order). Errors name the file and document index.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio.to_thread
from pydantic import Field

import gitopsd
from gitopsd import AppConfig, Artifact, Manifest, Options, Renderer, RenderError
from gitopsd.core.yamlio import YamlBudget, manifests_from_yaml

from ._render import refuse_escaping_symlinks

SUFFIXES = (".yaml", ".yml", ".json")


class PlainOptions(Options):
    recursive: bool = Field(True, description="Read subdirectories too.")
    exclude: list[str] = Field(default_factory=list, description="Glob patterns (relative paths) to skip.")


def _files(root: Path, recursive: bool, exclude: list[str]) -> list[Path]:
    if not root.is_dir():
        raise RenderError(f"plain: path {root} does not exist or is not a directory")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for name in filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root)
            if name.endswith(SUFFIXES) and not any(rel.match(p) for p in exclude):
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def render_directory(root: Path, recursive: bool = True, exclude: list[str] | None = None) -> list[Manifest]:
    """All manifests under ``root``: the whole plain renderer, synchronous."""
    if root.is_dir():
        refuse_escaping_symlinks(root, "plain")
    manifests: list[Manifest] = []
    budget = YamlBudget()  # one for the whole directory: many small bombs add up
    for path in _files(root, recursive, exclude or []):
        rel = path.relative_to(root).as_posix()
        try:
            if budget.bytes + path.stat().st_size > budget.max_bytes:  # before reading it
                budget.add_bytes(path.stat().st_size, rel)
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise RenderError(f"{rel}: not UTF-8 text") from None
        manifests.extend(manifests_from_yaml(text, rel, budget))
    return manifests


class PlainRenderer(Renderer):
    """See the module docstring."""

    Options = PlainOptions

    def inputs(self, artifact: Artifact, app: AppConfig) -> set[str] | None:
        return {"."}

    async def render(self, artifact: Artifact, app: AppConfig) -> list[Manifest]:
        return await anyio.to_thread.run_sync(
            render_directory, artifact.path, self.options.recursive, list(self.options.exclude)
        )


@gitopsd.hookimpl
def gitopsd_renderer_types() -> dict[str, type[Renderer]]:
    return {"plain": PlainRenderer}
