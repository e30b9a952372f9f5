"""The extracted tree of a new commit, built from the previous commit's (git source).

A push usually changes a few files of a repository that many apps share. Extracting the
whole new tree (``git archive`` of every file) costs time in proportion to the repository;
instead the new tree's directory is made from the previous one's:

1. ``git diff-tree -r`` lists the entries that differ between the two root trees;
2. every other file is hard-linked from the previous directory (the trees are immutable,
   content-addressed and read-only to every renderer: they copy before writing), symlinks
   are re-created as they are, and directories left empty by deletions are not made;
3. the changed entries come from ``git archive <new tree> -- <paths>`` through the same safe
   extractor as a whole tree (no ``..``, absolute paths, devices, hard links, writing
   through symlinks, or a member replacing another);
4. every symlink of the result is resolved for real (a chain may leave the tree), the
   size and member limits count the whole tree, and the directory is renamed into place.

The previous tree is the one the repository extracted last; after a restart, the newest
tree in the cache that the repository's mirror holds (:func:`newest_known_tree`). Anything
unusual (a submodule, a very large change, a previous directory that is gone or cannot be
read, git failing) answers "cannot": the caller extracts the whole tree.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import anyio.to_thread

from gitopsd import SourceError
from gitopsd.core.lazyre import LazyPattern

from ._archive import check_symlinks, extract_tar_stream_into
from ._gitcmd import GitRunner

MAX_CHANGES = 2000
"""More changed entries than this: extract the whole tree (it is no longer a small change)."""
MAX_PATH_BYTES = 100_000
"""The changed paths go to ``git archive`` as arguments: above this many bytes, the whole tree."""
_TREE_ID = LazyPattern(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_ZERO_MODE = "000000"
_GITLINK = "160000"


@dataclass(frozen=True)
class Change:
    """One entry of ``git diff-tree -r --raw``: a file, symlink or submodule that differs."""

    path: str
    old_mode: str
    new_mode: str

    @property
    def existed(self) -> bool:
        return self.old_mode != _ZERO_MODE

    @property
    def exists(self) -> bool:
        return self.new_mode != _ZERO_MODE


def parse_raw_diff(out: bytes) -> list[Change] | None:
    """The entries of ``git diff-tree -r -z`` output; None when one is a submodule (gitlink)
    or the output is not understood."""
    fields = out.split(b"\0")
    if fields and fields[-1] == b"":
        fields.pop()
    if len(fields) % 2:
        return None
    changes = []
    for meta, raw_path in zip(fields[::2], fields[1::2], strict=True):
        parts = meta.decode("ascii", "replace").split(" ")
        if len(parts) != 5 or not parts[0].startswith(":") or not raw_path:
            return None
        old_mode, new_mode = parts[0][1:], parts[1]
        if _GITLINK in (old_mode, new_mode):
            return None  # git archive writes a submodule as an empty directory: leave it to it
        changes.append(Change(os.fsdecode(raw_path), old_mode, new_mode))
    return changes


@dataclass
class LinkCopy:
    """What :func:`link_copy` made: entries (files, symlinks, directories), bytes of the regular
    files, and the symlinks (relative paths), to be checked once the tree is complete."""

    entries: int = 0
    bytes: int = 0
    symlinks: list[str] = field(default_factory=list)


def link_copy(src: Path, dst: Path, skip: set[str]) -> LinkCopy:
    """Make ``dst`` (which exists, empty) a copy of ``src`` with hard links, leaving out the
    relative paths in ``skip`` and the directories that only held skipped entries.

    Any error (the source vanishing meanwhile, a file system without hard links, a link
    count limit) raises OSError: the caller then extracts the whole tree instead.
    """
    made = LinkCopy()

    def copy_dir(source: str, target: str, rel: str) -> bool:
        """Copy one directory's entries; False when none was copied (it held only skipped ones)."""
        copied = False
        with os.scandir(source) as entries:
            for entry in entries:
                name = f"{rel}{entry.name}"
                if name in skip:
                    continue
                out = os.path.join(target, entry.name)
                if entry.is_dir(follow_symlinks=False):
                    os.mkdir(out)
                    if not copy_dir(entry.path, out, name + "/"):
                        os.rmdir(out)  # git trees have no empty directory: every child changed
                        continue
                elif entry.is_symlink():
                    os.symlink(os.readlink(entry.path), out)
                    made.symlinks.append(name)
                elif entry.is_file(follow_symlinks=False):
                    made.bytes += entry.stat(follow_symlinks=False).st_size
                    os.link(entry.path, out, follow_symlinks=False)
                else:
                    raise OSError(f"{entry.path}: not a file, directory or symlink")
                made.entries += 1
                copied = True
        return copied

    copy_dir(os.fspath(src), os.fspath(dst), "")
    return made


