"""Ownership and tenancy on the sandbox: adoption, SharedResource, policies, impersonation, installations."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gitopsd.core.errors import ApplyError
from gitopsd.core.models import ObjectRef
from gitopsd.core.state import StateStore
from gitopsd.engine.stages import with_app_namespace
from gitopsd.kube import KubeClusterPool
from gitopsd.kube.inventory import list_records, read_record
from gitopsd.kube.ownership import OWNER_ANNOTATION
from gitopsd.plugin.config import ClusterConfig, Config, DaemonConfig, PolicyConfig
from gitopsd.sandbox import Sandbox

from .conftest import Env, Kubectl, StoreInventory, app_config, configmap, get_json, namespace

pytestmark = pytest.mark.anyio


async def can_i(kubectl: Kubectl, *args: str) -> bool:
    """``kubectl auth can-i ARGS``: "yes" (exit 0), or "no" on stdout with exit 1 (the fixture then
    returns stderr, empty for a plain "no"; an error would show there)."""
    text = await kubectl("auth", "can-i", *args, check=False)
    out = "\n".join(line for line in text.splitlines() if not line.startswith("Warning:")).strip()
    assert out in ("yes", ""), out
    return out == "yes"


async def kubectl_apply(kubectl: Kubectl, obj: dict[str, Any]) -> None:
    """``kubectl apply`` (server-side: the sandbox serves no OpenAPI document for client-side apply)."""
    await kubectl("apply", "--server-side", "--validate=false", "-f", "-", stdin=json.dumps(obj))


def by_hand(name: str, ns: str = "default") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"k": "by-hand"}}

NOT_MANAGED = 'exists and is not managed by gitopsd; set adopt = true on the app or annotate it gitopsd.dev/adopt: "true"'


def by_ref(result: Any) -> dict[str, tuple[str, str]]:
    return {str(o.ref): (o.action, o.message) for o in result.objects}


def writes(sb: Sandbox, resource: str | None = None) -> int:
    rows = sb.counters()["requests"]
    return sum(
        r["count"]
        for r in rows
        if r["verb"] in ("create", "update", "patch", "apply", "delete", "deletecollection")
        and not r["dryRun"]
        and (resource is None or r["resource"] == resource)
    )


async def test_foreign_object_is_refused_then_adopted(env: Env, kubectl: Kubectl) -> None:
    await kubectl_apply(kubectl, by_hand("handmade"))
    app = app_config(namespace="default", prune=True)
    refused = await env.cluster.sync(app, [configmap("handmade", k="from-git"), configmap("mine")], env.inventory())
    assert not refused.ok
    assert by_ref(refused)["ConfigMap default/handmade"] == ("skipped", NOT_MANAGED)
    assert "ConfigMap default/handmade: " + NOT_MANAGED in refused.message
    live = await get_json(kubectl, "configmap", "handmade")
    assert live["data"] == {"k": "by-hand"} and OWNER_ANNOTATION not in (live["metadata"].get("annotations") or {})
    assert [str(r) for r in await env.inventory().current()] == ["ConfigMap default/mine"]
    assert not [e for e in env.events if e.name == "adopted"]

    adopting = app_config(namespace="default", prune=True, adopt=True)
    taken = await env.cluster.sync(adopting, [configmap("handmade", k="from-git"), configmap("mine")], env.inventory())
    assert taken.ok, taken.message
    assert by_ref(taken)["ConfigMap default/handmade"][0] == "changed"
    live = await get_json(kubectl, "configmap", "handmade")
    assert live["data"] == {"k": "from-git"}
    assert live["metadata"]["annotations"][OWNER_ANNOTATION] == "gitopsd/web"
    (event,) = [e for e in env.events if e.name == "adopted"]
    assert event.app == "web" and event.data["objects"] == ["ConfigMap default/handmade"]

    # The per-manifest annotation adopts one object, without the app option.
    await kubectl_apply(kubectl, by_hand("second"))
    annotated = configmap("second")
    annotated["metadata"]["annotations"] = {"gitopsd.dev/adopt": "true"}
    one = await env.cluster.sync(app, [configmap("handmade", k="from-git"), configmap("mine"), annotated], env.inventory())
    assert one.ok, one.message
    assert (await get_json(kubectl, "configmap", "second"))["metadata"]["annotations"][OWNER_ANNOTATION] == "gitopsd/web"


async def test_two_apps_one_object_is_a_shared_resource(env: Env, kubectl: Kubectl) -> None:
    one = app_config(name="one", namespace="default", prune=True)
    two = app_config(name="two", namespace="default", prune=True)
    first = await env.cluster.sync(one, [configmap("shared", by="one")], env.inventory("one"))
    assert first.ok, first.message
    second = await env.cluster.sync(two, [configmap("shared", by="two"), configmap("two-own")], env.inventory("two"))
    assert not second.ok
    action, message = by_ref(second)["ConfigMap default/shared"]
    assert action == "failed"
    assert message.startswith("SharedResource: owned by gitopsd/one, not by gitopsd/two")
    live = await get_json(kubectl, "configmap", "shared")
    assert live["data"] == {"by": "one"} and live["metadata"]["annotations"][OWNER_ANNOTATION] == "gitopsd/one"
    assert "ConfigMap default/shared" not in [str(r) for r in await env.inventory("two").current()]

    # Two drops it: nothing is deleted, and one still owns it.
    dropped = await env.cluster.sync(two, [configmap("two-own")], env.inventory("two"))
    assert dropped.ok, dropped.message
    assert not [o for o in dropped.objects if o.action == "pruned"]
    assert (await get_json(kubectl, "configmap", "shared"))["data"] == {"by": "one"}
    again = await env.cluster.sync(one, [configmap("shared", by="one")], env.inventory("one"))
    assert again.ok and again.counts["unchanged"] == 1


async def test_a_hand_edited_owner_is_drift_and_never_pruned(env: Env, kubectl: Kubectl) -> None:
    app = app_config(namespace="default", prune=True)
    manifests = [configmap("a"), configmap("b")]
    assert (await env.cluster.sync(app, manifests, env.inventory())).ok
    await kubectl("annotate", "--overwrite", "configmap", "b", f"{OWNER_ANNOTATION}=gitopsd/intruder")
    await env.cluster.cache.wait_change(1.0)
    assert env.cluster.in_sync(app, manifests) is False
    refused = await env.cluster.sync(app, manifests, env.inventory())
    assert not refused.ok and by_ref(refused)["ConfigMap default/b"][1].startswith("SharedResource: owned by gitopsd/intruder")
    pruning = await env.cluster.sync(app, [configmap("a")], env.inventory())
    assert pruning.ok, pruning.message
    assert by_ref(pruning)["ConfigMap default/b"] == ("skipped", "not deleted: owned by gitopsd/intruder, not by gitopsd/web")
    await get_json(kubectl, "configmap", "b")


async def test_policy_violations_are_refused_before_any_write(env: Env, kubectl: Kubectl) -> None:
    rules = PolicyConfig(namespaces=["team-a"], deny_kinds=["Secret"])
    app = app_config(namespace="team-a").with_policy("team-a", rules)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}}
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}, "rules": []}
    env.sb.reset_counters()
    result = await env.cluster.sync(
        app,
        [namespace("team-a"), configmap("ok"), configmap("out", namespace="default"), secret, role],
        env.inventory(),
    )
    assert not result.ok
    assert env.sb.counters()["writes"] == 0
    assert result.message.startswith("refused by policy: ")
    objects = by_ref(result)
    assert objects["ConfigMap default/out"] == (
        "failed",
        "namespace 'default' is not allowed by policy team-a (namespaces: [team-a])",
    )
    assert objects["Secret team-a/s"] == ("failed", "kind Secret is denied by policy team-a (deny_kinds)")
    assert objects["ClusterRole.rbac.authorization.k8s.io r"][1].startswith("cluster-scoped kind rbac.authorization.k8s.io/ClusterRole")
    assert objects["Namespace team-a"][0] == objects["ConfigMap team-a/ok"][0] == "skipped"
    assert await env.inventory().current() == []

    ok = await env.cluster.sync(app, [namespace("team-a"), configmap("ok")], env.inventory())
    assert ok.ok, ok.message


ROLE_BINDING = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "RoleBinding",
    "metadata": {"name": "alice-edits", "namespace": "team-a"},
    "subjects": [{"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"}],
    "roleRef": {"kind": "Role", "name": "editor", "apiGroup": "rbac.authorization.k8s.io"},
}
ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "Role",
    "metadata": {"name": "editor", "namespace": "team-a"},
    "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]}],
}


async def test_impersonated_app_needs_rbac_rights(env: Env, kubectl: Kubectl) -> None:
    rules = PolicyConfig(namespaces=["team-a"], impersonate_user="alice", impersonate_groups=["devs", "team-a"])
    app = app_config(namespace="team-a", prune=True).with_policy("team-a", rules)
    assert not await can_i(kubectl, "create", "configmaps", "-n", "team-a", "--as", "alice")
    assert not await can_i(kubectl, "create", "namespaces", "--as", "alice")
    assert await can_i(kubectl, "create", "configmaps", "-n", "team-a")  # the admin

    # The app's namespace (create_namespace) is created with the daemon's credentials: the
    # policy allows it, and alice has no right to create namespaces.
    denied = await env.cluster.sync(app, with_app_namespace(app, [configmap("one"), configmap("two")]), env.inventory())
    assert not denied.ok
    assert by_ref(denied)["Namespace team-a"][0] == "created"
    await get_json(kubectl, "namespace", "team-a")
    for name in ("one", "two"):
        action, message = by_ref(denied)[f"ConfigMap team-a/{name}"]
        assert action == "failed"
        # The namespace is new: nothing can be in it, so no lookup, and the apply is refused.
        assert f'configmaps "{name}" is forbidden: User "alice" cannot patch resource "configmaps"' in message
        assert 'in the namespace "team-a"' in message
    again = await env.cluster.sync(app, with_app_namespace(app, [configmap("one"), configmap("two")]), env.inventory())
    for name in ("one", "two"):  # the namespace exists now: the owner lookup (impersonated too) is refused
        assert 'User "alice" cannot get resource "configmaps"' in by_ref(again)[f"ConfigMap team-a/{name}"][1]
    assert "NotFound" in await kubectl("get", "configmap", "one", "-n", "team-a", check=False)
    # The inventory (written before the apply) holds them: alice could not say whether they exist.
    # Its record in the cluster was written with the daemon's own credentials (alice has no rights there).
    assert {r.name for r in await env.inventory().current()} == {"one", "two"}
    record = await read_record(env.cluster.client, "gitopsd-system", "gitopsd", "web")
    assert record is not None and {r.name for r in record.refs} == {"one", "two"}

    # Read-only rights: the GET passes, the apply itself (impersonated too) is refused.
    viewer = json.loads(json.dumps(ROLE))
    viewer["rules"][0]["verbs"] = ["get", "list", "watch"]
    await kubectl_apply(kubectl, viewer)
    await kubectl_apply(kubectl, ROLE_BINDING)
    read_only = await env.cluster.sync(app, [configmap("one"), configmap("two")], env.inventory())
    assert not read_only.ok
    for name in ("one", "two"):
        assert 'User "alice" cannot patch resource "configmaps"' in by_ref(read_only)[f"ConfigMap team-a/{name}"][1]
    assert "NotFound" in await kubectl("get", "configmap", "one", "-n", "team-a", check=False)

    await kubectl_apply(kubectl, ROLE)
    as_alice = ("--as", "alice", "--as-group", "devs")
    assert await can_i(kubectl, "create", "configmaps", "-n", "team-a", *as_alice)
    assert not await can_i(kubectl, "create", "configmaps", "-n", "team-a", "--as", "alice")  # not in devs
    assert not await can_i(kubectl, "create", "secrets", "-n", "team-a", *as_alice)
    assert not await can_i(kubectl, "create", "configmaps", "-n", "team-b", *as_alice)
    allowed = await env.cluster.sync(app, [configmap("one"), configmap("two")], env.inventory())
    assert allowed.ok, allowed.message
    assert allowed.counts["created"] == 2
    record = await read_record(env.cluster.client, "gitopsd-system", "gitopsd", "web")
    assert record is not None and {r.name for r in record.refs} == {"one", "two"}

    # Prune is impersonated too: without the delete right, the object stays and the sync says why.
    narrowed = json.loads(json.dumps(ROLE))
    narrowed["rules"][0]["verbs"].remove("delete")
    await kubectl_apply(kubectl, narrowed)
    kept = await env.cluster.sync(app, [configmap("one")], env.inventory())
    assert not kept.ok
    assert 'User "alice" cannot delete resource "configmaps"' in by_ref(kept)["ConfigMap team-a/two"][1]
    await get_json(kubectl, "configmap", "two", "-n", "team-a")


@pytest.fixture
async def instance_b(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Env]:
    store = await StateStore.open(tmp_path / "state-b")
    config = Config(
        daemon=DaemonConfig(instance="b"),
        clusters={"main": ClusterConfig(kubeconfig=sandbox.kubeconfig, request_timeout=5)},
    )
    try:
        async with KubeClusterPool(config) as pool:
            yield Env(sandbox, pool, store)
    finally:
        await store.close()


@pytest.fixture
async def instance_a(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Env]:
    store = await StateStore.open(tmp_path / "state-a")
    config = Config(
        daemon=DaemonConfig(instance="a"),
        clusters={"main": ClusterConfig(kubeconfig=sandbox.kubeconfig, request_timeout=5)},
    )
    try:
        async with KubeClusterPool(config) as pool:
            yield Env(sandbox, pool, store)
    finally:
        await store.close()


async def test_two_installations_never_touch_each_other(instance_a: Env, instance_b: Env, kubectl: Kubectl) -> None:
    app = app_config(namespace="default", prune=True, allow_empty=True)  # same app name in both
    a = await instance_a.cluster.sync(app, [configmap("a-only"), configmap("contested", by="a")], instance_a.inventory())
    assert a.ok, a.message
    b = await instance_b.cluster.sync(app, [configmap("b-only"), configmap("contested", by="b")], instance_b.inventory())
    assert not b.ok
    assert by_ref(b)["ConfigMap default/contested"][1].startswith("SharedResource: owned by a/web, not by b/web")
    assert (await get_json(kubectl, "configmap", "contested"))["data"] == {"by": "a"}

    # b empties its app: it prunes its own object only.
    emptied = await instance_b.cluster.sync(app, [], instance_b.inventory())
    assert emptied.ok, emptied.message
    assert {str(o.ref) for o in emptied.objects if o.action == "pruned"} == {"ConfigMap default/b-only"}
    for name in ("a-only", "contested"):
        assert (await get_json(kubectl, "configmap", name))["metadata"]["annotations"][OWNER_ANNOTATION] == "a/web"
    record_a = await read_record(instance_a.cluster.client, "gitopsd-system", "a", "web")
    assert record_a is not None and {r.name for r in record_a.refs} == {"a-only", "contested"}
    assert await read_record(instance_b.cluster.client, "gitopsd-system", "b", "web") is None  # empty: deleted
    assert [(r.instance, r.app) for r in await list_records(instance_b.cluster.client, "gitopsd-system", "a")] == [("a", "web")]
    assert await list_records(instance_b.cluster.client, "gitopsd-system", "b") == []


async def test_cluster_record_rebuilds_a_lost_state(env: Env, kubectl: Kubectl, tmp_path: Path) -> None:
    app = app_config(namespace="default", prune=True)
    env.sb.reset_counters()
    first = await env.cluster.sync(app, [configmap("keep"), configmap("drop")], env.inventory())
    assert first.ok, first.message
    record = await get_json(kubectl, "configmap", "gitopsd-inventory.gitopsd.web", "-n", "gitopsd-system")
    assert record["metadata"]["labels"]["gitopsd.dev/instance"] == "gitopsd"
    assert "drop" in record["data"]["objects"]
    # Written once (after the namespace was created), before the apply.
    assert writes(env.sb, "configmaps") == 2 + 2  # the record's first apply (404, no namespace) + retry; 2 objects
    env.sb.reset_counters()
    again = await env.cluster.sync(app, [configmap("keep"), configmap("drop", k="changed")], env.inventory())
    assert again.ok and again.counts["changed"] == 1
    assert writes(env.sb) == 1  # ownership did not change: the record is not written

    # A fresh daemon with a lost SQLite state: the record says what the app owns.
    store = await StateStore.open(tmp_path / "lost")
    config = Config(clusters={"main": ClusterConfig(kubeconfig=env.sb.kubeconfig, request_timeout=5)})
    try:
        async with KubeClusterPool(config) as pool:
            env.sb.reset_counters()
            preview = await pool.get("main").sync(app, [configmap("keep")], StoreInventory(store, "web"), dry_run=True)
            assert preview.ok, preview.message
            assert {str(o.ref) for o in preview.objects if o.action == "pruned"} == {"ConfigMap default/drop"}
            assert writes(env.sb) == 0 and await store.inventory("web") == []  # a dry run changes nothing
            pruned = await pool.get("main").sync(app, [configmap("keep")], StoreInventory(store, "web"))
        assert pruned.ok, pruned.message
        assert {str(o.ref) for o in pruned.objects if o.action == "pruned"} == {"ConfigMap default/drop"}
        assert [str(r) for r in await store.inventory("web")] == ["ConfigMap default/keep"]
    finally:
        await store.close()


async def test_objects_of_older_versions_are_adopted_silently(env: Env, kubectl: Kubectl) -> None:
    # What a gitopsd before owner annotations left: our labels, in our inventory, no owner.
    old = configmap("legacy")
    old["metadata"]["namespace"] = "default"
    old["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "gitopsd", "gitopsd.dev/app": "web"}
    await kubectl("apply", "--server-side", "--validate=false", "--field-manager=gitopsd", "-f", "-", stdin=json.dumps(old))
    inventory = env.inventory()
    await inventory.add([ObjectRef("", "v1", "ConfigMap", "default", "legacy")])
    app = app_config(namespace="default")
    result = await env.cluster.sync(app, [configmap("legacy")], inventory)
    assert result.ok, result.message
    assert by_ref(result)["ConfigMap default/legacy"][0] == "changed"
    live = await get_json(kubectl, "configmap", "legacy")
    assert live["metadata"]["annotations"][OWNER_ANNOTATION] == "gitopsd/web"
    assert not [e for e in env.events if e.name == "adopted"]


async def test_owner_lookups_cost_nothing_in_a_namespace_the_sync_creates(env: Env, kubectl: Kubectl) -> None:
    app = app_config(name="fresh", namespace="fresh")
    env.sb.reset_counters()
    result = await env.cluster.sync(app, with_app_namespace(app, [configmap("a"), configmap("b")]), env.inventory("fresh"))
    assert result.ok and result.counts["created"] == 3, result.message
    gets = sum(r["count"] for r in env.sb.counters()["requests"] if r["verb"] == "get" and r["resource"] == "configmaps")
    assert gets == 1  # the inventory record's first read; none for the app's ConfigMaps


async def test_owner_lookups_are_one_list_per_kind_and_namespace(env: Env, kubectl: Kubectl) -> None:
    app = app_config(namespace="default")
    assert (await env.cluster.sync(app, [configmap("first")], env.inventory())).ok  # the record is read
    await kubectl_apply(kubectl, by_hand("foreign"))
    env.sb.reset_counters()
    manifests = [configmap("first"), configmap("a"), configmap("b"), configmap("c"), configmap("foreign")]
    result = await env.cluster.sync(app, manifests, env.inventory())
    assert not result.ok and by_ref(result)["ConfigMap default/foreign"] == ("skipped", NOT_MANAGED)
    assert result.counts["created"] == 3
    reads = {r["verb"]: r["count"] for r in env.sb.counters()["requests"] if r["resource"] == "configmaps" and r["verb"] in ("get", "list")}
    assert reads == {"list": 1}, reads  # four look-ups, one request


async def test_an_unreachable_cluster_during_owner_lookups_is_reported_as_such(env: Env) -> None:
    app = app_config(namespace="default")
    assert (await env.cluster.sync(app, [configmap("first")], env.inventory())).ok
    env.sb.set_faults({"rules": [{"verb": "get", "resource": "configmaps", "drop_rate": 1.0}]})
    try:
        with pytest.raises(ApplyError) as info:  # not an exception group
            await env.cluster.sync(app, [configmap("first"), configmap("new")], env.inventory())
    finally:
        env.sb.set_faults(None)
    assert info.value.reason == "ClusterUnreachable"
