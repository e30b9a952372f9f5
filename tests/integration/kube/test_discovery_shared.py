"""Discovery at a cold start: the apps asking for one API group version share one request,
and all continue as soon as it is answered."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from gitopsd.kube.client import KubeClient
from gitopsd.kube.discovery import Discovery
from gitopsd.plugin.config import ClusterConfig
from gitopsd.sandbox import Sandbox

pytestmark = pytest.mark.anyio


async def test_apps_asking_at_once_share_one_request_and_continue_together(sandbox: Sandbox) -> None:
    client = KubeClient("main", ClusterConfig(kubeconfig=sandbox.kubeconfig), lambda *a: None)
    await client.open()
    discovery = Discovery(client)
    sandbox.reset_counters()
    turns = 0
    answered_at: list[int] = []

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await anyio.lowlevel.checkpoint()
            turns += 1

    async def resolve(kind: str) -> None:
        resource = await discovery.resolve("apps/v1", kind)
        assert resource.kind == kind
        answered_at.append(turns)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(count_turns)
            async with anyio.create_task_group() as apps:
                for i in range(30):
                    apps.start_soon(resolve, ("Deployment", "StatefulSet", "DaemonSet")[i % 3])
            tg.cancel_scope.cancel()
    finally:
        await client.close()
    assert sandbox.counters()["discovery"] == 1
    assert max(answered_at) - min(answered_at) <= 2, answered_at  # behind a lock: 29 turns
