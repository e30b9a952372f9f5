"""The cache budget (``daemon.cache_max_bytes``): the plugin caches stay under a size.

Plugins keep their caches under one root (``daemon.cache_dir``). A cache directory a plugin
registered with ``PluginContext.cache_dir(name, evictable=True)`` holds immutable,
content-addressed entries (an extracted git tree, chart or OCI layer) that the plugin
re-creates when missing. When the whole root is over budget, entries that no app uses are
deleted, least recently used first; an entry is in use while it holds the newest artifact
of a source, and for ``grace`` seconds after it was last handed out (a render may still
read it). Git mirrors and other caches count toward the size but are never evicted.

At start, ``.extract-*`` (and ``.evict-*``) directories left by a kill -9 in the middle of
an extraction are removed.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import anyio
import anyio.to_thread
import structlog

log = structlog.get_logger("gitopsd.cache")

LEFTOVER_PREFIXES = (".extract-", ".evict-", ".init-")


def tree_size(path: Path) -> int:
    """Bytes of the files under ``path`` (symlinks not followed; vanished files ignored)."""
    total = 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        else:
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:  # vanished meanwhile, or not a directory
            continue
    return total


class Sweep:
    """What one pass found and did."""

    __slots__ = ("evicted", "size_after", "size_before")

    def __init__(self, size_before: int = 0) -> None:
        self.size_before = size_before
        self.size_after = 0
        self.evicted: list[Path] = []


class CacheBudget:
    """Keeps ``root`` under ``max_bytes`` by evicting unused entries of the evictable caches.

    Args:
        root: The cache root (``daemon.cache_dir``).
        max_bytes: The budget; 0 turns eviction off (the size is still measured).
        evictable: The names of the evictable cache directories (``PluginContext.evictable``).
        in_use: The path of every source's current artifact (never evicted).
        handed_out: Artifact path -> monotonic time it was last handed out.
        grace: Seconds an entry stays after it was last handed out.
        clock: ``time.monotonic`` (tests pass their own).
    """

    def __init__(
        self,
        root: Path,
        max_bytes: int,
        evictable: Callable[[], Iterable[str]],
        in_use: Callable[[], Iterable[Path]],
        handed_out: Callable[[], Mapping[Path, float]] = dict,
        *,
        grace: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.root = root
        self.max_bytes = max_bytes
        self._evictable = evictable
        self._in_use = in_use
        self._handed_out = handed_out
        self.grace = grace
        self._clock = clock
        self.size = 0
        self.evictions = 0
        self._entry_sizes: dict[Path, tuple[tuple[int, int], int]] = {}
        """Evictable entry -> ((inode, mtime), bytes): entries are immutable, so each is walked once."""

    def clean_leftovers(self) -> list[Path]:
        """Remove half-extracted directories (``.extract-*``) and the like; what was removed."""
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        for cache in self.root.iterdir():
            if not cache.is_dir() or cache.is_symlink():
                continue
            for entry in cache.iterdir():
                if entry.name.startswith(LEFTOVER_PREFIXES):
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
                    removed.append(entry)
        if removed:
            log.info("removed leftovers of interrupted extractions", count=len(removed))
        return removed

    def sweep(self) -> Sweep:
        """Measure the cache; evict least recently used unused entries while it is over budget."""
        result = Sweep(size_before=self._measure())
        size = result.size_before
        if self.max_bytes and size > self.max_bytes:
            for entry, entry_size in self._candidates():
                if size <= self.max_bytes:
                    break
                doomed = entry.with_name(f".evict-{entry.name}")
                try:
                    os.rename(entry, doomed)  # gone at once for readers; deleted below
                except OSError:
                    continue
                shutil.rmtree(doomed, ignore_errors=True)
                size -= entry_size
                result.evicted.append(entry)
            if size > self.max_bytes:
                log.warning("cache over budget: everything left is in use", size=size, budget=self.max_bytes)
        self.size = result.size_after = size
        self.evictions += len(result.evicted)
        if result.evicted:
            log.info("cache entries evicted", count=len(result.evicted), size_before=result.size_before, size_after=size)
        return result

    def _candidates(self) -> list[tuple[Path, int]]:
        """Evictable entries no app uses, least recently used first, with their sizes."""
        now_mono, now_wall = self._clock(), time.time()
        newest = {Path(os.path.abspath(p)) for p in self._in_use()}
        last_out = {Path(os.path.abspath(p)): now_wall - (now_mono - at) for p, at in self._handed_out().items()}
        entries: list[tuple[float, Path]] = []
        for name in self._evictable():
            cache = self.root / name
            if not cache.is_dir():
                continue
            for entry in cache.iterdir():
                if entry.name.startswith(".") or not entry.is_dir() or entry.is_symlink():
                    continue
                if any(p == entry or entry in p.parents for p in newest):
                    continue  # an app's current artifact
                last = max([entry.stat().st_mtime] + [at for p, at in last_out.items()
                                                      if p == entry or entry in p.parents])
                if now_wall - last < self.grace:
                    continue  # handed out (or made) lately: a render may still read it
                entries.append((last, entry))
        entries.sort()
        return [(entry, self._entry_size(entry)) for _, entry in entries]

    def _measure(self) -> int:
        """Bytes under the root. An evictable entry is immutable once made, so its size is
        remembered (by inode and mtime) instead of walking it again: at 10,000 apps in 10
        repositories, walking every extracted tree at every sweep was 15 % of the daemon's
        samples. Mirrors, other caches and half-made ``.extract-*`` entries are walked."""
        evictable = set(self._evictable())
        sizes: dict[Path, tuple[tuple[int, int], int]] = {}
        total = 0
        try:
            caches = list(os.scandir(self.root))
        except OSError:
            return 0
        for cache in caches:
            try:
                if not cache.is_dir(follow_symlinks=False):
                    total += cache.stat(follow_symlinks=False).st_size
                    continue
                if cache.name not in evictable:
                    total += tree_size(Path(cache.path))
                    continue
                with os.scandir(cache.path) as entries:
                    for entry in entries:
                        path = Path(entry.path)
                        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                            total += tree_size(path) if entry.is_dir(follow_symlinks=False) \
                                else entry.stat(follow_symlinks=False).st_size
                            continue
                        st = entry.stat(follow_symlinks=False)
                        stamp = (st.st_ino, st.st_mtime_ns)
                        known = self._entry_sizes.get(path)
                        size = known[1] if known is not None and known[0] == stamp else tree_size(path)
                        sizes[path] = (stamp, size)
                        total += size
            except OSError:  # vanished meanwhile
                continue
        self._entry_sizes = sizes
        return total

    def _entry_size(self, entry: Path) -> int:
        known = self._entry_sizes.get(entry)
        return known[1] if known is not None else tree_size(entry)

    async def run(self, interval: float, on_sweep: Callable[[CacheBudget], None] | None = None) -> None:
        """Sweep every ``interval`` seconds in a worker thread, forever (the daemon cancels it)."""
        while True:
            try:
                await anyio.to_thread.run_sync(self.sweep)
                if on_sweep is not None:
                    on_sweep(self)
            except Exception:
                log.exception("cache sweep failed")
            await anyio.sleep(interval)
