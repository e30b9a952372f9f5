"""The daemon hands freed heap pages back to the system while it grows (gitopsd.daemon.heap)."""

from __future__ import annotations

import os
import platform

import pytest

from gitopsd.daemon.heap import HeapTrimmer, malloc_trim, resident_bytes

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def test_trims_only_after_the_resident_memory_grew() -> None:
    resident = [100 * 2**20]
    trimmed: list[int] = []
    trimmer = HeapTrimmer(trim=lambda: trimmed.append(1) or 0, resident=lambda: resident[0], growth=8 * 2**20)
    assert trimmer.available and not trimmer.due()
    resident[0] += 7 * 2**20
    assert not trimmer.due()
    resident[0] += 2 * 2**20
    assert trimmer.due()
    trimmer.trim()
    assert trimmed == [1] and trimmer.trims == 1
    assert not trimmer.due()  # measured again after the trim: idle, no more trims
    resident[0] += 8 * 2**20
    assert trimmer.due()


@pytest.mark.skipif(not GLIBC and not os.environ.get("CI"), reason="malloc_trim is glibc's")
def test_malloc_trim_gives_freed_pages_back() -> None:
    trim = malloc_trim()
    assert trim is not None, "no malloc_trim in this C library (CI runs on glibc)"
    trim()
    # Blocks of 4 KiB (above pymalloc's 512 bytes: glibc's heap) of which every tenth stays:
    # the runs freed between them are whole pages that only a trim hands back.
    blocks = [bytes(4000) + bytes([i % 256]) for i in range(40_000)]
    kept = blocks[::10]
    del blocks
    before = resident_bytes()
    assert before is not None
    trim()
    after = resident_bytes()
    assert after is not None
    assert before - after > 50 * 2**20, (before, after)
    assert len(kept) == 4000
