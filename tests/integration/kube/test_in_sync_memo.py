"""``in_sync`` of an idle app compares nothing twice, and still sees every out-of-band change."""

from __future__ import annotations

import pytest

from gitopsd.core.models import Rendered
from gitopsd.kube import desired as desired_module
from tests.integration.kube.conftest import Env, app_config, configmap, deployment, eventually

pytestmark = pytest.mark.anyio


async def test_an_idle_apps_check_is_remembered_until_the_live_object_changes(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_config(namespace="default")
    rendered = Rendered.of([deployment("api"), configmap("cfg", k="v")])  # one render, as the engine keeps it
    result = await env.cluster.sync(app, rendered, env.inventory())
    assert result.ok, result.message

    compared: list[str] = []
    real = desired_module.matches

    def counting(desired: dict, live: dict | None) -> bool:  # type: ignore[type-arg]
        compared.append(desired["metadata"]["name"])
        return real(desired, live)

    monkeypatch.setattr(desired_module, "matches", counting)
    assert env.cluster.in_sync(app, rendered) is True
    assert sorted(compared) == ["api", "cfg"]
    compared.clear()
    for _ in range(3):  # the interval checks of an idle app
        assert env.cluster.in_sync(app, rendered) is True
    assert compared == []

    # An edit out of band (a new resourceVersion in the watch): compared again, and seen.
    await env.cluster.client.request(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/cfg",
        body={"data": {"k": "edited"}},
        content_type="application/merge-patch+json",
    )
    await eventually(lambda: env.cluster.in_sync(app, rendered) is False, within=10)
    assert compared.count("cfg") >= 1 and "api" not in compared

    # Applied again: in sync, and remembered again.
    result = await env.cluster.sync(app, rendered, env.inventory())
    assert result.ok, result.message
    assert env.cluster.in_sync(app, rendered) is True
    compared.clear()
    assert env.cluster.in_sync(app, rendered) is True
    assert compared == []

    # Drift checks and in_sync share their verdicts: a watch event is compared once.
    drifted: list[object] = []
    env.cluster.track(app, rendered, drifted.append)
    compared.clear()
    await env.cluster.client.request(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/cfg",
        body={"data": {"k": "again"}},
        content_type="application/merge-patch+json",
    )
    await eventually(lambda: drifted, within=10)
    assert compared == ["cfg"]
    assert env.cluster.in_sync(app, rendered) is False
    assert compared == ["cfg"]

    # A tracked app's sync: the drift check after it (on the sync's own prepared copy) is
    # the comparison in_sync reuses.
    result = await env.cluster.sync(app, rendered, env.inventory())
    assert result.ok, result.message
    compared.clear()
    assert env.cluster.in_sync(app, rendered) is True
    assert compared == []

    # A new render (other desired objects) is never judged by the old verdicts.
    edited = Rendered.of([deployment("api"), configmap("cfg", k="other")])
    assert env.cluster.in_sync(app, edited) is False
