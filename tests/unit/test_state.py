"""The state database: survives restarts, and a kill in the middle of a write leaves no half inventory."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio.to_thread
import pytest

from gitopsd.core.models import ObjectRef
from gitopsd.core.state import SCHEMA_VERSION, Pin, StateStore

pytestmark = pytest.mark.anyio


def refs(n: int, prefix: str = "cm") -> list[ObjectRef]:
    return [ObjectRef("", "v1", "ConfigMap", "default", f"{prefix}-{i}") for i in range(n)]


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    store = await StateStore.open(tmp_path)
    await store.add_to_inventory("web", refs(3))
    await store.record_sync("web", revision="main@sha1:" + "a" * 40, result="succeeded", message="ok",
                            counts={"created": 3}, applied_digest="sha256:x")
    await store.record_sync("web", revision="main@sha1:" + "b" * 40, result="failed", message="boom", counts={})
    await store.set_pin("web", Pin(suspended=True, revision="main@sha1:" + "a" * 40))
    await store.close()

    store = await StateStore.open(tmp_path)
    record = await store.app("web")
    assert record is not None and record.revision == "main@sha1:" + "a" * 40 and record.applied_digest == "sha256:x"
    assert await store.inventory("web") == sorted(refs(3))
    history = await store.history("web")
    assert [h.result for h in history] == ["failed", "succeeded"]
    assert history[1].counts == {"created": 3}
    assert await store.pin("web") == Pin(True, "main@sha1:" + "a" * 40)
    assert await store.integrity_check() == "ok"
    await store.remove_from_inventory("web", refs(1))
    assert len(await store.inventory("web")) == 2
    await store.close()


async def test_schema_is_versioned(tmp_path: Path) -> None:
    store = await StateStore.open(tmp_path)
    await store.close()
    conn = sqlite3.connect(tmp_path / "state.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this gitopsd"):
        await StateStore.open(tmp_path)


WRITER = """
import sys, anyio
from pathlib import Path
from gitopsd.core.models import ObjectRef
from gitopsd.core.state import StateStore

async def main():
    store = await StateStore.open(Path(sys.argv[1]))
    batch = 0
    print("ready", flush=True)
    while True:
        batch += 1
        await store.add_to_inventory("web", [ObjectRef("", "v1", "ConfigMap", "ns", f"b{batch}-{i}") for i in range(500)])

anyio.run(main)
"""


def kill_writer_midway(state_dir: Path, delay: float) -> None:
    """Start a process that writes 500-object batches in a loop, and SIGKILL it after ``delay``."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(state_dir)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


async def test_kill_during_writes_never_leaves_a_half_batch(tmp_path: Path) -> None:
    for attempt in range(5):
        await anyio.to_thread.run_sync(kill_writer_midway, tmp_path, 0.05 + attempt * 0.03)
        store = await StateStore.open(tmp_path)
        assert await store.integrity_check() == "ok"
        inventory = await store.inventory("web")
        batches: dict[str, int] = {}
        for ref in inventory:
            batch = ref.name.split("-")[0]
            batches[batch] = batches.get(batch, 0) + 1
        assert batches, "the writer wrote nothing before it was killed"
        assert set(batches.values()) == {500}, f"a batch was half-written: {batches}"
        await store.close()


async def test_preload_answers_what_the_per_app_reads_answer(tmp_path: Path) -> None:
    store = await StateStore.open(tmp_path)
    a, b = "main@sha1:" + "a" * 40, "main@sha1:" + "b" * 40
    await store.record_sync("web", revision=a, result="succeeded", message="ok", counts={},
                            applied_digest="sha256:x", health="Healthy")
    await store.record_sync("web", revision=b, result="failed", message="boom", counts={}, health="Degraded")
    await store.record_sync("api", revision=a, result="succeeded", message="ok", counts={},
                            applied_digest="sha256:y", health="Healthy")
    await store.set_pin("api", Pin(suspended=True))
    await store.move_revision("api", b, "sha256:z")
    names = ["web", "api", "new"]
    direct = {n: await store.app_start(n) for n in names}
    await store.preload(names)
    preloaded = {n: await store.app_start(n) for n in names}
    assert preloaded == direct
    assert direct["web"].last_health == "Degraded" and direct["web"].record is not None
    assert direct["web"].record.revision == a
    assert direct["api"].pin.suspended and direct["api"].record is not None
    assert (direct["api"].record.revision, direct["api"].record.applied_digest) == (b, "sha256:z")
    assert direct["new"].record is None and direct["new"].last_health is None
    await store.close()
