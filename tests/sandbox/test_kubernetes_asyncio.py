"""kubernetes-asyncio against the sandbox: DynamicClient discovery, server_side_apply, watch with reconnect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.dynamic import DynamicClient

from gitopsd.sandbox import Sandbox

pytestmark = pytest.mark.anyio


@pytest.fixture
async def api_client(sandbox: Sandbox) -> AsyncIterator[client.ApiClient]:
    api = await config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    async with api:
        yield api


async def test_dynamic_discovery_and_server_side_apply(api_client: client.ApiClient, tmp_path: Path) -> None:
    async with DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json")) as dyn:
        deployments = await dyn.resources.get(api_version="apps/v1", kind="Deployment")
        assert deployments.namespaced and deployments.name == "deployments"
        body: dict[str, Any] = {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dyn"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "dyn"}},
                     "template": {"metadata": {"labels": {"app": "dyn"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        }
        created = await dyn.server_side_apply(deployments, body=body, name="dyn", namespace="default",
                                              field_manager="gitopsd")
        assert created.metadata.managedFields[0].manager == "gitopsd"
        body["spec"]["replicas"] = 3
        updated = await dyn.server_side_apply(deployments, body=body, name="dyn", namespace="default",
                                              field_manager="gitopsd")
        assert updated.spec.replicas == 3 and updated.metadata.generation == 2
        conflict_body = dict(body, spec=dict(body["spec"], replicas=4))
        # kubernetes-asyncio 36: DynamicClient reads responses with _preload_content=False, so an
        # HTTP error does NOT raise; the Status comes back as a ResourceInstance.
        status = await dyn.server_side_apply(deployments, body=conflict_body, name="dyn", namespace="default",
                                             field_manager="intruder")
        assert status.kind == "Status" and status.code == 409 and status.reason == "Conflict"
        assert status.details.causes[0].reason == "FieldManagerConflict"
        assert status.details.causes[0].field == ".spec.replicas"
        for _ in range(50):
            live = await dyn.get(deployments, name="dyn", namespace="default")
            if live.status and live.status.availableReplicas == 3:
                break
            await asyncio.sleep(0.05)
        assert live.status.availableReplicas == 3


async def test_typed_client_and_watch_with_reconnect() -> None:
    # The server ends every watch after 1 s (like a real server's request timeout); the
    # Watch, run without timeout_seconds, reconnects from the last resourceVersion it saw.
    async with Sandbox(watch_timeout=1.0) as sb:
        api = await config.new_client_from_config(config_file=str(sb.kubeconfig))
        async with api:
            await _watch_with_reconnect(api, sb)


async def _watch_with_reconnect(api_client: client.ApiClient, sandbox: Sandbox) -> None:
    core = client.CoreV1Api(api_client)
    listing = await core.list_namespaced_config_map("default")
    rv = listing.metadata.resource_version
    seen: list[tuple[str, str]] = []
    w = watch.Watch()

    async def producer() -> None:
        for i in range(3):
            await core.create_namespaced_config_map("default", {"metadata": {"name": f"w{i}"}})
            await asyncio.sleep(0.7)  # w1 and w2 arrive on reconnected streams

    task = asyncio.create_task(producer())
    async with asyncio.timeout(15):
        async for ev in w.stream(core.list_namespaced_config_map, "default", resource_version=rv):
            seen.append((ev["type"], ev["object"].metadata.name))
            if len(seen) == 3:
                w.stop()
                break
    await task
    assert seen == [("ADDED", "w0"), ("ADDED", "w1"), ("ADDED", "w2")]
    watches = sandbox.counters()["by_verb"]["watch"]
    assert watches >= 2, "the stream was never re-established"


async def test_not_found_is_api_exception(api_client: client.ApiClient) -> None:
    apps = client.AppsV1Api(api_client)
    with pytest.raises(client.ApiException) as err:
        await apps.read_namespaced_deployment("missing", "default")
    assert err.value.status == 404
