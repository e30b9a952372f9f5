"""Apply: ordering (CRD + its custom resources in one render), namespaces, labels, no-op reconciles."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gitopsd.core.models import Health
from gitopsd.kube import APP_LABEL, MANAGED_BY_LABEL
from gitopsd.kube.inventory import InventoryRecord, write_record

from .conftest import (
    Env,
    Kubectl,
    app_config,
    configmap,
    deployment,
    eventually,
    get_json,
    namespace,
)

pytestmark = pytest.mark.anyio

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {
            "kind": "Widget",
            "plural": "widgets",
            "singular": "widget",
            "listKind": "WidgetList",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def widget(name: str, size: int, ns: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if ns:
        meta["namespace"] = ns
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": meta,
        "spec": {"size": size},
    }


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


async def test_crd_and_its_resources_in_one_render(env: Env, kubectl: Kubectl) -> None:
    app = app_config(namespace="shop")
    # Deliberately in the worst order: custom resources first, their CRD and namespace last.
    manifests = [
        widget("w1", 1),
        widget("w2", 2, ns="shop"),
        deployment("api"),
        configmap("settings"),
        CRD,
        namespace("shop"),
    ]
    result = await env.cluster.sync(app, manifests, env.inventory())
    assert result.ok, result.message
    assert result.counts["created"] == 6
    assert result.health == Health.HEALTHY

    crd = await get_json(kubectl, "crd", "widgets.example.com")
    ns = await get_json(kubectl, "namespace", "shop")
    w1 = await get_json(kubectl, "widgets.example.com", "w1", "-n", "shop")
    cm = await get_json(kubectl, "configmap", "settings", "-n", "shop")
    dep = await get_json(kubectl, "deployment", "api", "-n", "shop")
    # The CRD and the namespace were written before anything that needs them.
    assert rv(crd) < rv(w1) and rv(ns) < rv(cm) < rv(dep)
    assert w1["spec"] == {"size": 1}
    inventory = {str(r) for r in await env.inventory().current()}
    assert inventory == {
        "CustomResourceDefinition.apiextensions.k8s.io widgets.example.com",
        "Namespace shop",
        "Widget.example.com shop/w1",
        "Widget.example.com shop/w2",
        "Deployment.apps shop/api",
        "ConfigMap shop/settings",
    }


async def test_namespace_defaulting_and_labels(env: Env, kubectl: Kubectl) -> None:
    app = app_config(name="web", namespace="default")
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "reader", "namespace": "ignored"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    }
    cm = configmap("plain")
    cm["metadata"]["labels"] = {"tier": "backend"}
    result = await env.cluster.sync(app, [cm, role], env.inventory())
    assert result.ok, result.message
    live_cm = await get_json(
        kubectl, "configmap", "plain", "-n", "default", "--show-managed-fields"
    )
    live_role = await get_json(kubectl, "clusterrole", "reader")
    for obj in (live_cm, live_role):
        assert obj["metadata"]["labels"][MANAGED_BY_LABEL] == "gitopsd"
        assert obj["metadata"]["labels"][APP_LABEL] == "web"
    assert live_cm["metadata"]["labels"]["tier"] == "backend"
    assert "namespace" not in live_role["metadata"]
    managers = {m["manager"] for m in live_cm["metadata"]["managedFields"]}
    assert "gitopsd" in managers


async def test_noop_reconcile_sends_no_request(env: Env) -> None:
    app = app_config(namespace="default")
    manifests = [deployment("api", replicas=3), configmap("one"), configmap("two", a="1", b="2")]
    first = await env.cluster.sync(app, manifests, env.inventory())
    assert first.ok, first.message
    env.sb.reset_counters()

    second = await env.cluster.sync(app, manifests, env.inventory())
    assert second.ok, second.message
    assert (
        second.counts["unchanged"] == 3
        and second.counts["created"] == second.counts["changed"] == 0
    )
    assert env.cluster.in_sync(app, manifests) is True
    assert env.cluster.health(app, manifests) == Health.HEALTHY
    counters = env.sb.counters()
    non_watch = {verb: n for verb, n in counters["by_verb"].items() if verb != "watch"}
    assert non_watch == {} and counters["discovery"] == 0, counters

    # A changed object costs exactly one apply; the others none.
    changed = [
        deployment("api", replicas=3),
        configmap("one", k="new"),
        configmap("two", a="1", b="2"),
    ]
    assert env.cluster.in_sync(app, changed) is False
    third = await env.cluster.sync(app, changed, env.inventory())
    assert third.ok and third.counts["changed"] == 1, third
    assert env.sb.counters()["writes"] == 1


async def test_quantities_and_defaults_are_not_differences(env: Env) -> None:
    app = app_config(namespace="default")
    dep = deployment("api")
    await env.cluster.sync(app, [dep], env.inventory())
    same = deployment("api")
    same["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] = {
        "cpu": "0.5",
        "memory": "1024Mi",
    }
    assert env.cluster.in_sync(app, [same]) is True
    other = deployment("api")
    other["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "0.6"
    assert env.cluster.in_sync(app, [other]) is False


async def test_unknown_kind_fails_before_any_write(env: Env) -> None:
    app = app_config(namespace="default")
    bogus = {"apiVersion": "nope.example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}}
    env.sb.reset_counters()
    result = await env.cluster.sync(app, [configmap("c"), bogus], env.inventory())
    assert not result.ok
    assert "Gadget" in result.message
    assert env.sb.counters()["writes"] == 0
    assert await env.inventory().current() == []


async def test_invalid_object_stops_later_waves(env: Env, kubectl: Kubectl) -> None:
    app = app_config(namespace="default")
    bad = deployment("bad", **{"gitopsd.dev/sync-wave": "0"})
    bad["spec"]["template"]["metadata"]["labels"] = {
        "app": "other"
    }  # 422 Invalid: selector mismatch
    later = deployment("later", **{"argocd.argoproj.io/sync-wave": "5"})
    result = await env.cluster.sync(app, [bad, later], env.inventory())
    assert not result.ok
    actions = {str(o.ref): (o.action, o.message) for o in result.objects}
    assert actions["Deployment.apps default/bad"][0] == "failed"
    assert "Invalid" in actions["Deployment.apps default/bad"][1]
    assert "selector" in actions["Deployment.apps default/bad"][1]
    assert actions["Deployment.apps default/later"][0] == "skipped"
    assert "NotFound" in await kubectl("get", "deployment", "later", check=False)
    # Nothing was created, so nothing is left in the inventory.
    assert await env.inventory().current() == []


async def test_dry_run_changes_nothing(env: Env) -> None:
    app = app_config(namespace="default")
    env.sb.reset_counters()
    result = await env.cluster.sync(
        app, [configmap("c"), deployment("d")], env.inventory(), dry_run=True
    )
    assert result.ok and result.dry_run, result.message
    assert result.counts["created"] == 2
    counters = env.sb.counters()
    assert counters["writes"] == 0 and counters["dry_run_writes"] == 2
    assert await env.inventory().current() == []
    assert env.cluster.in_sync(app, [configmap("c")]) is False


async def test_immutable_field_reported_or_replaced(env: Env, kubectl: Kubectl) -> None:
    app = app_config(namespace="default")
    await env.cluster.sync(app, [deployment("api")], env.inventory())
    uid = (await get_json(kubectl, "deployment", "api"))["metadata"]["uid"]
    moved = deployment("api")
    moved["spec"]["selector"]["matchLabels"] = {"app": "api", "v": "2"}
    moved["spec"]["template"]["metadata"]["labels"] = {"app": "api", "v": "2"}

    refused = await env.cluster.sync(app, [moved], env.inventory())
    assert not refused.ok
    (obj,) = refused.objects
    assert (
        obj.action == "failed"
        and "immutable" in obj.message
        and "replace_on_immutable" in obj.message
    )

    replacing = app_config(namespace="default", replace_on_immutable=True)
    replaced = await env.cluster.sync(replacing, [moved], env.inventory())
    assert replaced.ok, replaced.message
    live = await get_json(kubectl, "deployment", "api")
    assert live["metadata"]["uid"] != uid
    assert live["spec"]["selector"]["matchLabels"] == {"app": "api", "v": "2"}


async def test_unchanged_objects_missing_from_the_inventory_are_added(env: Env) -> None:
    app = app_config(namespace="default")
    await env.cluster.sync(app, [configmap("a")], env.inventory())
    # Lost state and no record (an installation older than records), as a restart finds them:
    await env.store.remove_from_inventory("web", await env.inventory().current())
    await write_record(env.cluster.client, "gitopsd-system", InventoryRecord("gitopsd", "web", frozenset()))
    env.cluster.records.forget("web")
    again = await env.cluster.sync(app, [configmap("a")], env.inventory())
    assert again.counts["unchanged"] == 1
    assert [str(r) for r in await env.inventory().current()] == ["ConfigMap default/a"]


async def test_diff_shows_managed_fields_and_masks_secrets(env: Env, kubectl: Kubectl) -> None:
    app = app_config(namespace="default")
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds"},
        "stringData": {"password": "hunter2-secret"},
    }
    manifests = [deployment("api", replicas=2), secret]
    await env.cluster.sync(app, manifests, env.inventory())
    assert await env.cluster.diff(app, manifests) == []

    await kubectl("scale", "deployment", "api", "--replicas=5")
    changed_secret = {**secret, "stringData": {"password": "another-secret-value"}}
    await eventually(lambda: env.cluster.in_sync(app, manifests) is False)
    diffs = {
        str(d.ref): d
        for d in await env.cluster.diff(
            app, [deployment("api", replicas=2), changed_secret, configmap("new")]
        )
    }
    assert set(diffs) == {
        "Deployment.apps default/api",
        "Secret default/creds",
        "ConfigMap default/new",
    }
    assert "-  replicas: 5" in diffs["Deployment.apps default/api"].diff
    assert "+  replicas: 2" in diffs["Deployment.apps default/api"].diff
    assert "managedFields" not in diffs["Deployment.apps default/api"].diff
    assert "status" not in diffs["Deployment.apps default/api"].diff
    secret_diff = diffs["Secret default/creds"].diff
    # masked as Argo CD does: a run of "+" per distinct value, so the changed key still shows
    removed = re.findall(r"^-\s+[\w.-]+: (\++)$", secret_diff, re.M)
    added = re.findall(r"^\+\s+[\w.-]+: (\++)$", secret_diff, re.M)
    assert removed and added and {len(r) for r in removed}.isdisjoint({len(a) for a in added}), secret_diff
    assert "hunter2" not in secret_diff and "another-secret" not in secret_diff
    assert "aHVudGVy" not in secret_diff  # nor its base64
    assert not diffs["ConfigMap default/new"].live_exists
