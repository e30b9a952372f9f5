"""The cluster client's requests: bodies as the API server reads them, and the request limit."""

from __future__ import annotations

import time

import anyio
import pytest

from gitopsd.core.yamlio import manifests_from_yaml
from gitopsd.kube.client import KubeClient
from gitopsd.plugin.config import ClusterConfig
from gitopsd.sandbox import Sandbox

from .conftest import Env, Kubectl, app_config, get_json

pytestmark = pytest.mark.anyio


async def test_dates_yaml_reads_are_sent_as_iso_strings(env: Env, kubectl: Kubectl) -> None:
    rendered = manifests_from_yaml(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dated}\n"
        "data:\n  since: 2024-05-01\n  at: 2024-05-01T10:00:00Z\n  name: ünïcode\n",
        "dated.yaml",
    )
    result = await env.cluster.sync(app_config(namespace="default"), rendered, env.inventory())
    assert result.ok, result.message
    live = await get_json(kubectl, "configmap", "dated")
    assert live["data"] == {"since": "2024-05-01", "at": "2024-05-01T10:00:00+00:00", "name": "ünïcode"}


async def test_requests_in_flight_stay_within_max_concurrent_requests(sandbox: Sandbox) -> None:
    sandbox.set_faults({"rules": [{"verb": "get", "resource": "namespaces", "latency_ms": 150}]})
    client = KubeClient("main", ClusterConfig(kubeconfig=sandbox.kubeconfig, max_concurrent_requests=2), lambda *a: None)
    await client.open()
    try:
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(client.request, "GET", "/api/v1/namespaces/default")
        elapsed = time.monotonic() - started
    finally:
        await client.close()
        sandbox.set_faults(None)
    assert elapsed >= 4 * 0.15 * 0.95  # 8 requests, 2 at a time: at least 4 rounds of the latency


async def test_one_tls_context_and_kept_alive_connections(sandbox: Sandbox) -> None:
    client = KubeClient("main", ClusterConfig(kubeconfig=sandbox.kubeconfig, max_concurrent_requests=4), lambda *a: None)
    await client.open()
    try:
        assert client._direct is not None
        context = client._direct._ssl  # the one context of every connection
        for _ in range(3):
            async with anyio.create_task_group() as tg:
                for _ in range(40):
                    tg.start_soon(client.request, "GET", "/api/v1/namespaces/default")
        handshakes = context.session_stats()["connect"]
    finally:
        await client.close()
    assert 1 <= handshakes <= 4  # 120 requests on that context, at most one connection per request in flight