async def build_from_previous(
    git: GitRunner,
    mirror: Path,
    previous: Path,
    old_tree: str,
    new_tree: str,
    dest: Path,
    *,
    where: str,
    max_bytes: int,
) -> int | None:
    """Make ``dest`` (the extraction of ``new_tree``) from ``previous`` (that of ``old_tree``).

    Returns the bytes of its files, or None when it cannot (the caller extracts the whole
    tree). Raises SourceError when the new entries are unsafe or over the limits, as a whole
    extraction would.
    """
    try:
        out = await git("diff-tree", "-r", "-z", "--no-renames", old_tree, new_tree, cwd=mirror, what="git diff-tree")
    except SourceError:
        return None
    changes = parse_raw_diff(out.stdout)
    if changes is None or len(changes) > MAX_CHANGES:
        return None
    added = [c.path for c in changes if c.exists]
    if sum(len(os.fsencode(p)) + 1 for p in added) > MAX_PATH_BYTES:
        return None
    skip = {c.path for c in changes if c.existed}
    return await anyio.to_thread.run_sync(_build, git, mirror, previous, new_tree, dest, skip, added, where, max_bytes)


async def newest_known_tree(git: GitRunner, mirror: Path, trees: Path, exclude: str) -> str | None:
    """The most recently extracted tree under ``trees`` that ``mirror`` holds (None if none).

    After a restart nothing says which tree was extracted last for a repository: this finds
    a base for :func:`build_from_previous` with one directory listing and one ``git
    cat-file --batch-check`` for the newest few trees.
    """
    names = await anyio.to_thread.run_sync(_newest_trees, trees, exclude)
    if not names:
        return None
    try:
        out = await git("cat-file", "--batch-check=%(objectname) %(objecttype)", cwd=mirror,
                        stdin="\n".join(names).encode() + b"\n", what="git cat-file")
    except SourceError:
        return None
    known = {line.split(" ")[0] for line in out.stdout.decode("ascii", "replace").splitlines() if line.endswith(" tree")}
    return next((name for name in names if name in known), None)


def _newest_trees(trees: Path, exclude: str, limit: int = 32) -> list[str]:
    found = []
    try:
        with os.scandir(trees) as entries:
            for entry in entries:
                if entry.name != exclude and _TREE_ID.match(entry.name) and entry.is_dir(follow_symlinks=False):
                    found.append((entry.stat(follow_symlinks=False).st_mtime, entry.name))
    except OSError:
        return []
    return [name for _, name in sorted(found, reverse=True)[:limit]]


def _build(git: GitRunner, mirror: Path, previous: Path, new_tree: str, dest: Path, skip: set[str],
           added: list[str], where: str, max_bytes: int) -> int | None:
    if not previous.is_dir():
        return None
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
    try:
        try:
            kept = link_copy(previous, tmp, skip)
        except OSError:
            return None
        total = kept.bytes
        if added:
            sink: Callable[[IO[bytes]], tuple[int, int]] = lambda stream: extract_tar_stream_into(  # noqa: E731
                stream, tmp, where=where, max_bytes=max_bytes, already=(kept.bytes, kept.entries)
            )
            try:
                total, _ = git.archive_sync(new_tree, mirror, sink, added)
            except SourceError as exc:
                if exc.reason in ("UnsafeArchive", "TooLarge"):
                    raise  # the whole tree would be refused just the same
                return None
        elif total > max_bytes:
            raise SourceError(f"{where}: archive expands to more than {max_bytes} bytes (limit)", reason="TooLarge")
        check_symlinks(tmp, kept.symlinks, where)  # new ones were checked; old ones may now chain out
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():  # somebody else finished first: theirs is identical
                raise
        return total
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
