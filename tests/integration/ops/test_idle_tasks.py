"""An idle app costs one task asleep on a timer: nothing else per app once it has converged."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gitopsd.core.models import SyncStatus
from gitopsd.sandbox import Sandbox

from .conftest import Env, GitRepo, configmap, running, wait_for

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(tls=True, rollout_delay=0.05) as sb:
        yield sb


async def test_an_idle_app_is_one_task(env: Env, sandbox: Sandbox) -> None:
    repo = GitRepo(env.root, "apps")
    names = [f"app{i}" for i in range(8)]
    repo.commit({f"{n}/objects.yaml": configmap(n, k="v") for n in names})
    toml = env.daemon_toml() + f'[clusters.sb]\nkubeconfig = "{sandbox.kubeconfig}"\n'
    for n in names:
        toml += f'[apps.{n}]\ncluster = "sb"\nnamespace = "{n}"\nsource = {{type = "git", url = "{repo.url}", path = "{n}"}}\n'
    async with running(env, env.write(toml)) as daemon:
        await wait_for(lambda: all(daemon.apps[n].runner.status.sync == SyncStatus.SYNCED for n in names), timeout=60)
        await wait_for(lambda: not any(daemon.apps[n].runner.busy.locked() for n in names), timeout=30)
        tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("app:")]
        assert sorted(t.get_name() for t in tasks) == sorted(f"app:{n}" for n in names)
        # Each sleeps on its trigger's timer: one pending timer per app, no cancel scope.
        waiting = [daemon.apps[n].runner.trigger._waiter for n in names]
        assert all(w is not None and not w.done() for w in waiting)
