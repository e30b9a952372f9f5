"""The Kubernetes Leases backend against the sandbox API server (resourceVersion preconditions, 409s)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from gitopsd.kube.client import KubeClient
from gitopsd.kube.leases import LeaseBackend
from gitopsd.plugin.config import ClusterConfig
from gitopsd.sandbox import Sandbox

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[KubeClient]:
    async with Sandbox(tls=True) as sb:
        sb.write_kubeconfig(tmp_path / "kubeconfig")
        kube = KubeClient("sandbox", ClusterConfig(kubeconfig=tmp_path / "kubeconfig"), lambda ok, why: None)
        await kube.open()
        await kube.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gitopsd-system"}})
        try:
            yield kube
        finally:
            await kube.close()


def backend(client: KubeClient, member: str, ttl: float = 3.0) -> LeaseBackend:
    return LeaseBackend(client, "gitopsd-system", member, ttl, advertise_url=f"http://{member}:9420")


async def test_a_lock_has_one_holder_and_leave_frees_it(client: KubeClient) -> None:
    a, b = backend(client, "ma"), backend(client, "mb")
    await a.join()
    await b.join()
    assert [(m.name, m.advertise_url) for m in await b.members()] == [("ma", "http://ma:9420"), ("mb", "http://mb:9420")]
    assert await a.acquire("app-web")
    assert not await b.acquire("app-web")
    assert await a.acquire("app-web")
    assert await b.holders() == {"app-web": "ma"}
    await a.leave()
    assert await b.holders() == {}
    assert [m.name for m in await b.members()] == ["mb"]
    assert await b.acquire("app-web")


async def test_takeover_after_expiry_has_exactly_one_winner(client: KubeClient) -> None:
    """Two members race to take a dead member's lock: the resourceVersion precondition picks one."""
    dead, b, c = backend(client, "dead", ttl=1.0), backend(client, "mb", ttl=30), backend(client, "mc", ttl=30)
    await dead.join()
    assert await dead.acquire("app-web")
    for m in (b, c):
        await m.join()
        await m.members()
    assert not await b.acquire("app-web")
    stopped = 0.0
    with anyio.fail_after(20):
        while True:
            if not stopped and not dead.valid():
                stopped = time.monotonic()
            if "app-web" not in await b.holders():
                break
            await anyio.sleep(0.05)
    assert stopped, "the lock was free while its holder still believed it valid"
    await c.members()
    wins: list[str] = []

    async def take(m: LeaseBackend) -> None:
        if await m.acquire("app-web"):
            wins.append(m.member)

    async with anyio.create_task_group() as tg:
        tg.start_soon(take, b)
        tg.start_soon(take, c)
    assert len(wins) == 1, wins
    assert (await b.holders())["app-web"] == wins[0]


async def test_a_stale_resource_version_is_refused(client: KubeClient) -> None:
    """What the backend relies on: the sandbox answers 409 to an update with an old resourceVersion."""
    from gitopsd.kube.client import ApiError

    a = backend(client, "ma")
    await a.join()
    path = "/apis/coordination.k8s.io/v1/namespaces/gitopsd-system/leases/gitopsd-member-ma"
    lease = await client.request("GET", path)
    renewed = dict(lease, spec=dict(lease["spec"], renewTime="2030-01-01T00:00:00.000000Z"))
    await client.request("PUT", path, body=renewed)  # a real change: a new resourceVersion
    with pytest.raises(ApiError) as info:
        await client.request("PUT", path, body=dict(lease, spec=dict(lease["spec"], holderIdentity="thief")))
    assert info.value.status == 409
