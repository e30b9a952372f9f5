"""Prune: only this app's inventory, only objects with its label, never on an accidental empty render."""

from __future__ import annotations

from typing import Any

import pytest

from gitopsd.kube import APP_LABEL
from gitopsd.kube.ownership import OWNER_ANNOTATION

from .conftest import Env, Kubectl, app_config, configmap, deployment, get_json, namespace

pytestmark = pytest.mark.anyio


def names(result: Any, action: str) -> set[str]:
    return {str(o.ref) for o in result.objects if o.action == action}


async def test_prune_deletes_what_left_the_render(env: Env, kubectl: Kubectl) -> None:
    app = app_config(namespace="default", prune=True)
    await env.cluster.sync(
        app, [configmap("keep"), configmap("drop"), deployment("gone")], env.inventory()
    )

    result = await env.cluster.sync(app, [configmap("keep")], env.inventory())
    assert result.ok, result.message
    assert names(result, "pruned") == {"ConfigMap default/drop", "Deployment.apps default/gone"}
    assert "NotFound" in await kubectl("get", "configmap", "drop", check=False)
    assert "NotFound" in await kubectl("get", "deployment", "gone", check=False)
    assert [str(r) for r in await env.inventory().current()] == ["ConfigMap default/keep"]


async def test_prune_off_keeps_objects(env: Env, kubectl: Kubectl) -> None:
    app = app_config(namespace="default", prune=False)
    await env.cluster.sync(app, [configmap("keep"), configmap("drop")], env.inventory())
    result = await env.cluster.sync(app, [configmap("keep")], env.inventory())
    assert result.ok
    await get_json(kubectl, "configmap", "drop")  # still there
    assert len(await env.inventory().current()) == 2


async def test_empty_render_never_prunes_unless_allowed(env: Env, kubectl: Kubectl) -> None:
    app = app_config(namespace="default", prune=True)
    await env.cluster.sync(app, [configmap("a"), configmap("b")], env.inventory())
    env.sb.reset_counters()

    guarded = await env.cluster.sync(app, [], env.inventory())
    assert not guarded.ok
    assert "empty" in guarded.message and "allow_empty" in guarded.message
    assert env.sb.counters()["writes"] == 0
    await get_json(kubectl, "configmap", "a")
    assert len(await env.inventory().current()) == 2

    allowed = await env.cluster.sync(
        app_config(namespace="default", prune=True, allow_empty=True), [], env.inventory()
    )
    assert allowed.ok, allowed.message
    assert names(allowed, "pruned") == {"ConfigMap default/a", "ConfigMap default/b"}
    assert await env.inventory().current() == []


async def test_objects_not_owned_by_the_app_are_never_deleted(env: Env, kubectl: Kubectl) -> None:
    app = app_config(namespace="default", prune=True)
    await env.cluster.sync(
        app,
        [configmap("mine"), configmap("unowned"), configmap("other-app"), configmap("pinned")],
        env.inventory(),
    )
    # Out of band: one object loses its owner annotation, one is given to another owner by
    # hand (the app label still says ours), one is marked prune-disabled.
    await kubectl("annotate", "configmap", "unowned", f"{OWNER_ANNOTATION}-")
    await kubectl("annotate", "--overwrite", "configmap", "other-app", f"{OWNER_ANNOTATION}=gitopsd/someone-else")
    await kubectl("annotate", "configmap", "pinned", "gitopsd.dev/prune=disabled")
    assert (await get_json(kubectl, "configmap", "other-app"))["metadata"]["labels"][APP_LABEL] == "web"

    result = await env.cluster.sync(app, [configmap("mine")], env.inventory())
    assert result.ok, result.message
    assert names(result, "pruned") == set()
    assert names(result, "skipped") == {
        "ConfigMap default/unowned",
        "ConfigMap default/other-app",
        "ConfigMap default/pinned",
    }
    messages = {str(o.ref): o.message for o in result.objects}
    assert messages["ConfigMap default/other-app"] == "not deleted: owned by gitopsd/someone-else, not by gitopsd/web"
    for name in ("unowned", "other-app", "pinned"):
        await get_json(kubectl, "configmap", name)
    # They are no longer this app's: a later sync does not look at them again.
    assert [str(r) for r in await env.inventory().current()] == ["ConfigMap default/mine"]


async def test_objects_of_other_apps_are_not_candidates(env: Env, kubectl: Kubectl) -> None:
    one = app_config(name="one", namespace="default", prune=True)
    two = app_config(name="two", namespace="default", prune=True)
    await env.cluster.sync(one, [configmap("one-cm")], env.inventory("one"))
    await env.cluster.sync(two, [configmap("two-cm")], env.inventory("two"))
    result = await env.cluster.sync(one, [configmap("one-cm-2")], env.inventory("one"))
    assert names(result, "pruned") == {"ConfigMap default/one-cm"}
    await get_json(kubectl, "configmap", "two-cm")


async def test_namespaces_are_pruned_only_when_the_app_says_so(env: Env, kubectl: Kubectl) -> None:
    app = app_config(namespace="team", prune=True)
    await env.cluster.sync(app, [namespace("team"), configmap("c")], env.inventory())
    result = await env.cluster.sync(app, [configmap("elsewhere", namespace="default")], env.inventory())
    assert result.ok, result.message
    assert names(result, "pruned") == {"ConfigMap team/c"}
    assert names(result, "skipped") == {"Namespace team"}
    live = await get_json(kubectl, "namespace", "team")
    assert "deletionTimestamp" not in live["metadata"]


async def test_namespace_and_contents_pruned_in_reverse_order(env: Env, kubectl: Kubectl) -> None:
    app = app_config(namespace="team", prune=True, prune_namespaces=True)
    await env.cluster.sync(
        app, [namespace("team"), configmap("c"), deployment("d")], env.inventory()
    )
    result = await env.cluster.sync(
        app, [configmap("elsewhere", namespace="default")], env.inventory()
    )
    assert result.ok, result.message
    order = [str(o.ref) for o in result.objects if o.action == "pruned"]
    assert order[-1] == "Namespace team"
    assert set(order) == {"Namespace team", "ConfigMap team/c", "Deployment.apps team/d"}
