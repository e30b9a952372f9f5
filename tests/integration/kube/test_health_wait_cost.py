"""The health wait's cost per wake: only the objects that changed are looked at again."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from gitopsd.core.models import Health, HealthStatus, Manifest
from gitopsd.kube import pipeline as pipeline_module
from tests.integration.kube.conftest import Env, app_config, configmap, deployment

pytestmark = pytest.mark.anyio


async def test_a_wake_rebuilds_the_results_of_changed_objects_only(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_config(namespace="default")
    manifests = [deployment("api", replicas=2), *(configmap(f"cfg-{i}") for i in range(5))]
    # The kinds are watched before the sync, so every rollout event reaches the health wait.
    warm = await env.cluster.sync(app, [configmap("warm"), deployment("warm", replicas=1)], env.inventory())
    assert warm.ok, warm.message

    assessed: list[str] = []
    real_health = env.cluster._object_health

    def assessing(live: Manifest | None) -> HealthStatus:
        assessed.append(str((live or {}).get("kind")))
        return real_health(live)

    rebuilt: list[Any] = []

    class Counted(pipeline_module.ObjectResult):  # type: ignore[misc]
        __slots__ = ()

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if sys._getframe(1).f_code.co_name == "_wait_healthy":
                rebuilt.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(env.cluster, "_object_health", assessing)
    monkeypatch.setattr(pipeline_module, "ObjectResult", Counted)
    result = await env.cluster.sync(app, manifests, env.inventory())
    assert result.ok, result.message
    assert {o.health for o in result.objects} == {Health.HEALTHY}
    # The Deployment's rollout woke the wait several times: its status was assessed again at
    # each change, the five ConfigMaps (unchanged since the first look) were not rebuilt.
    assert assessed.count("Deployment") >= 2
    assert len(rebuilt) == len(assessed), (len(rebuilt), assessed)
