"""Cyclic garbage a block leaves (objects only the cycle collector would free): leak tests by count."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cyclic_garbage() -> Iterator[Counter[str]]:
    """The type names of the objects that became cyclic garbage in the block, counted.

    Reference counting frees everything else as soon as the block drops it; what is left
    here waits for a collection, and the collector's work grows with it.
    """
    found: Counter[str] = Counter()
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield found
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found.update(type(o).__name__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()
