"""What a sync costs the inventory: one record write per sync that changes ownership, none otherwise.

The record (a ConfigMap in ``gitopsd-system``) is counted in the sandbox's write log; the
engine's own (SQLite) inventory through a counting :class:`StoreInventory` over the real store.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import anyio
import pytest

from gitopsd.core.models import ObjectRef
from gitopsd.core.state import StateStore
from gitopsd.kube.client import KubeClient
from gitopsd.kube.inventory import InventoryRecords, read_record
from gitopsd.plugin.config import ClusterConfig
from gitopsd.sandbox import Sandbox

from .conftest import Env, Kubectl, app_config, configmap, deployment, namespace
from .test_ownership import NOT_MANAGED, by_hand, by_ref, kubectl_apply

pytestmark = pytest.mark.anyio

RECORDS = "gitopsd-system"


class CountingInventory:
    """The engine's inventory over the real state store, counting the calls the cluster makes."""

    def __init__(self, store: StateStore, app: str):
        self.store = store
        self.app = app
        self.calls: Counter[str] = Counter()

    async def current(self) -> list[ObjectRef]:
        self.calls["current"] += 1
        return await self.store.inventory(self.app)

    async def add(self, refs: Iterable[ObjectRef]) -> None:
        self.calls["add"] += 1
        await self.store.add_to_inventory(self.app, list(refs))

    async def remove(self, refs: Iterable[ObjectRef]) -> None:
        self.calls["remove"] += 1
        await self.store.remove_from_inventory(self.app, list(refs))


def record_writes(sb: Sandbox) -> list[dict[str, Any]]:
    return [w for w in sb.counters()["write_log"] if w["resource"] == "configmaps" and w["namespace"] == RECORDS]


def service(name: str, namespace: str, **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
    }


