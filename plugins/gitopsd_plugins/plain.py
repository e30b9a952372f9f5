"""The ``plain`` renderer: every .yaml/.yml/.json file under the artifact path.

Multi-document files are split, ``kind: List`` (and ``*List``) objects are
flattened, empty documents are skipped, and the order is deterministic (sorted
relative paths, then document order). Errors name the file and document index.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import anyio.to_thread
from pydantic import Field

import gitopsd
from gitopsd import AppConfig, Artifact, Manifest, Options, Renderer, RenderError

from ._render import INLINE_BYTES

SUFFIXES = (".yaml", ".yml", ".json")


class PlainOptions(Options):
    recursive: bool = Field(True, description="Read subdirectories too.")
    exclude: list[str] = Field(default_factory=list, description="Glob patterns (relative paths) to skip.")


def _scan(root: Path, recursive: bool, exclude: list[str], top: list[os.DirEntry[str]] | None = None) -> list[tuple[str, str]]:
    """``(relative POSIX path, path)`` of the manifest files under ``root``, sorted by relative path.

    One walk does two jobs: it refuses the first symlink anywhere under ``root`` (hidden
    directories included) that resolves outside it, as :func:`refuse_escaping_symlinks`
    does, and it lists the files to read: ``.yaml``/``.yml``/``.json`` names, in non-hidden
    subdirectories when ``recursive``, not matching ``exclude``. Symlinked directories are
    checked, never descended into. Directory entries say their type, so a plain file costs
    no stat call, and ``root`` is resolved only when there is a symlink to check. ``top``:
    ``root``'s entries, when the caller has listed them already.
    """
    real: list[Path] = []  # root, resolved once, on the first symlink
    found: list[tuple[str, str]] = []

    def walk(directory: str, rel_dir: str, collect: bool, entries: list[os.DirEntry[str]] | None = None) -> None:
        if entries is None:
            with os.scandir(directory) as it:
                entries = list(it)
        dirs = [e for e in entries if e.is_dir()]
        files = [e for e in entries if not e.is_dir()]
        for entry in dirs + files:  # the order of os.walk: the first bad symlink is the one named
            if entry.is_symlink():
                if not real:
                    real.append(root.resolve())
                target = Path(entry.path).resolve()
                if target != real[0] and real[0] not in target.parents:
                    raise RenderError(f"plain: {rel_dir}{entry.name} is a symlink to {os.readlink(entry.path)}, "
                                      "outside the app's directory")
        if collect:
            for entry in files:
                rel = rel_dir + entry.name
                if entry.name.endswith(SUFFIXES) and not (exclude and any(PurePosixPath(rel).match(p) for p in exclude)):
                    found.append((rel, entry.path))
        for entry in dirs:
            if not entry.is_symlink():
                sub = collect and recursive and not entry.name.startswith(".")
                walk(entry.path, f"{rel_dir}{entry.name}/", sub)

    try:
        walk(os.fspath(root), "", True, top)
    except (FileNotFoundError, NotADirectoryError) as exc:
        if exc.filename != os.fspath(root):  # not root itself: something changed under us
            raise
        raise RenderError(f"plain: path {root} does not exist or is not a directory") from None
    finally:
        # walk calls itself through its closure cell: emptying the cell frees it now, not at
        # the next cyclic collection.
        walk = None  # type: ignore[assignment]
    found.sort()
    return found


def render_directory(root: Path, recursive: bool = True, exclude: list[str] | None = None) -> list[Manifest]:
    """All manifests under ``root``: the whole plain renderer, synchronous."""
    return _render_files(_scan(root, recursive, exclude or []))


def _render_files(files: list[tuple[str, str]]) -> list[Manifest]:
    """The manifests of ``files`` (``(relative path, path)``, in order), one YAML budget for all."""
    # YAML loads on first use, not at start (docs/operations.md, "Start-up and readiness")
    from gitopsd.core.yamlio import YamlBudget, manifests_from_yaml

    manifests: list[Manifest] = []
    budget = YamlBudget()  # one for the whole directory: many small bombs add up
    for rel, path in files:
        with open(path, "rb", buffering=0) as file:  # read whole: no buffer object, no isatty check
            size = os.fstat(file.fileno()).st_size
            if budget.bytes + size > budget.max_bytes:  # before reading it
                budget.add_bytes(size, rel)
            data = file.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise RenderError(f"{rel}: not UTF-8 text") from None
        manifests.extend(manifests_from_yaml(text, rel, budget))
    return manifests


INLINE_FILES = 16


def small_listing(root: Path) -> list[os.DirEntry[str]] | None:
    """``root``'s entries when it holds no subdirectory, at most :data:`INLINE_FILES` entries
    and :data:`INLINE_BYTES` of manifests (rendered on the event loop, in about a
    millisecond), else None.

    One ``scandir`` (the render walks the same entries) and a ``stat`` per manifest; any
    doubt (an error, a symlink to a directory) says no.
    """
    total = 0
    try:
        with os.scandir(root) as it:
            entries = []
            for count, entry in enumerate(it):
                if count >= INLINE_FILES or entry.is_dir():
                    return None
                if entry.name.endswith(SUFFIXES):
                    total += entry.stat().st_size
                    if total > INLINE_BYTES:
                        return None
                entries.append(entry)
    except OSError:
        return None
    return entries


class PlainRenderer(Renderer):
    """See the module docstring."""

    Options = PlainOptions

    def inputs(self, artifact: Artifact, app: AppConfig) -> set[str] | None:
        return {"."}

    async def render(self, artifact: Artifact, app: AppConfig) -> list[Manifest]:
        root, recursive, exclude = artifact.path, self.options.recursive, list(self.options.exclude)
        top = small_listing(root)
        if top is not None:  # cheaper than the trip to a thread (see INLINE_BYTES)
            return _render_files(_scan(root, recursive, exclude, top))
        return await anyio.to_thread.run_sync(render_directory, root, recursive, exclude)


@gitopsd.hookimpl
def gitopsd_renderer_types() -> dict[str, type[Renderer]]:
    return {"plain": PlainRenderer}
