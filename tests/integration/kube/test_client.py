"""The cluster client's requests: bodies as the API server reads them, and the request limit."""

from __future__ import annotations

import time

import anyio
import pytest

from gitopsd.core.yamlio import manifests_from_yaml
from gitopsd.kube.client import ApiError, KubeClient
from gitopsd.plugin.config import ClusterConfig
from gitopsd.sandbox import Sandbox
from tests.cycles import cyclic_garbage

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


@pytest.mark.parametrize("anyio_backend", [("asyncio", {}), ("asyncio", {"use_uvloop": True})], ids=["asyncio", "uvloop"])
async def test_new_connections_resume_the_tls_session_of_an_earlier_one(sandbox: Sandbox) -> None:
    # A full handshake decodes and verifies the server's certificates: most of a connection's
    # cost to the client. Once one connection has a session, the others (requests in a burst,
    # watches) resume it.
    sandbox.set_faults({"rules": [{"verb": "get", "resource": "namespaces", "latency_ms": 100}]})
    client = KubeClient("main", ClusterConfig(kubeconfig=sandbox.kubeconfig, max_concurrent_requests=4), lambda *a: None)
    await client.open()
    try:
        assert client._direct is not None
        await client.request("GET", "/api/v1/namespaces/default")
        assert client._direct.handshakes == {"full": 1, "resumed": 0}
        async with anyio.create_task_group() as tg:
            for _ in range(4):  # four in flight: the idle connection and three new ones
                tg.start_soon(client.request, "GET", "/api/v1/namespaces/default")
        async with await client.stream("/api/v1/configmaps", [("watch", "1")], idle_timeout=5):
            pass  # a watch has a connection of its own
        assert client._direct.handshakes == {"full": 1, "resumed": 4}
    finally:
        await client.close()
        sandbox.set_faults(None)


async def test_an_error_answer_leaves_no_cyclic_garbage(sandbox: Sandbox) -> None:
    # The raised error's traceback held the request's frame, which held the error: a cycle per
    # 404 (one per new namespace at a cold start), each with its frames, for the collector.
    client = KubeClient("main", ClusterConfig(kubeconfig=sandbox.kubeconfig), lambda *a: None)
    await client.open()
    try:
        await client.request("GET", "/api/v1/namespaces/default")  # connection and TLS session made outside
        with cyclic_garbage() as garbage:
            for _ in range(3):
                with pytest.raises(ApiError) as caught:
                    await client.request("GET", "/api/v1/namespaces/no-such-namespace")
                assert caught.value.status == 404
                del caught
    finally:
        await client.close()
    # Only the error path's own objects: an earlier test's client may be freed meanwhile.
    assert {name: garbage[name] for name in ("ApiError", "traceback", "frame")} == {"ApiError": 0, "traceback": 0, "frame": 0}
