"""Admission into the apply path: a bounded number of apps sync at once, and waiting gives the turn away."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gitopsd.core.events import Event
from gitopsd.core.state import StateStore
from gitopsd.kube import KubeClusterPool
from gitopsd.sandbox import Sandbox
from tests.integration.kube.conftest import Env, app_config, configmap, deployment, pool_config

pytestmark = pytest.mark.anyio


async def one_at_a_time(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Env]:
    events: list[Event] = []
    store = await StateStore.open(tmp_path / "state")
    config = pool_config({"main": sandbox.kubeconfig}, request_timeout=10, max_concurrent_syncs=1)
    try:
        async with KubeClusterPool(config, None, events.append) as pool:
            yield Env(sandbox, pool, store, events)
    finally:
        await store.close()


def rv_span(items: list[dict[str, Any]], app: str) -> tuple[int, int]:
    """The resourceVersions (the API server's write order) of the objects ``app`` created."""
    rvs = [int(o["metadata"]["resourceVersion"]) for o in items if o["metadata"]["labels"].get("gitopsd.dev/app") == app]
    assert len(rvs) == 3, (app, rvs)
    return min(rvs), max(rvs)


async def test_apps_sync_one_after_another_in_their_turn(tmp_path: Path) -> None:
    async with Sandbox(tls=True, seed=0) as sb:
        async for env in one_at_a_time(sb, tmp_path):
            names = [f"app{i}" for i in range(5)]
            apps = {n: app_config(n, namespace="default") for n in names}
            renders = {n: [configmap(f"{n}-{k}", k=n) for k in range(3)] for n in names}
            results = await asyncio.gather(
                *(env.cluster.sync(apps[n], renders[n], env.inventory(n)) for n in names)
            )
            assert all(r.ok for r in results), [r.message for r in results]
            listed = await env.cluster.client.request("GET", "/api/v1/namespaces/default/configmaps")
            # Seen from the API server: each app's writes form one block, never interleaved
            # with another app's (with the bound off, five syncs' applies interleave).
            spans = sorted(rv_span(listed["items"], n) for n in names)
            for (_, end), (start, _) in itertools.pairwise(spans):
                assert end < start, spans
            assert env.cluster.admission.peak == 1
            assert env.cluster.admission.admitted == 0


async def test_an_app_waiting_for_health_gives_its_turn_away(tmp_path: Path) -> None:
    # The Deployment takes seconds to roll out; the ConfigMap app, which arrives second, is
    # applied and done while the first app still waits (ordering, not timing).
    async with Sandbox(tls=True, rollout_delay=3.0, seed=0) as sb:
        async for env in one_at_a_time(sb, tmp_path):
            slow, quick = app_config("slow", namespace="default"), app_config("quick", namespace="default")
            first = asyncio.ensure_future(env.cluster.sync(slow, [deployment("slow")], env.inventory("slow")))
            while env.cluster.admission.admitted == 0:  # the slow app holds the only turn
                await asyncio.sleep(0.005)
            second = asyncio.ensure_future(env.cluster.sync(quick, [configmap("quick")], env.inventory("quick")))
            done = await asyncio.wait_for(second, 30)
            assert done.ok, done.message
            assert not first.done()  # still waiting for its rollout
            slow_result = await asyncio.wait_for(first, 30)
            assert slow_result.ok, slow_result.message
