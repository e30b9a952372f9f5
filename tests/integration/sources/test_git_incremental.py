"""A new commit's tree is built from the previous one's (plugins/gitopsd_plugins/_gittree.py).

Each new tree must be exactly what a whole ``git archive`` extraction gives, keep every
check of the safe extractor, and count the size limit over the whole tree.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from gitopsd import PluginContext, SourceError
from gitopsd_plugins._archive import extract_tar_stream
from gitopsd_plugins._gittree import parse_raw_diff
from gitopsd_plugins.git import GitOptions, GitSource

from .conftest import CONFIGMAP, Repo, git

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def snapshot(root: Path) -> dict[str, tuple[str, str]]:
    """Every entry under ``root``: kind plus content, symlink target or exec bit."""
    out: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir", "")
            else:
                mode = "x" if path.stat().st_mode & stat.S_IXUSR else "-"
                out[rel] = ("file" + mode, path.read_text())
    return out


def whole_extraction(repo: Repo, tmp: Path) -> dict[str, tuple[str, str]]:
    """The pushed main's tree extracted by a whole ``git archive`` (the reference)."""
    dest = tmp / f"whole-{git('rev-parse', 'main', cwd=repo.bare)}"
    proc = subprocess.Popen(["git", "archive", "--format=tar", "main^{tree}"], cwd=repo.bare, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    extract_tar_stream(proc.stdout, dest, where="reference")
    proc.stdout.close()
    assert proc.wait() == 0
    return snapshot(dest)


def tree_root(artifact_path: Path, path: str) -> Path:
    return artifact_path if path == "." else artifact_path.parents[len(Path(path).parts) - 1]


async def fetch_latest(src: GitSource) -> Path:
    return tree_root((await src.fetch(await src.latest_revision())).path, src.options.path)


async def test_each_new_tree_equals_a_whole_extraction(ctx: PluginContext, repo: Repo, tmp_path: Path) -> None:
    src = GitSource(GitOptions(url=repo.bare.as_uri(), ref="main", path="deploy", poll_cache=0), ctx)
    repo.write({"keep/a.yaml": "a: 1\n", "gone/only.yaml": "x: 1\n", "becomes-dir": "file\n",
                "dir-becomes-file/x.yaml": "x: 1\n", "mode.sh": "#!/bin/sh\n", "weird/a*b [c].yaml": "w: 1\n"})
    os.symlink("cm.yaml", repo.work / "deploy" / "link.yaml")
    repo.commit("base")
    repo.push()
    first = await fetch_latest(src)
    assert snapshot(first) == whole_extraction(repo, tmp_path)

    # Every kind of change at once: modify, add (new directories), delete (a directory left
    # empty), file -> directory, directory -> file, mode, symlink retargeted, glob characters.
    repo.write({"deploy/cm.yaml": CONFIGMAP.format(name="cm", value="2"), "new/deep/b.yaml": "b: 1\n",
                "weird/a*b [c].yaml": "w: 2\n"})
    (repo.work / "gone" / "only.yaml").unlink()
    (repo.work / "becomes-dir").unlink()
    repo.write({"becomes-dir/inner.yaml": "i: 1\n"})
    shutil.rmtree(repo.work / "dir-becomes-file")
    repo.write({"dir-becomes-file": "now a file\n"})
    (repo.work / "mode.sh").chmod(0o755)
    (repo.work / "deploy" / "link.yaml").unlink()
    os.symlink("../keep/a.yaml", repo.work / "deploy" / "link.yaml")
    repo.commit("everything")
    repo.push()
    second = await fetch_latest(src)
    assert second != first
    assert snapshot(second) == whole_extraction(repo, tmp_path)
    # Unchanged files are the previous tree's (hard links), changed ones are new.
    assert (second / "keep/a.yaml").stat().st_ino == (first / "keep/a.yaml").stat().st_ino
    assert (second / "deploy/cm.yaml").stat().st_ino != (first / "deploy/cm.yaml").stat().st_ino
    assert (first / "deploy/cm.yaml").read_text() == CONFIGMAP.format(name="cm", value="1"), "old tree changed"
    assert src.repo.full_extractions == 1

    # And back: the third tree is built from the second.
    shutil.rmtree(repo.work / "new")
    repo.commit("remove new/", {"deploy/cm.yaml": CONFIGMAP.format(name="cm", value="3")})
    repo.push()
    third = await fetch_latest(src)
    assert snapshot(third) == whole_extraction(repo, tmp_path)
    assert not (third / "new").exists()
    assert src.repo.full_extractions == 1


async def test_previous_tree_gone_means_a_whole_extraction(ctx: PluginContext, repo: Repo, tmp_path: Path) -> None:
    src = GitSource(GitOptions(url=repo.bare.as_uri(), ref="main", path="deploy", poll_cache=0), ctx)
    first = await fetch_latest(src)
    shutil.rmtree(first)  # evicted by the cache budget
    repo.commit("two", {"deploy/cm.yaml": CONFIGMAP.format(name="cm", value="2")})
    repo.push()
    second = await fetch_latest(src)
    assert snapshot(second) == whole_extraction(repo, tmp_path)
    assert src.repo.full_extractions == 2


async def test_kept_symlink_that_now_chains_outside_is_refused(ctx: PluginContext, repo: Repo) -> None:
    """``x -> s/..`` is harmless while ``s`` is a directory; once ``s -> .``, x resolves outside the tree.

    Neither symlink points outside on its own: only resolving the kept one again catches it."""
    src = GitSource(GitOptions(url=repo.bare.as_uri(), ref="main", path="deploy", poll_cache=0), ctx)
    repo.write({"s/f.yaml": "f: 1\n"})
    os.symlink("s/..", repo.work / "x")
    repo.commit("harmless")
    repo.push()
    await fetch_latest(src)
    shutil.rmtree(repo.work / "s")
    os.symlink(".", repo.work / "s")
    repo.commit("now x escapes")
    repo.push()
    with pytest.raises(SourceError, match=r"symlink 'x' resolves outside the artifact") as info:
        await src.fetch(await src.latest_revision())
    assert info.value.reason == "UnsafeArchive"
    assert src.repo.full_extractions == 1, "refused by the incremental build, not by a fallback"
    assert not list((ctx.state_dir / "cache" / "git-trees").glob(".extract-*")), "a partial tree was left behind"


async def test_size_limit_counts_the_files_kept(ctx: PluginContext, repo: Repo) -> None:
    src = GitSource(GitOptions(url=repo.bare.as_uri(), ref="main", path="deploy", poll_cache=0, max_size=1024 * 1024), ctx)
    repo.commit("one", {"big/one.txt": "1" * 600_000})
    repo.push()
    await fetch_latest(src)
    repo.commit("two", {"big/two.txt": "2" * 600_000})  # 600 kB new, 1.2 MB in all
    repo.push()
    with pytest.raises(SourceError, match="expands to more than 1048576 bytes") as info:
        await src.fetch(await src.latest_revision())
    assert info.value.reason == "TooLarge"
    assert src.repo.full_extractions == 1


def test_parse_raw_diff() -> None:
    zero = "0" * 40
    out = (f":100644 100755 {'a' * 40} {'a' * 40} M\0mode.sh\0"
           f":000000 120000 {zero} {'b' * 40} A\0dir/link\0").encode()
    changes = parse_raw_diff(out)
    assert changes is not None
    assert [(c.path, c.existed, c.exists) for c in changes] == [("mode.sh", True, True), ("dir/link", False, True)]
    submodule = f":000000 160000 {zero} {'c' * 40} A\0vendor/lib\0".encode()
    assert parse_raw_diff(submodule) is None
    assert parse_raw_diff(b"garbage\0") is None


async def test_after_a_restart_the_newest_extracted_tree_is_the_base(ctx: PluginContext, repo: Repo, tmp_path: Path) -> None:
    src = GitSource(GitOptions(url=repo.bare.as_uri(), ref="main", path="deploy", poll_cache=0), ctx)
    repo.commit("keep", {"keep.yaml": "k: 1\n"})
    repo.push()
    first = await fetch_latest(src)
    # Another repository's tree in the same cache, extracted later: not in this mirror, so not a base.
    other = tmp_path / "other"
    other.mkdir()
    git("init", "-q", "-b", "main", cwd=other)
    (other / "x.yaml").write_text("x: 1\n")
    git("add", "-A", cwd=other)
    git("commit", "-q", "-m", "x", cwd=other)
    other_src = GitSource(GitOptions(url=other.as_uri(), ref="main"), ctx)
    await other_src.fetch(await other_src.latest_revision())
    repo.commit("two", {"deploy/cm.yaml": CONFIGMAP.format(name="cm", value="2")})
    repo.push()
    # A restart: a new context (nothing shared in memory), the same cache on disk.
    restarted = PluginContext(state_dir=ctx.state_dir, config_dir=ctx.config_dir, tools=ctx.tools)
    src2 = GitSource(GitOptions(url=repo.bare.as_uri(), ref="main", path="deploy", poll_cache=0), restarted)
    second = await fetch_latest(src2)
    assert snapshot(second) == whole_extraction(repo, tmp_path)
    assert src2.repo.full_extractions == 0
    assert (second / "keep.yaml").stat().st_ino == (first / "keep.yaml").stat().st_ino
    assert (second / "deploy" / "cm.yaml").stat().st_ino != (first / "deploy" / "cm.yaml").stat().st_ino
