"""Importing gitopsd's heavy layers runs no cyclic garbage collection (gitopsd/core/imports.py).

Counted with ``gc.callbacks`` in a fresh interpreter: a count, not a time. Before the pause
around the imports, importing the CLI and the supervisor ran about a hundred collections
(one of the oldest generation), a tenth of the import's CPU, freeing nothing of note.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import pytest

from gitopsd.core.imports import collection_paused

SCRIPT = r"""
import gc, json, sys
collections = []
gc.callbacks.append(lambda phase, info: phase == "stop" and collections.append(info["generation"]))
import gitopsd.cli.main, gitopsd.daemon.supervisor
print(json.dumps({"collections": collections, "enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}))
"""


def test_importing_the_daemon_collects_nothing() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True)
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert seen["enabled"], "the import left the collector off"
    assert seen["frozen"] > 50_000, "what the imports built is not frozen"
    # The interpreter's own start runs a few before gitopsd is imported; between two paused
    # blocks one more may run (on the few objects allocated since the last freeze).
    assert len(seen["collections"]) <= 6 and 2 not in seen["collections"], seen["collections"]


@pytest.mark.parametrize("enabled", [True, False])
def test_collection_paused_restores_the_collector(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        with pytest.raises(ImportError), collection_paused():
            assert not gc.isenabled()
            raise ImportError("a failed import inside the block")
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
