"""The live cache's cost per applied object: an apply's answer is stored once, its watch echo is not."""

from __future__ import annotations

from typing import Any

import pytest

from gitopsd.core.models import Rendered
from gitopsd.kube import cache as cache_module
from gitopsd.kube import desired as desired_module
from gitopsd.kube.cache import key_of
from tests.calls import python_calls
from tests.integration.kube.conftest import Env, app_config, configmap, deployment, eventually

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

    parsed: list[str] = []
    real_parse = cache_module._parse_event

    def parsing(line: bytes) -> Any:
        event = real_parse(line)
        parsed.append(event["object"]["metadata"]["name"])
        return event

    monkeypatch.setattr(cache_module, "_stored", counting)
    monkeypatch.setattr(cache_module, "_parse_event", parsing)
    skipped = env.cluster.cache.echoes_skipped
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
    assert parsed == ["first"]  # nor even parsed: recognised by its resourceVersion, name and namespace
    assert env.cluster.cache.echoes_skipped > skipped
    assert env.cluster.cache.version(key_of(configmap("cfg", namespace="default"))) == rv
    live = env.cluster.cache.get(key_of(configmap("cfg", namespace="default")))
    assert live is not None and live["data"] == {"k": "v"}


async def test_a_syncs_prepared_objects_serve_the_checks_after_it(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """in_sync, health and track after a sync use the objects the sync prepared: none is prepared twice."""
    app = app_config(namespace="default")
    rendered = Rendered.of([deployment("api"), configmap("cfg")])
    prepared: list[str] = []
    real = desired_module.prepare

    def counting(app: Any, manifest: dict[str, Any], *args: Any) -> Any:
        prepared.append(manifest["metadata"]["name"])
        return real(app, manifest, *args)

    monkeypatch.setattr(desired_module, "prepare", counting)
    result = await env.cluster.sync(app, rendered, env.inventory())
    assert result.ok, result.message
    assert sorted(prepared) == ["api", "cfg"]
    env.cluster.track(app, rendered, lambda refs: None)
    assert env.cluster.in_sync(app, rendered) is True
    assert env.cluster.health(app, rendered) is not None
    assert sorted(prepared) == ["api", "cfg"]

    # Another render is prepared anew.
    other = Rendered.of([deployment("api"), configmap("cfg", k="other")])
    assert env.cluster.in_sync(app, other) is False
    assert sorted(prepared) == ["api", "api", "cfg", "cfg"]


async def test_a_sync_builds_each_objects_reference_at_most_twice(env: Env) -> None:
    """``Desired.ref`` is made once per prepared object (the render's manifest has its own, for
    errors): not once per use (results, inventory, ownership, health), five or six per object."""
    from gitopsd.core.models import ObjectRef

    app = app_config(namespace="default")
    manifests = [deployment("api"), configmap("cfg"), configmap("more")]
    code = ObjectRef.from_manifest.__func__.__code__  # type: ignore[attr-defined]
    with python_calls() as calls:
        result = await env.cluster.sync(app, manifests, env.inventory())
    assert result.ok, result.message
    made = calls[code]
    assert made <= 2 * len(manifests), made


async def test_an_apps_policy_is_read_a_few_times_per_sync_not_per_request(env: Env) -> None:
    """The impersonation headers are remembered per app config: reading the policy (a pydantic
    private attribute) is not repeated for every request of every object."""
    from gitopsd.plugin.config import AppConfig

    code = AppConfig.effective_policy.fget.__code__  # type: ignore[attr-defined]

    async def reads(app: AppConfig, count: int) -> int:
        with python_calls() as calls:
            result = await env.cluster.sync(app, [configmap(f"{app.name}{i}") for i in range(count)], env.inventory())
        assert result.ok, result.message
        return calls[code]

    few = await reads(app_config(name="few", namespace="default"), 2)
    many = await reads(app_config(name="many", namespace="default"), 12)
    assert many == few, (few, many)  # not one more read per object


async def test_a_health_wait_reads_the_watch_event_it_woke_for_without_parsing_it(env: Env) -> None:
    """The Deployment's status comes as a watch event while the sync waits for its health: the
    wait reads that very object (handed over by the cache), not a parse of its JSON."""
    app = app_config(namespace="default")
    before = env.cluster.cache.fresh_reads
    result = await env.cluster.sync(app, [deployment("api")], env.inventory())
    assert result.ok, result.message
    assert env.cluster.cache.fresh_reads > before
