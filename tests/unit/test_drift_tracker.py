"""The drift tracker's index of tracked objects: one app per key usually, several when apps share one."""

from __future__ import annotations

import asyncio

import pytest

from gitopsd.core.models import ObjectRef
from gitopsd.kube.drift import DriftTracker

pytestmark = pytest.mark.anyio

KEY = ("", "ConfigMap", "default", "shared")
WANT = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared", "namespace": "default"}, "data": {"k": "v"}}
DRIFTED = {**WANT, "data": {"k": "other"}}


async def test_apps_sharing_an_object_are_each_told_until_untracked() -> None:
    tracker = DriftTracker()
    told: dict[str, list[list[ObjectRef]]] = {"a": [], "b": [], "c": []}
    for app in ("a", "b", "c"):
        tracker.track(app, {KEY: WANT}, told[app].append)

    async def change() -> list[str]:
        for seen in told.values():
            seen.clear()
        tracker.on_change(KEY, DRIFTED)
        await asyncio.sleep(0)  # callbacks run on the loop's next turn
        return sorted(app for app, seen in told.items() if seen)

    assert await change() == ["a", "b", "c"]
    tracker.untrack("a")
    assert await change() == ["b", "c"]
    tracker.untrack("b")
    assert await change() == ["c"]
    tracker.track("c", {KEY: WANT}, told["c"].append)  # tracked again (a new render): still once
    assert await change() == ["c"]
    assert len(told["c"]) == 1
    tracker.untrack("c")
    assert await change() == []
    tracker.track("b", {KEY: WANT}, told["b"].append)
    assert await change() == ["b"]


async def test_changes_during_a_pause_are_checked_when_it_ends() -> None:
    tracker = DriftTracker()
    told: list[list[ObjectRef]] = []
    tracker.track("a", {KEY: WANT}, told.append)
    live = {KEY: DRIFTED}

    tracker.pause("a")  # the app's own sync: its writes are not drift
    tracker.on_change(KEY, DRIFTED)
    await asyncio.sleep(0)
    assert told == []
    tracker.resume("a", live.get)  # still drifted once the sync ended: told now
    await asyncio.sleep(0)
    assert told == [[ObjectRef("", "v1", "ConfigMap", "default", "shared")]]

    told.clear()
    tracker.pause("a")
    tracker.on_change(KEY, DRIFTED)
    live[KEY] = WANT  # the sync put it back
    tracker.resume("a", live.get)
    await asyncio.sleep(0)
    assert told == []

    # A drift seen just before a pause starts is held back by it, then checked at its end.
    tracker.on_change(KEY, DRIFTED)
    tracker.pause("a")
    await asyncio.sleep(0)
    assert told == []
    live[KEY] = DRIFTED
    tracker.resume("a", live.get)
    await asyncio.sleep(0)
    assert len(told) == 1
