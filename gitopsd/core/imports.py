"""Importing gitopsd's heavy layers without the cyclic garbage collector walking them meanwhile.

Importing gitopsd (pydantic and the config models, the CLI) creates a few hundred thousand
objects that live as long as the process: modules, classes, functions, schemas. The
collector cannot know: while they are created it walks them again and again, and finds
nothing to free (about a tenth of the import's CPU; ``gc.callbacks`` counts it). A
collection merely postponed (``gc.disable()`` then ``gc.enable()``) costs the same, later.
:func:`collection_paused` postpones it and then moves everything allocated so far into the
collector's permanent generation (``gc.freeze()``), as ``gitopsd run`` does again once it is
ready: those objects are still freed by reference counting, only a reference cycle among
them would stay (an imported module's objects are not garbage).

Used around the imports of the public surface (``gitopsd/__init__.py``: pydantic and the
config models) and of the CLI; ``gitopsd run`` imports the daemon's supervisor with the
collector off already (``cli/main.py``, ``run``).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic garbage collection during the block (imports); what exists after it is frozen (``gc.freeze``)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
