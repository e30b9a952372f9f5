"""What safe tar extraction costs per member, counted (the checks themselves: tests/integration/sources)."""

from __future__ import annotations

import io
import os
import random
import subprocess
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gitopsd import SourceError
from gitopsd.testing.plugin import GitRepo
from gitopsd_plugins._archive import SMALL_FILE, _tarinfo_class, extract_tar, extract_tar_stream
from tests.calls import python_calls

FILES = 40


def tree_archive() -> bytes:
    """A repository-like tree: FILES small manifests in nested directories, one executable, one large file."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        def add(name: str, data: bytes = b"", mode: int = 0o644, kind: bytes = tarfile.REGTYPE) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.size = kind, mode, len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        add("apps", kind=tarfile.DIRTYPE, mode=0o755)
        for i in range(FILES):
            if i % 4 == 0:
                add(f"apps/a{i}", kind=tarfile.DIRTYPE, mode=0o755)
            add(f"apps/a{i - i % 4}/m{i}.yaml", f"kind: ConfigMap\nindex: {i}\n".encode())
        add("run.sh", b"#!/bin/sh\n", mode=0o755)
        add("big.bin", b"x" * (SMALL_FILE + 1))
    return buffer.getvalue()


def calls_while(func: Any) -> Counter[str]:
    """Python-level calls made while ``func()`` runs, by function name."""
    with python_calls() as calls:
        func()
    by_name: Counter[str] = Counter()
    for code, count in calls.items():
        by_name[code.co_name] += count
        if code.co_qualname != code.co_name:
            by_name[code.co_qualname] += count
    return by_name


def test_small_members_are_written_with_one_call_no_copy_loop_no_path_objects(tmp_path: Path) -> None:
    data = tree_archive()
    dest = tmp_path / "tree"
    calls = calls_while(lambda: extract_tar_stream(io.BytesIO(data), dest, where="test"))
    # Only the large member goes through the chunked copy, and through tarfile's file object
    # for a member (a buffered reader over a window of the stream); no pathlib.Path is built
    # per member.
    assert calls["copyfileobj"] == 1
    assert calls["_FileInFile.__init__"] == 1, calls
    assert calls["_from_parts"] + calls["_from_parsed_parts"] + calls["_make_child"] < 10, calls
    # Same result as ever: content and modes.
    assert (dest / "apps/a36/m39.yaml").read_bytes() == b"kind: ConfigMap\nindex: 39\n"
    assert os.stat(dest / "run.sh").st_mode & 0o777 == 0o755
    assert os.stat(dest / "apps/a0/m1.yaml").st_mode & 0o777 == 0o644
    assert (dest / "big.bin").stat().st_size == SMALL_FILE + 1


def git_archive(repo: GitRepo) -> bytes:
    """``git archive`` of a tree with what git writes in other forms: long names (a ustar prefix,
    a pax header), a symlink to a long name, non-ASCII names, an executable, an empty file."""
    long_dir = "/".join(["d" * 90] * 3)
    repo.commit({
        f"{long_dir}/{'f' * 120}.yaml": "kind: ConfigMap\n",
        "apps/é ünï.yaml": "a: b\n",
        "apps/empty.yaml": "",
        "run.sh": "#!/bin/sh\n",
    })
    (repo.path / "apps/link").symlink_to(f"../{long_dir}/{'f' * 120}.yaml")
    os.chmod(repo.path / "run.sh", 0o755)
    repo.commit()
    return subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=repo.path, check=True,
                          capture_output=True).stdout


FIELDS = ("name", "mode", "uid", "gid", "size", "mtime", "chksum", "type", "linkname", "uname", "gname",
          "devmajor", "devminor", "pax_headers", "offset", "offset_data")


def members(data: bytes, tarinfo: type[tarfile.TarInfo]) -> list[Any]:
    """Each member's fields as tarfile reads ``data`` with ``tarinfo``, then the error if any."""
    out: list[Any] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|", tarinfo=tarinfo) as tar:
            out.extend(tuple(getattr(member, field) for field in FIELDS) for member in tar)
    except Exception as exc:  # compared, not handled
        out.append((type(exc).__name__, str(exc)))
    return out


def test_git_headers_are_read_as_tarfile_reads_them_without_its_checksum_tuples(git_repo: GitRepo) -> None:
    """tarfile unpacks each header's 512 bytes into two tuples of ints to check its checksum
    (two thirds of the CPU of a small member); git's own headers are read without that."""
    data = git_archive(git_repo)
    quick = _tarinfo_class()
    expected = members(data, tarfile.TarInfo)
    assert members(data, quick) == expected
    names = {fields[0] for fields in expected}
    assert {"run.sh", "apps/é ünï.yaml", f"{'/'.join(['d' * 90] * 3)}/{'f' * 120}.yaml"} <= names
    with python_calls() as calls:
        members(data, quick)
    by_name = Counter(code.co_name for code in calls.elements())
    assert by_name["calc_chksums"] == 0 and by_name["nti"] == 0 and by_name["nts"] == 0, by_name


def test_any_other_header_is_read_by_tarfile_itself_errors_included(git_repo: GitRepo) -> None:
    """Headers damaged at random (checksums sometimes made right again so that the fields are
    reached): every member and every error is tarfile's own."""
    data = git_archive(git_repo)
    quick = _tarinfo_class()
    rnd = random.Random(18)
    blocks = len(data) // 512
    for _ in range(400):
        damaged = bytearray(data)
        for _ in range(rnd.randint(1, 3)):
            at = rnd.randrange(blocks) * 512 + rnd.choice([rnd.randrange(512), rnd.randrange(100, 160), 156,
                                                          rnd.randrange(257, 265), rnd.randrange(345, 500)])
            damaged[at] = rnd.choice([0, 0o200, 0o377, ord(" "), ord("0"), ord("7"), ord("x"), rnd.randrange(256)])
        if rnd.random() < 0.7:
            for start in range(0, len(damaged), 512):
                header = damaged[start:start + 512]
                if header[257:262] == b"ustar":
                    damaged[start + 148:start + 156] = b"%06o\0 " % (256 + sum(header[:148]) + sum(header[156:]))
        assert members(bytes(damaged), quick) == members(bytes(damaged), tarfile.TarInfo)


@pytest.mark.parametrize("mode", ["stream", "bytes"])
def test_a_member_cut_short_is_a_corrupt_archive(tmp_path: Path, mode: str) -> None:
    """Read straight from the stream or not, a member whose data ends early is tarfile's error."""
    data = tree_archive()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        last = [m for m in tar.getmembers() if m.isreg() and m.size < SMALL_FILE][-1]
    cut = data[:last.offset_data + last.size // 2]
    with pytest.raises(SourceError, match=r"test: corrupt archive: unexpected end of data") as error:
        if mode == "stream":
            extract_tar_stream(io.BytesIO(cut), tmp_path / "tree", where="test")
        else:
            extract_tar(cut, tmp_path / "tree", where="test")
    assert error.value.reason == "InvalidArchive"
    assert not (tmp_path / "tree").exists()
