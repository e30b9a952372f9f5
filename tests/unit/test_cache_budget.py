"""The cache budget (issue 13): LRU eviction of unused entries, leftovers removed at start."""

from __future__ import annotations

import os
import time
from pathlib import Path

from gitopsd.engine.cache_budget import CacheBudget, tree_size


def entry(root: Path, cache: str, name: str, size: int, age: float) -> Path:
    path = root / cache / name
    (path / "sub").mkdir(parents=True)
    (path / "sub" / "file").write_bytes(b"x" * size)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_evicts_least_recently_used_unused_entries_until_under_budget(tmp_path: Path) -> None:
    mirror = tmp_path / "git" / "abc.git"
    mirror.mkdir(parents=True)
    (mirror / "pack").write_bytes(b"m" * 5000)  # not evictable: counted, never deleted
    oldest = entry(tmp_path, "git-trees", "t1", 1000, age=5000)
    in_use = entry(tmp_path, "git-trees", "t0", 1000, age=9000)  # oldest of all, but an app's current artifact
    middle = entry(tmp_path, "oci", "sha256-1", 1000, age=3000)
    recent = entry(tmp_path, "oci", "sha256-2", 1000, age=2000)
    handed = entry(tmp_path, "helm", "sha256-3", 1000, age=8000)  # old, but handed out a minute ago
    fresh = entry(tmp_path, "helm", "sha256-4", 1000, age=10)  # just extracted
    now = [1000.0]
    budget = CacheBudget(tmp_path, 8200, lambda: {"git-trees", "oci", "helm"}, lambda: [in_use / "sub"],
                         lambda: {handed / "sub": 940.0}, grace=600, clock=lambda: now[0])
    assert tree_size(tmp_path) == 11000
    result = budget.sweep()
    assert result.size_before == 11000
    assert result.evicted == [oldest, middle, recent]
    assert result.size_after == budget.size == 8000 == tree_size(tmp_path)
    assert mirror.exists() and in_use.exists() and handed.exists() and fresh.exists()
    assert budget.evictions == 3
    assert not [p for p in tmp_path.rglob(".evict-*")]


def test_unlimited_budget_only_measures(tmp_path: Path) -> None:
    entry(tmp_path, "oci", "a", 100, age=9999)
    budget = CacheBudget(tmp_path, 0, lambda: {"oci"}, list)
    assert budget.sweep().evicted == [] and budget.size == 100


def test_leftovers_of_interrupted_extractions_are_removed(tmp_path: Path) -> None:
    keep = entry(tmp_path, "git-trees", "tree", 10, age=0)
    leftovers = [entry(tmp_path, "git-trees", ".extract-k2j3", 10, age=0),
                 entry(tmp_path, "helm", ".extract-zz", 10, age=0), entry(tmp_path, "oci", ".evict-sha256-1", 10, age=0)]
    budget = CacheBudget(tmp_path, 0, lambda: {"git-trees"}, list)
    assert sorted(budget.clean_leftovers()) == sorted(leftovers)
    assert keep.exists() and not any(p.exists() for p in leftovers)


def test_an_evictable_entry_is_walked_once_a_mirror_every_time(tmp_path: Path) -> None:
    tree = entry(tmp_path, "git-trees", "t1", 1000, age=0)
    mirror = tmp_path / "git" / "abc.git"
    mirror.mkdir(parents=True)
    (mirror / "pack").write_bytes(b"m" * 500)
    budget = CacheBudget(tmp_path, 0, lambda: {"git-trees"}, list)
    assert budget.sweep().size_after == 1500
    # Entries are immutable: a change deep inside one (which gitopsd never makes) is not seen...
    (tree / "sub" / "file").write_bytes(b"x" * 3000)
    (mirror / "pack").write_bytes(b"m" * 700)  # ...while a mirror, which changes, is measured again
    assert budget.sweep().size_after == 1700
    entry(tmp_path, "git-trees", "t2", 200, age=0)  # a new entry is walked
    assert budget.sweep().size_after == 1900
    os.utime(tree)  # replaced in place (new mtime): walked again
    assert budget.sweep().size_after == 3900
