"""The pool's extras: the gitopsd_health hook, prune_all of a removed app, the request observer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gitopsd import HealthStatus, hookimpl
from gitopsd.core.models import Health
from gitopsd.core.state import StateStore
from gitopsd.kube import KubeClusterPool
from gitopsd.plugin.manager import PluginManager
from gitopsd.sandbox import Sandbox

from .conftest import Env, Kubectl, StoreInventory, app_config, configmap, deployment, pool_config
from .test_apply import CRD, widget

pytestmark = pytest.mark.anyio


class WidgetHealth:
    """A third-party plugin that knows when a Widget is healthy."""

    @hookimpl
    def gitopsd_health(self, obj: dict[str, Any]) -> HealthStatus | None:
        if obj.get("kind") != "Widget":
            return None
        if obj["spec"]["size"] > 5:
            return HealthStatus(Health.DEGRADED, "too big")
        return HealthStatus(Health.HEALTHY)


async def test_health_hook_decides_for_unknown_kinds(tmp_path: Path) -> None:
    pm = PluginManager(load_entry_points=False, plugins=[WidgetHealth()])
    async with Sandbox(tls=True, rollout_delay=0.05) as sb:
        store = await StateStore.open(tmp_path)
        try:
            async with KubeClusterPool(pool_config({"main": sb.kubeconfig}), pm.hooks) as pool:
                cluster = pool.get("main")
                app = app_config(namespace="default", timeout=5)
                ok = await cluster.sync(
                    app, [CRD, widget("small", 1)], StoreInventory(store, "web")
                )
                assert ok.ok and ok.health == Health.HEALTHY, ok.message
                bad = await cluster.sync(
                    app, [CRD, widget("small", 1), widget("big", 9)], StoreInventory(store, "web")
                )
                assert not bad.ok
                assert "Widget.example.com default/big: too big" in bad.message
                assert cluster.health(app, [CRD, widget("big", 9)]) == Health.DEGRADED
        finally:
            await store.close()


async def test_prune_all_of_a_removed_app(env: Env, kubectl: Kubectl) -> None:
    app = app_config(namespace="default", prune_on_remove=True)
    await env.cluster.sync(
        app, [configmap("a"), deployment("b"), configmap("kept")], env.inventory()
    )
    await kubectl("annotate", "configmap", "kept", "gitopsd.dev/prune=disabled")
    result = await env.cluster.prune_all(app, env.inventory())
    assert result.ok, result.message
    assert {str(o.ref) for o in result.objects if o.action == "pruned"} == {
        "ConfigMap default/a",
        "Deployment.apps default/b",
    }
    assert "NotFound" in await kubectl("get", "deployment", "b", check=False)
    assert "kept" in await kubectl("get", "configmap", "kept")
    assert await env.inventory().current() == []


async def test_request_observer_sees_every_request(tmp_path: Path) -> None:
    seen: list[tuple[str, str, int | str]] = []
    async with Sandbox(tls=True, rollout_delay=0.05) as sb:
        store = await StateStore.open(tmp_path)
        try:
            async with KubeClusterPool(
                pool_config({"main": sb.kubeconfig}), on_request=lambda *a: seen.append(a)
            ) as pool:
                result = await pool.get("main").sync(
                    app_config(namespace="default"),
                    [configmap("a"), deployment("b")],
                    StoreInventory(store, "web"),
                )
                assert result.ok
        finally:
            await store.close()
        counters = sb.counters()
    sent = [s for s in seen if s[1] != "watch"]
    served = sum(n for v, n in counters["by_verb"].items() if v != "watch") + counters["discovery"]
    assert len(sent) == served
    assert ("main", "PATCH", 200) in seen or ("main", "PATCH", 201) in seen
    assert all(s[0] == "main" for s in seen)
