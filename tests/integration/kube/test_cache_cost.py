"""The live cache's cost per applied object: an apply's answer is stored once, its watch echo is not."""

from __future__ import annotations

from typing import Any

import pytest

from gitopsd.kube import cache as cache_module
from gitopsd.kube.cache import key_of
from tests.integration.kube.conftest import Env, app_config, configmap, eventually

pytestmark = pytest.mark.anyio


async def test_the_watch_echo_of_an_apply_is_not_stored_again(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_config(namespace="default")
    # The kind is watched before anything is applied, so every echo below reaches the cache.
    result = await env.cluster.sync(app, [configmap("first")], env.inventory())
    assert result.ok, result.message

    stored: list[str] = []
    real = cache_module._stored

    def counting(rv: str, obj: dict[str, Any]) -> Any:
        stored.append(obj["metadata"]["name"])
        return real(rv, obj)

    monkeypatch.setattr(cache_module, "_stored", counting)
    result = await env.cluster.sync(app, [configmap("first"), configmap("cfg")], env.inventory())
    assert result.ok, result.message
    assert stored == ["cfg"]  # the apply's answer (first is unchanged: not even sent)
    rv = env.cluster.cache.version(key_of(configmap("cfg", namespace="default")))

    # A later change on the same watch: once it is in the cache, cfg's own echo (the ADDED
    # event with the answer's resourceVersion) was read before it.
    await env.cluster.client.request(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/first",
        body={"data": {"k": "edited"}},
        content_type="application/merge-patch+json",
    )
    await eventually(lambda: "first" in stored, within=10)
    assert stored == ["cfg", "first"]  # cfg's echo was not encoded and stored a second time
    assert env.cluster.cache.version(key_of(configmap("cfg", namespace="default"))) == rv
    live = env.cluster.cache.get(key_of(configmap("cfg", namespace="default")))
    assert live is not None and live["data"] == {"k": "v"}
