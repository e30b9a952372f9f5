"""Discovery at a cold start: the apps asking for one API group version share one request,
and all continue as soon as it is answered."""

from __future__ import annotations

import functools

import pytest

from gitopsd.kube.client import KubeClient
from gitopsd.kube.discovery import Discovery
from gitopsd.plugin.config import ClusterConfig
from gitopsd.sandbox import Sandbox
from tests.turns import turns_apart

pytestmark = pytest.mark.anyio


async def test_apps_asking_at_once_share_one_request_and_continue_together(sandbox: Sandbox) -> None:
    client = KubeClient("main", ClusterConfig(kubeconfig=sandbox.kubeconfig), lambda *a: None)
    await client.open()
    discovery = Discovery(client)
    sandbox.reset_counters()

    async def resolve(kind: str) -> None:
        resource = await discovery.resolve("apps/v1", kind)
        assert resource.kind == kind

    kinds = [("Deployment", "StatefulSet", "DaemonSet")[i % 3] for i in range(30)]
    try:
        apart = await turns_apart(functools.partial(resolve, kind) for kind in kinds)
    finally:
        await client.close()
    assert sandbox.counters()["discovery"] == 1
    assert apart <= 2  # behind a lock: 29 turns
