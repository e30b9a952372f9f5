"""The coordination fence of ``Cluster.sync``: once it says no, nothing more is written."""

from __future__ import annotations

import pytest

from gitopsd.sandbox import Sandbox

from .conftest import Env, app_config, configmap, namespace

pytestmark = pytest.mark.anyio


async def test_a_fenced_sync_writes_nothing_and_fails_naming_the_lock(env: Env, sandbox: Sandbox) -> None:
    app = app_config(namespace="shop")
    sandbox.reset_counters()
    result = await env.cluster.sync(app, [namespace("shop"), configmap("settings")], env.inventory(), fence=lambda: False)
    assert not result.ok
    assert "fenced" in result.message
    assert sandbox.counters()["writes"] == 0


async def test_the_fence_is_asked_before_each_step(env: Env, sandbox: Sandbox) -> None:
    """Valid for the first step (the namespace), lost before the next: only the namespace is written."""
    app = app_config(namespace="shop")
    answers = iter([True])
    sandbox.reset_counters()
    result = await env.cluster.sync(
        app, [namespace("shop"), configmap("settings")], env.inventory(), fence=lambda: next(answers, False)
    )
    assert not result.ok and "fenced" in result.message
    log = sandbox.counters()["write_log"]
    written = [w["name"] for w in log if "gitopsd-system" not in (w["namespace"], w["name"])]  # not the inventory record
    assert written == ["shop"]
    by_action = {str(o.ref): o.action for o in result.objects}
    assert any(action == "skipped" for action in by_action.values())


async def test_no_fence_means_a_normal_sync(env: Env) -> None:
    result = await env.cluster.sync(app_config(namespace="shop"), [namespace("shop"), configmap("settings")], env.inventory())
    assert result.ok, result.message
