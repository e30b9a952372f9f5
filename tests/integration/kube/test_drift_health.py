"""Conflicts with another field manager, drift and self-heal, health pass / fail / timeout."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from gitopsd.core.models import Health, ObjectRef

from .conftest import Env, Kubectl, app_config, configmap, deployment, eventually, get_json

pytestmark = pytest.mark.anyio


async def test_conflict_with_kubectl_forced_and_reported(env: Env, kubectl: Kubectl) -> None:
    cm = configmap("shared", key="from-kubectl")
    cm["metadata"]["namespace"] = "default"
    await kubectl("apply", "--server-side", "--validate=false", "-f", "-", stdin=json.dumps(cm))
    ours = configmap("shared", key="from-git")

    strict = app_config(namespace="default", force_conflicts=False, adopt=True)
    refused = await env.cluster.sync(strict, [ours], env.inventory())
    assert not refused.ok
    (obj,) = refused.objects
    assert obj.action == "failed"
    assert obj.message == "conflict with another field manager: kubectl: .data.key"
    assert (await get_json(kubectl, "configmap", "shared"))["data"]["key"] == "from-kubectl"

    forcing = app_config(namespace="default", adopt=True)  # force_conflicts defaults to true
    taken = await env.cluster.sync(forcing, [ours], env.inventory())
    assert taken.ok, taken.message
    (obj,) = taken.objects
    assert obj.action == "changed"
    assert obj.message == "adopted: it existed without a gitopsd owner; took over fields from kubectl: .data.key"
    live = await get_json(kubectl, "configmap", "shared", "--show-managed-fields")
    assert live["data"]["key"] == "from-git"
    owners = {m["manager"]: m for m in live["metadata"]["managedFields"]}
    assert "f:key" in str(owners["gitopsd"]["fieldsV1"])


async def test_drift_after_scale_is_corrected_within_a_second(env: Env, kubectl: Kubectl) -> None:
    app = app_config(namespace="default", self_heal=True)
    manifests = [deployment("api", replicas=2), configmap("cfg")]
    first = await env.cluster.sync(app, manifests, env.inventory())
    assert first.ok, first.message

    drifted: list[list[ObjectRef]] = []
    corrections: list[float] = []

    async def heal() -> None:
        result = await env.cluster.sync(app, manifests, env.inventory())
        assert result.ok, result.message
        corrections.append(time.monotonic())

    def on_drift(refs: list[ObjectRef]) -> None:
        drifted.append(refs)
        env.sb.reset_counters()
        asyncio.get_running_loop().create_task(heal())

    env.cluster.track(app, manifests, on_drift)
    await kubectl("scale", "deployment", "api", "--replicas=5")
    await eventually(lambda: corrections, within=10)
    assert [str(r) for r in drifted[0]] == ["Deployment.apps default/api"]
    # Fixed without a read (counted, not timed): only applies of the drifted Deployment (the
    # first one meets kubectl's field conflict), no LIST or GET.
    sent = [r for r in env.sb.counters()["requests"] if r["verb"] != "watch"]
    assert {(r["verb"], r["resource"]) for r in sent} == {("apply", "deployments.apps")}, sent
    assert len(corrections) == 1
    assert (await get_json(kubectl, "deployment", "api"))["spec"]["replicas"] == 2
    assert env.cluster.in_sync(app, manifests) is True

    # A deleted object is drift too; an edit of a field we do not manage is not.
    drifted.clear()
    corrections.clear()
    await kubectl("annotate", "configmap", "cfg", "note=hello")
    await asyncio.sleep(0.3)
    assert drifted == []
    await kubectl("delete", "configmap", "cfg")
    await eventually(lambda: corrections, within=10)
    assert [str(r) for r in drifted[0]] == ["ConfigMap default/cfg"]
    await get_json(kubectl, "configmap", "cfg")

    env.cluster.untrack("web")
    drifted.clear()
    await kubectl("scale", "deployment", "api", "--replicas=4")
    await asyncio.sleep(0.3)
    assert drifted == []


async def test_drift_callback_is_fed_by_the_watch(env: Env) -> None:
    """From the API write to the callback with no request in between: the watch event alone
    (which is what makes it milliseconds; counted, not timed)."""
    app = app_config(namespace="default")
    manifests = [configmap("cfg", k="v")]
    await env.cluster.sync(app, manifests, env.inventory())
    seen: list[list[ObjectRef]] = []
    env.cluster.track(app, manifests, seen.append)
    client = env.cluster.client  # another writer would do; this one speaks HTTPS to the sandbox
    env.sb.reset_counters()
    await client.request(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/cfg",
        body={"data": {"k": "edited"}},
        content_type="application/merge-patch+json",
    )
    await eventually(lambda: seen, within=10, interval=0.001)
    assert len(seen) == 1
    assert {v: n for v, n in env.sb.counters()["by_verb"].items() if v != "watch"} == {"patch": 1}


async def test_health_pass(env: Env) -> None:
    app = app_config(namespace="default", timeout=10)
    started = time.monotonic()
    result = await env.cluster.sync(app, [deployment("api")], env.inventory())
    assert result.ok, result.message
    assert result.health == Health.HEALTHY
    # The sandbox rolls out after 0.2 s: the sync waited for it.
    assert time.monotonic() - started >= 0.2


async def test_health_fail_names_object_and_reason(env: Env) -> None:
    app = app_config(namespace="default", timeout=30)
    failing = deployment("broken", **{"sandbox.gitopsd.dev/fail": "true"})
    started = time.monotonic()
    result = await env.cluster.sync(app, [failing, configmap("fine")], env.inventory())
    assert not result.ok
    assert time.monotonic() - started < 10  # failed fast, not at the timeout
    assert "Deployment.apps default/broken" in result.message
    assert "ProgressDeadlineExceeded" in result.message or "timed out progressing" in result.message
    assert result.health == Health.DEGRADED
    by_ref = {str(o.ref): o for o in result.objects}
    assert by_ref["Deployment.apps default/broken"].health == Health.DEGRADED
    assert env.cluster.health(app, [failing, configmap("fine")]) == Health.DEGRADED


async def test_health_timeout(tmp_path: Any) -> None:
    from gitopsd.core.state import StateStore
    from gitopsd.kube import KubeClusterPool
    from gitopsd.sandbox import Sandbox

    from .conftest import StoreInventory, pool_config

    async with Sandbox(tls=True, rollout_delay=60.0) as sb:
        store = await StateStore.open(tmp_path)
        async with KubeClusterPool(pool_config({"main": sb.kubeconfig})) as pool:
            app = app_config(namespace="default", timeout=0.5)
            started = time.monotonic()
            result = await pool.get("main").sync(
                app, [deployment("slow"), configmap("c")], StoreInventory(store, "web")
            )
            elapsed = time.monotonic() - started
        await store.close()
    assert not result.ok
    assert 0.5 <= elapsed < 30  # stopped at the app's timeout, long before the 60 s rollout
    assert "timed out" in result.message and "Deployment.apps default/slow" in result.message
    assert "ConfigMap" not in result.message
    assert result.health == Health.PROGRESSING


async def test_waves_wait_for_health(env: Env, kubectl: Kubectl) -> None:
    app = app_config(namespace="default", timeout=10)
    db = deployment("db", **{"gitopsd.dev/sync-wave": "-1", "sandbox.gitopsd.dev/fail": "true"})
    api = deployment("api", **{"argocd.argoproj.io/sync-wave": "1"})
    result = await env.cluster.sync(app, [api, db], env.inventory())
    assert not result.ok
    by_ref = {str(o.ref): o for o in result.objects}
    assert by_ref["Deployment.apps default/api"].action == "skipped"
    # The later wave was never sent: wave -1 did not become healthy.
    assert "NotFound" in await kubectl("get", "deployment", "api", check=False)

    db["metadata"]["annotations"].pop("sandbox.gitopsd.dev/fail")
    db["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"  # a new rollout
    fixed = await env.cluster.sync(app, [api, db], env.inventory())
    assert fixed.ok, fixed.message
    assert {o.action for o in fixed.objects} == {"changed", "created"}
