"""Watch fan-out: events go straight to idle streams' sinks in one loop callback, or wake the task."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gitopsd.sandbox.store import Event, Store

pytestmark = pytest.mark.anyio


def cm(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}}


async def test_a_sink_gets_one_batch_after_the_writer_and_the_task_sleeps_on() -> None:
    store = Store()
    watcher, _ = store.watch("configmaps", None, None, None)
    batches: list[list[str]] = []
    watcher.sink = lambda events: batches.append([e.obj["metadata"]["name"] for e in events]) is None
    waiting = asyncio.create_task(watcher.wait(asyncio.get_running_loop().time() + 60))
    await asyncio.sleep(0)
    for name in ("a", "b", "c"):
        store.put("configmaps", cm(name), "ADDED")
    assert batches == []  # nothing is written while the writer runs (its response goes first)
    await asyncio.sleep(0)
    assert batches == [["a", "b", "c"]]
    assert watcher.pending == [] and not waiting.done()  # the stream's task was not woken
    store.put("configmaps", cm("d"), "ADDED")
    await asyncio.sleep(0)
    assert batches == [["a", "b", "c"], ["d"]]
    store.unwatch(watcher)
    waiting.cancel()


async def test_a_refusing_or_failing_sink_leaves_the_events_to_the_task() -> None:
    store = Store()
    for refusal in (lambda events: False, lambda events: 1 / 0):
        watcher, _ = store.watch("configmaps", None, None, None)
        watcher.sink = refusal
        waiting = asyncio.create_task(watcher.wait(asyncio.get_running_loop().time() + 60))
        await asyncio.sleep(0)
        store.put("configmaps", cm(f"x{id(refusal)}"), "ADDED")
        await asyncio.wait_for(waiting, 5)  # woken by the refusal
        assert watcher.sink is None
        assert [e.obj["metadata"]["name"] for e in watcher.take()] == [f"x{id(refusal)}"]
        store.put("configmaps", cm(f"y{id(refusal)}"), "ADDED")  # no sink: pending, for the task
        assert len(watcher.pending) == 1
        store.unwatch(watcher)


async def test_without_a_sink_an_event_wakes_the_task_and_an_ended_watch_gets_nothing() -> None:
    store = Store()
    watcher, _ = store.watch("configmaps", None, None, None)
    waiting = asyncio.create_task(watcher.wait(asyncio.get_running_loop().time() + 60))
    await asyncio.sleep(0)
    store.put("configmaps", cm("a"), "ADDED")
    await asyncio.wait_for(waiting, 5)
    got: list[Event] = []
    watcher.take()
    watcher.sink = lambda events: got.extend(events) is None
    store.put("configmaps", cm("b"), "ADDED")
    store.unwatch(watcher)  # the stream ends before the flush
    await asyncio.sleep(0)
    assert got == []