def shop(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Three steps: the namespace (foundation), a ConfigMap (early kinds), a Deployment (wave 0)."""
    return [namespace("shop"), configmap("settings", "shop"), deployment("web", namespace="shop"), *extra]


async def test_the_record_is_written_once_per_sync_and_not_when_unchanged(env: Env) -> None:
    app = app_config(namespace="shop", prune=True)
    local = CountingInventory(env.store, "web")
    first = await env.cluster.sync(app, shop(), local)
    assert first.ok and first.counts["created"] == 3, first.message
    assert len(record_writes(env.sb)) == 1  # not one per step: the namespace's objects come with it
    record = await read_record(env.cluster.client, RECORDS, "gitopsd", "web")
    assert record is not None and {r.name for r in record.refs} == {"shop", "settings", "web"}
    assert local.calls == {"current": 1, "add": 1}  # one read at the first sync, one write

    env.sb.reset_counters()
    local.calls.clear()
    again = await env.cluster.sync(app, shop(), local)
    assert again.ok and again.counts["unchanged"] == 3, again.message
    assert env.sb.counters()["writes"] == 0
    assert not local.calls  # ownership did not change: SQLite is neither read nor written

    env.sb.reset_counters()
    grown = await env.cluster.sync(app, shop(configmap("extra", "shop"), service("api", "shop")), local)
    assert grown.ok and grown.counts["created"] == 2, grown.message
    # The namespace exists: each step adds its own objects (after their owner checks).
    assert len(record_writes(env.sb)) == 2 and local.calls == {"add": 2}

    env.sb.reset_counters()
    local.calls.clear()
    shrunk = await env.cluster.sync(app, shop(), local)  # two prune groups (Service, then ConfigMap)
    assert shrunk.ok and shrunk.counts["pruned"] == 2, shrunk.message
    assert len(record_writes(env.sb)) == 1 and local.calls == {"remove": 1}
    assert sorted(r.name for r in await env.store.inventory("web")) == ["settings", "shop", "web"]


async def test_a_refused_object_does_not_stay_in_the_inventory(env: Env, kubectl: Kubectl) -> None:
    app = app_config(namespace="default")
    assert (await env.cluster.sync(app, [configmap("first")], env.inventory())).ok
    await kubectl_apply(kubectl, by_hand("foreign"))
    # The foreign ConfigMap is not in the live cache (no gitopsd labels): added ahead, then
    # refused by the owner check of its step.
    result = await env.cluster.sync(app, [configmap("first"), configmap("foreign"), deployment("web")], env.inventory())
    assert not result.ok
    assert by_ref(result)["ConfigMap default/foreign"] == ("skipped", NOT_MANAGED)
    assert by_ref(result)["Deployment.apps default/web"][0] == "skipped"  # a later step: added ahead, never sent
    names = {"first"}
    assert {r.name for r in await env.store.inventory("web")} == names
    record = await read_record(env.cluster.client, RECORDS, "gitopsd", "web")
    assert record is not None and {r.name for r in record.refs} == names


async def test_objects_a_failed_step_leaves_unsent_leave_the_inventory(env: Env) -> None:
    app = app_config(namespace="shop")
    manifests = [
        namespace("shop"),
        service("api", "shop", **{"gitopsd.dev/sync-wave": "0"}),
        deployment("web", namespace="shop", **{"gitopsd.dev/sync-wave": "1"}),
    ]
    env.sb.set_faults({"rules": [{"verb": "apply", "resource": "services", "error_rate": 1.0, "code": 400}]})
    try:
        # The Deployment is added to the inventory with its namespace (one write), then never sent.
        result = await env.cluster.sync(app, manifests, env.inventory())
    finally:
        env.sb.set_faults(None)
    assert not result.ok
    assert by_ref(result)["Service shop/api"][0] == "failed", by_ref(result)
    assert by_ref(result)["Deployment.apps shop/web"][0] == "skipped", by_ref(result)
    assert [r.name for r in await env.store.inventory("web")] == ["shop"]  # neither was created
    record = await read_record(env.cluster.client, RECORDS, "gitopsd", "web")
    assert record is not None and {r.name for r in record.refs} == {"shop"}
    ok = await env.cluster.sync(app, manifests, env.inventory())
    assert ok.ok, ok.message
    assert sorted(r.name for r in await env.store.inventory("web")) == ["api", "shop", "web"]


async def test_objects_of_an_existing_namespace_are_added_by_their_own_step(env: Env, kubectl: Kubectl) -> None:
    app = app_config(namespace="default")
    assert (await env.cluster.sync(app, [configmap("first")], env.inventory())).ok
    await kubectl_apply(kubectl, by_hand("foreign"))
    env.sb.reset_counters()
    # The refused ConfigMap stops the steps after it: the Deployment is never in the inventory.
    result = await env.cluster.sync(app, [configmap("first"), configmap("foreign"), deployment("web")], env.inventory())
    assert not result.ok and by_ref(result)["Deployment.apps default/web"][0] == "skipped"
    assert record_writes(env.sb) == []


async def test_apps_finding_the_records_namespace_missing_create_it_once(sandbox: Sandbox) -> None:
    """A cold start on a new cluster: every app writes its first record at once, and the records'
    namespace is not there yet. One app creates it; the others wait for it and write once each."""
    client = KubeClient("main", ClusterConfig(kubeconfig=sandbox.kubeconfig), lambda *a: None)
    await client.open()
    records = InventoryRecords(client, "gitopsd-fresh", "gitopsd")
    sandbox.reset_counters()
    try:
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(records.write, f"app{i}", frozenset({ObjectRef("", "v1", "ConfigMap", f"ns{i}", "cm")}))
    finally:
        await client.close()
    counters = sandbox.counters()
    created = [w for w in counters["write_log"] if w["resource"] == "namespaces" and w["name"] == "gitopsd-fresh"]
    written = [w for w in counters["write_log"] if w["resource"] == "configmaps" and w["namespace"] == "gitopsd-fresh"]
    assert len(created) == 1
    assert len(written) == 20
    missing = sum(r["count"] for r in counters["requests"] if r["resource"] == "configmaps" and r["code"] == 404)
    assert missing == 1, counters["requests"]  # the first write only: the others waited for the namespace
