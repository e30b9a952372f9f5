"""What a cold converge costs the state database: its calls per app, counted (not timed).

Each call of :class:`~gitopsd.core.state.StateStore` is a trip to its worker thread (calls made
while one is on its way share the next), and that hand-off costs the daemon more CPU than the
SQLite statements it carries. On a first converge every app needs two: its inventory written
before the apply, its sync recorded after it (docs/operations.md, "Per applied object").
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from gitopsd.core.models import SyncStatus
from gitopsd.daemon.supervisor import Daemon
from gitopsd.sandbox import Sandbox
from gitopsd.server.systemd import SystemdNotifier

from .conftest import Env, GitRepo, configmap

pytestmark = pytest.mark.anyio

APPS = [f"app{i}" for i in range(6)]


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sb:
        yield sb


async def test_a_cold_converge_makes_two_state_calls_per_app(env: Env, sandbox: Sandbox) -> None:
    repo = GitRepo(env.root, "apps")
    repo.commit({f"{n}/objects.yaml": configmap(f"{n}-a", k="v") + "\n---\n" + configmap(f"{n}-b", k="v") for n in APPS})
    toml = env.daemon_toml() + f'[clusters.sb]\nkubeconfig = "{sandbox.kubeconfig}"\n'
    for n in APPS:
        toml += f'[apps.{n}]\ncluster = "sb"\nnamespace = "{n}"\nsource = {{type = "git", url = "{repo.url}", path = "{n}"}}\n'
    counts: list[tuple[int, int]] = []

    def settled(daemon: Daemon) -> None:
        assert daemon.store is not None
        counts.append((daemon.store.calls, daemon.store.batches))

    daemon = Daemon(env.write(toml), env.plugins, systemd=SystemdNotifier({}), on_settled=settled)
    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.run, name="daemon")
            await daemon.settled.wait()
            assert all(daemon.apps[n].runner.status.sync == SyncStatus.SYNCED for n in APPS), {n: daemon.apps[n].runner.status for n in APPS}
            assert daemon.store is not None
            inventories = {n: await daemon.store.inventory(n) for n in APPS}
            daemon.stop()
    calls, batches = counts[0]
    # One preload for all; per app: the inventory written before the apply, the sync recorded
    # after it. Nothing read per app: the preload said which apps own nothing yet.
    assert calls == 1 + 2 * len(APPS), f"{calls} state calls for {len(APPS)} apps"
    assert batches <= calls
    assert {n: sorted(r.name for r in refs) for n, refs in inventories.items()} == {n: [f"{n}-a", f"{n}-b"] for n in APPS}
