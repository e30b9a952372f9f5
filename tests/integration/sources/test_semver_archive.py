"""The semver range matcher and the safe extractor on their own (pure, but the real code)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from gitopsd import SourceError
from gitopsd_plugins._archive import extract_tar, extract_tar_stream_into
from gitopsd_plugins._semver import Range, RangeError, highest

from .conftest import tar_gz

TAGS = ["v0.9.0", "v1.0.0", "v1.2.0", "v1.2.5", "v1.10.0", "v2.0.0-rc.1", "v2.0.0", "latest", "1.3.0"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (">=1.2.0 <2", "v1.10.0"),
        (">=1.2.0, <2", "v1.10.0"),
        ("^1.2", "v1.10.0"),
        ("~1.2", "v1.2.5"),
        ("1.2.x", "v1.2.5"),
        ("1.3.0", "1.3.0"),
        ("*", "v2.0.0"),
        ("<1", "v0.9.0"),
        (">=3 || ~1.2.0", "v1.2.5"),
        (">=2.0.0-rc.0 <2.0.0", "v2.0.0-rc.1"),
        (">2", None),
    ],
)
def test_highest(spec: str, expected: str | None) -> None:
    assert highest(spec, TAGS) == expected


def test_prerelease_only_when_asked() -> None:
    assert highest(">=2.0.0-0", ["v2.0.0-rc.1"]) == "v2.0.0-rc.1"
    assert highest(">=1", ["v2.0.0-rc.1"]) is None


def test_bad_range() -> None:
    with pytest.raises(RangeError, match="cannot parse 'banana'"):
        Range.parse(">=1 banana")


def _tar(members: list[tarfile.TarInfo]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return buffer.getvalue()


def test_hard_links_devices_and_write_through_symlink_rejected(tmp_path: Path) -> None:
    hard = tarfile.TarInfo("h")
    hard.type = tarfile.LNKTYPE
    hard.linkname = "etc/passwd"
    with pytest.raises(SourceError, match="hard link 'h'"):
        extract_tar(_tar([hard]), tmp_path / "a", where="t")
    fifo = tarfile.TarInfo("f")
    fifo.type = tarfile.FIFOTYPE
    with pytest.raises(SourceError, match="device or FIFO"):
        extract_tar(_tar([fifo]), tmp_path / "b", where="t")
    # a symlink named like a directory that files were written into: refused, never followed
    data = tar_gz({"d/x": "1"}, symlinks={"d": "."})
    with pytest.raises(SourceError, match=r"cannot create symlink 'd'"):
        extract_tar(data, tmp_path / "c", where="t")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_member_count_limit(tmp_path: Path) -> None:
    data = tar_gz({f"f{i}.yaml": "x" for i in range(20)})
    with pytest.raises(SourceError, match="more than 10 members") as info:
        extract_tar(data, tmp_path / "x", where="t", max_members=10)
    assert info.value.reason == "TooLarge"


def test_good_archive(tmp_path: Path) -> None:
    data = tar_gz({"a/b.yaml": "b", "c.yaml": "c"}, symlinks={"a/link.yaml": "../c.yaml"})
    extract_tar(data, tmp_path / "ok", where="t")
    assert (tmp_path / "ok" / "a" / "link.yaml").read_text() == "c"


def test_duplicates_modes_and_writing_through_an_existing_symlink(tmp_path: Path) -> None:
    twice = [tarfile.TarInfo("a/x.yaml"), tarfile.TarInfo("a/x.yaml")]
    for info in twice:
        info.size = 1
    with pytest.raises(SourceError, match=r"archive member 'a/x.yaml' appears twice"):
        extract_tar(_tar(twice), tmp_path / "dup", where="t")
    over_dir = [tarfile.TarInfo("a/x.yaml"), tarfile.TarInfo("a")]
    over_dir[0].size = over_dir[1].size = 1
    with pytest.raises(SourceError, match=r"archive member 'a' appears twice"):
        extract_tar(_tar(over_dir), tmp_path / "dir", where="t")
    modes = [tarfile.TarInfo("run.sh"), tarfile.TarInfo("cm.yaml")]
    modes[0].mode, modes[1].mode = 0o775, 0o664
    extract_tar(_tar(modes), tmp_path / "modes", where="t")
    assert [oct((tmp_path / "modes" / n).stat().st_mode & 0o777) for n in ("run.sh", "cm.yaml")] == ["0o755", "0o644"]
    # Into a tree that already holds a symlink (what a new commit's tree is built on): a file
    # under it is refused, even when its directory was checked for an earlier member.
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "d").symlink_to("real")
    members = [tarfile.TarInfo("first.yaml"), tarfile.TarInfo("d/x.yaml")]
    members[0].size = members[1].size = 1
    with pytest.raises(SourceError, match=r"archive member 'd/x.yaml' is written through a symlink"):
        extract_tar_stream_into(io.BytesIO(_tar(members)), root, where="t")
    assert not (root / "real" / "x.yaml").exists()
