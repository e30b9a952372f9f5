"""ignore_differences: an HPA-style scale by another field manager is neither drift nor reverted."""

from __future__ import annotations

from typing import Any

import pytest

from gitopsd.plugin.config import IgnoreDifference

from .conftest import Env, Kubectl, app_config, deployment, get_json

pytestmark = pytest.mark.anyio

REPLICAS = IgnoreDifference(kind="Deployment", name="web", json_pointers=["/spec/replicas"])


def with_image(obj: dict[str, Any], image: str) -> dict[str, Any]:
    spec = obj["spec"]["template"]["spec"]
    return {**obj, "spec": {**obj["spec"], "template": {**obj["spec"]["template"], "spec": {**spec, "containers": [{**spec["containers"][0], "image": image}]}}}}


def gitopsd_fields(live: dict[str, Any]) -> dict[str, Any]:
    entry = next(f for f in live["metadata"]["managedFields"] if f["manager"] == "gitopsd")
    return entry["fieldsV1"]["f:spec"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("ignored", [True, False], ids=["ignored", "not-ignored"])
async def test_a_scale_by_another_manager_is_not_reverted(env: Env, kubectl: Kubectl, ignored: bool) -> None:
    app = app_config(ignore_differences=[REPLICAS] if ignored else [])
    desired = deployment("web", replicas=2)
    first = await env.cluster.sync(app, [desired], env.inventory())
    assert first.ok, first.message
    live = await get_json(kubectl, "deployment", "web", "-n", "default", "--show-managed-fields")
    if ignored:
        assert "f:replicas" not in gitopsd_fields(live)  # never applied, so never owned by gitopsd

    # What an HPA does: another field manager writes replicas through the scale subresource.
    await kubectl("scale", "deployment/web", "-n", "default", "--replicas=5")
    live = await get_json(kubectl, "deployment", "web", "-n", "default")
    assert live["spec"]["replicas"] == 5
    await env.cluster.cache.wait_change(0.5)
    assert env.cluster.in_sync(app, [desired]) is (True if ignored else False)

    # A new revision changes something else: the apply must leave replicas to the other manager.
    changed = with_image(desired, "nginx:1.28")
    second = await env.cluster.sync(app, [changed], env.inventory())
    assert second.ok, second.message
    live = await get_json(kubectl, "deployment", "web", "-n", "default")
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert live["spec"]["replicas"] == (5 if ignored else 2)
    assert env.cluster.in_sync(app, [changed]) is True


async def test_fields_owned_by_an_ignored_manager_are_left_to_it(env: Env, kubectl: Kubectl) -> None:
    # No pointer: the rule names the manager, and whatever it owns in the live object is its own.
    rule = IgnoreDifference(kind="Deployment", managers=["kubectl"])
    app = app_config(ignore_differences=[rule])
    desired = deployment("web", replicas=2)
    first = await env.cluster.sync(app, [desired], env.inventory())
    assert first.ok, first.message
    await kubectl("scale", "deployment/web", "-n", "default", "--replicas=5")
    live = await get_json(kubectl, "deployment", "web", "-n", "default", "--show-managed-fields")
    owners = {f["manager"]: f.get("subresource", "") for f in live["metadata"]["managedFields"]}
    assert "kubectl" in owners, owners
    await env.cluster.cache.wait_change(0.5)
    assert env.cluster.in_sync(app, [desired]) is True  # replicas is kubectl's now: no drift

    changed = with_image(desired, "nginx:1.28")
    second = await env.cluster.sync(app, [changed], env.inventory())
    assert second.ok, second.message
    live = await get_json(kubectl, "deployment", "web", "-n", "default")
    assert live["spec"]["replicas"] == 5
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert env.cluster.in_sync(app, [changed]) is True


async def test_a_conflict_with_an_ignored_manager_drops_the_field(env: Env, kubectl: Kubectl) -> None:
    # The rule arrives after the scale: the cache has no managed fields for the object yet, so
    # the apply itself meets the conflict, and must give the field up rather than take it over.
    desired = deployment("web", replicas=2)
    assert (await env.cluster.sync(app_config(), [desired], env.inventory())).ok
    await kubectl("scale", "deployment/web", "-n", "default", "--replicas=5")
    app = app_config(ignore_differences=[IgnoreDifference(kind="Deployment", managers=["kubectl"])])
    result = await env.cluster.sync(app, [with_image(desired, "nginx:1.28")], env.inventory())
    assert result.ok, result.message
    assert not any("took over" in o.message for o in result.objects)
    live = await get_json(kubectl, "deployment", "web", "-n", "default")
    assert live["spec"]["replicas"] == 5
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"


@pytest.mark.parametrize("key", ["gitopsd.dev/compare-options", "argocd.argoproj.io/compare-options"])
async def test_ignore_extraneous_leaves_other_managers_fields_alone(env: Env, kubectl: Kubectl, key: str) -> None:
    app = app_config()  # force_conflicts is on: without the annotation the scale would be reverted
    desired = deployment("web", replicas=2, **{key: "IgnoreExtraneous"})
    assert (await env.cluster.sync(app, [desired], env.inventory())).ok
    await kubectl("scale", "deployment/web", "-n", "default", "--replicas=5")
    await env.cluster.cache.wait_change(0.5)
    assert env.cluster.in_sync(app, [desired]) is True
    result = await env.cluster.sync(app, [with_image(desired, "nginx:1.28")], env.inventory())
    assert result.ok, result.message
    live = await get_json(kubectl, "deployment", "web", "-n", "default")
    assert live["spec"]["replicas"] == 5
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
