"""Health waits wake only for their own objects: a change elsewhere in the live cache does not wake them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gitopsd.kube.cache import LiveCache

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def cm(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}}


async def settle() -> None:
    for _ in range(20):  # let every woken task run (no wall clock)
        await asyncio.sleep(0)


async def test_a_keyed_wait_ignores_other_objects_and_wakes_on_its_own() -> None:
    cache = LiveCache(None, lambda key, obj: None, None)  # type: ignore[arg-type]
    mine, other = ("", "ConfigMap", "ns", "mine"), ("", "ConfigMap", "ns", "other")
    keyed = asyncio.create_task(cache.wait_change(3600, keys=[mine]))
    anything = asyncio.create_task(cache.wait_change(3600))
    await settle()
    cache._signal(other, cm("other"))
    await settle()
    assert anything.done()  # without keys: any change wakes the caller
    assert not keyed.done()
    cache._signal(mine, cm("mine"))
    await settle()
    assert keyed.done()
    assert cache._key_waiters == {}  # nothing left registered
