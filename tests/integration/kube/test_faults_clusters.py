"""Injected faults still converge; an unreachable cluster never slows a healthy one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from gitopsd.core.errors import ApplyError
from gitopsd.core.events import ClusterReachable, ClusterUnreachable, Event
from gitopsd.core.models import Health, SyncResult
from gitopsd.core.state import StateStore
from gitopsd.kube import APP_LABEL, KubeClusterPool
from gitopsd.sandbox import Sandbox

from .conftest import (
    StoreInventory,
    app_config,
    configmap,
    deployment,
    eventually,
    make_kubectl,
    pool_config,
)

pytestmark = pytest.mark.anyio

FAULTS = {
    "rules": [
        # 20 % of every verb (list, watch, get, apply, delete, discovery-free) answers an error ...
        {
            "verb": "*",
            "resource": "*",
            "error_rate": 0.2,
            "code": [429, 500, 502, 503, 504],
            "retry_after": 0,
        },
        # ... and some connections are dropped without an answer.
        {"verb": "*", "resource": "*", "drop_rate": 0.05},
    ]
}


async def converge(
    cluster: Any, app: Any, manifests: list[dict[str, Any]], inventory: Any
) -> SyncResult:
    """What the engine does: sync again until it succeeds (bounded)."""
    result = None
    for _ in range(5):
        try:
            result = await cluster.sync(app, manifests, inventory)
        except ApplyError as exc:
            result = SyncResult(app=app.name, revision="", ok=False, message=str(exc))
        if result.ok:
            return result
    raise AssertionError(f"did not converge: {result.message if result else ''}")


async def owned_objects(kubectl: Any, app: str) -> list[str]:
    import json

    names = []
    for kind in ("configmaps", "deployments"):
        out = json.loads(await kubectl("get", kind, "-A", "-l", f"{APP_LABEL}={app}", "-o", "json"))
        names += [
            f"{kind}/{i['metadata']['namespace']}/{i['metadata']['name']}" for i in out["items"]
        ]
    return sorted(names)


async def test_injected_faults_converge_without_duplicates_or_orphans(tmp_path: Path) -> None:
    async with Sandbox(tls=True, rollout_delay=0.05, seed=7) as sb:
        kubectl = make_kubectl(sb.kubeconfig, tmp_path / "kubectl")
        store = await StateStore.open(tmp_path / "state")
        inventory = StoreInventory(store, "web")
        app = app_config(namespace="default", prune=True, timeout=30)
        full = [configmap(f"cm-{i}", v=str(i)) for i in range(20)] + [
            deployment(f"d-{i}") for i in range(4)
        ]
        half = full[:10] + full[20:22]
        try:
            async with KubeClusterPool(
                pool_config({"main": sb.kubeconfig}, request_timeout=5)
            ) as pool:
                cluster = pool.get("main")
                sb.set_faults(FAULTS)
                await converge(cluster, app, full, inventory)
                await converge(cluster, app, half, inventory)
                injected = dict(sb.faults.injected)
                sb.set_faults(None)

                expected = sorted(
                    [f"configmaps/default/cm-{i}" for i in range(10)]
                    + [f"deployments/default/d-{i}" for i in range(2)]
                )
                assert await owned_objects(kubectl, "web") == expected
                assert sorted(f"{r.kind}/{r.name}" for r in await inventory.current()) == sorted(
                    [f"ConfigMap/cm-{i}" for i in range(10)]
                    + [f"Deployment/d-{i}" for i in range(2)]
                )
                # After the storm the cache is exact again: a no-op costs nothing.
                sb.reset_counters()
                again = await cluster.sync(app, half, inventory)
                assert again.ok and again.counts["unchanged"] == 12, again.message
                assert {v: n for v, n in sb.counters()["by_verb"].items() if v != "watch"} == {}
        finally:
            await store.close()
    assert sum(injected.values()) >= 10, injected  # the faults really happened


async def test_unreachable_cluster_does_not_delay_a_healthy_one(tmp_path: Path) -> None:
    events: list[Event] = []
    async with (
        Sandbox(tls=True, rollout_delay=0.1) as good,
        Sandbox(tls=True, rollout_delay=0.1, seed=1) as bad,
    ):
        store = await StateStore.open(tmp_path / "state")
        bad.set_faults({"rules": [{"verb": "*", "resource": "*", "drop_rate": 1.0}]})
        config = pool_config({"good": good.kubeconfig, "bad": bad.kubeconfig}, request_timeout=3)
        try:
            async with KubeClusterPool(config, None, events.append) as pool:
                on_good = app_config(name="front", cluster="good", namespace="default")
                on_bad = app_config(name="back", cluster="bad", namespace="default")
                manifests = [deployment("api"), configmap("cfg")]
                times: dict[str, float] = {}
                outcome: dict[str, Any] = {}

                async def run(app: Any) -> None:
                    started = time.monotonic()
                    try:
                        outcome[app.name] = await pool.get(app.cluster).sync(
                            app, manifests, StoreInventory(store, app.name)
                        )
                    except ApplyError as exc:
                        outcome[app.name] = exc
                    times[app.name] = time.monotonic() - started

                await asyncio.gather(run(on_bad), run(on_good))
                assert isinstance(outcome["front"], SyncResult) and outcome["front"].ok
                assert times["front"] < 3.0, times
                error = outcome["back"]
                assert isinstance(error, ApplyError) and error.reason == "ClusterUnreachable"
                assert "bad" in str(error)
                assert times["back"] > times["front"]

                bad_cluster = pool.get("bad")
                assert not bad_cluster.reachable
                assert bad_cluster.health(on_bad, manifests) == Health.UNKNOWN
                assert bad_cluster.in_sync(on_bad, manifests) is None
                down = [e for e in events if isinstance(e, ClusterUnreachable)]
                assert [e.cluster for e in down] == ["bad"]
                assert bad.token not in down[0].message

                # Once it has been down longer than the grace period, a sync fails at once.
                await eventually(lambda: bad_cluster.client.unreachable_for() > 5.5, within=10)
                # "At once": the fast path (no request, no retry) is the only one saying this.
                with pytest.raises(ApplyError, match="no answer from the API server"):
                    await bad_cluster.sync(on_bad, manifests, StoreInventory(store, "back"))

                # Back: it answers again and reconciles.
                bad.set_faults(None)
                await eventually(lambda: bad_cluster.reachable, within=15)
                assert any(isinstance(e, ClusterReachable) and e.cluster == "bad" for e in events)
                result = await bad_cluster.sync(on_bad, manifests, StoreInventory(store, "back"))
                assert result.ok, result.message
        finally:
            await store.close()
