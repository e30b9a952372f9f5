"""What safe tar extraction costs per member, counted (the checks themselves: tests/integration/sources)."""

from __future__ import annotations

import io
import os
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

from gitopsd_plugins._archive import SMALL_FILE, extract_tar_stream
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
    return by_name


def test_small_members_are_written_with_one_call_no_copy_loop_no_path_objects(tmp_path: Path) -> None:
    data = tree_archive()
    dest = tmp_path / "tree"
    calls = calls_while(lambda: extract_tar_stream(io.BytesIO(data), dest, where="test"))
    # Only the large member goes through the chunked copy; no pathlib.Path is built per member.
    assert calls["copyfileobj"] == 1
    assert calls["_from_parts"] + calls["_from_parsed_parts"] + calls["_make_child"] < 10, calls
    # Same result as ever: content and modes.
    assert (dest / "apps/a36/m39.yaml").read_bytes() == b"kind: ConfigMap\nindex: 39\n"
    assert os.stat(dest / "run.sh").st_mode & 0o777 == 0o755
    assert os.stat(dest / "apps/a0/m1.yaml").st_mode & 0o777 == 0o644
    assert (dest / "big.bin").stat().st_size == SMALL_FILE + 1
