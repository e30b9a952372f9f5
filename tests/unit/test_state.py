"""The state database: survives restarts, and a kill in the middle of a write leaves no half inventory."""

from __future__ import annotations

import gc
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
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


async def test_preload_knows_which_apps_own_nothing(tmp_path: Path) -> None:
    """An app the preload found without inventory rows reads its (empty) inventory without a
    call, until something is added to it; an app with rows reads them."""
    store = await StateStore.open(tmp_path)
    await store.add_to_inventory("web", refs(2))
    await store.preload(["web", "new", "gone"])
    calls = store.calls
    assert await store.inventory("new") == [] and await store.inventory("gone") == []
    assert store.calls == calls
    assert await store.inventory("web") == sorted(refs(2))
    assert store.calls == calls + 1
    await store.add_to_inventory("new", refs(1))
    assert await store.inventory("new") == refs(1)
    await store.remove_from_inventory("new", refs(1))
    assert await store.inventory("new") == []
    await store.close()


async def test_an_add_made_while_the_preload_reads_is_not_forgotten(tmp_path: Path) -> None:
    store = await StateStore.open(tmp_path)
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.preload, ["web"])  # its read is on the worker thread...
        tg.start_soon(store.add_to_inventory, "web", refs(1))  # ...this one waits for the next trip
    assert await store.inventory("web") == refs(1)
    await store.close()


async def test_calls_made_while_the_thread_is_busy_share_one_trip(tmp_path: Path) -> None:
    """Concurrent calls are batched (one thread hop for many), each keeps its result, error and order."""
    store = await StateStore.open(tmp_path)
    start_calls, start_batches = store.calls, store.batches
    results: dict[int, list[ObjectRef]] = {}

    async def app(i: int) -> None:
        await store.add_to_inventory(f"app-{i}", refs(2, prefix=f"a{i}"))
        results[i] = await store.inventory(f"app-{i}")

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(app, i)
    assert all(results[i] == sorted(refs(2, prefix=f"a{i}")) for i in range(50))
    calls, batches = store.calls - start_calls, store.batches - start_batches
    assert calls == 100
    assert batches <= 10, f"{calls} calls took {batches} trips to the worker thread"

    # One failing call fails alone; the others of its batch are written.
    def broken(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO no_such_table VALUES (1)")

    outcomes: list[str] = []

    async def good(i: int) -> None:
        await store.add_to_inventory("after", refs(1, prefix=f"g{i}"))
        outcomes.append("ok")

    async def bad() -> None:
        with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
            await store._run(broken)
        outcomes.append("raised")

    async with anyio.create_task_group() as tg:
        tg.start_soon(good, 0)
        tg.start_soon(bad)
        tg.start_soon(good, 1)
    assert sorted(outcomes) == ["ok", "ok", "raised"]
    assert len(await store.inventory("after")) == 2
    await store.close()


async def test_calls_made_at_once_take_one_trip_even_to_an_idle_thread(tmp_path: Path) -> None:
    store = await StateStore.open(tmp_path)
    trips = store.batches
    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(store.add_to_inventory, f"app-{i}", refs(1, prefix=f"a{i}"))
    assert store.batches == trips + 1
    await store.close()


async def test_a_call_cancelled_before_its_trip_never_runs(tmp_path: Path) -> None:
    store = await StateStore.open(tmp_path)
    release = threading.Event()
    entered = threading.Event()

    def slow(c: sqlite3.Connection) -> None:
        entered.set()
        release.wait(30)

    async with anyio.create_task_group() as tg:
        tg.start_soon(store._run, slow)  # holds the worker thread
        assert await anyio.to_thread.run_sync(entered.wait, 30)
        with anyio.move_on_after(0.05):
            await store.add_to_inventory("web", refs(1))  # queued behind it, then cancelled
        release.set()
    assert await store.inventory("web") == []
    await store.close()


async def test_the_store_thread_ends_with_close_or_when_the_store_is_dropped(tmp_path: Path) -> None:
    def threads() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "gitopsd-state")

    before = threads()
    closed = await StateStore.open(tmp_path / "a")
    await closed.inventory("web")
    dropped = await StateStore.open(tmp_path / "b")
    await dropped.inventory("web")
    assert threads() == before + 2
    await closed.close()
    del dropped
    gc.collect()
    with anyio.fail_after(10):
        while threads() > before:
            await anyio.sleep(0.01)
