"""Python-level function calls of a block, counted (``sys.setprofile``): cost tests by count, not by time."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from types import CodeType
from typing import Any


@contextmanager
def python_calls() -> Iterator[Counter[CodeType]]:
    """Every Python-level function call made in the block (this thread), by code object.

    C functions are not counted. In a coroutine, what the event loop runs while the block
    awaits is counted too.
    """
    calls: Counter[CodeType] = Counter()

    def count(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            calls[frame.f_code] += 1

    sys.setprofile(count)
    try:
        yield calls
    finally:
        sys.setprofile(None)
