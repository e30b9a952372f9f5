"""An idle app costs one task asleep on its trigger: nothing else per app once it has converged."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gitopsd.core.models import SyncStatus
from gitopsd.sandbox import Sandbox

from .conftest import Env, GitRepo, configmap, running, wait_for

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(tls=True, rollout_delay=0.05) as sb:
        yield sb


def config(env: Env, sandbox: Sandbox, apps: dict[str, str]) -> str:
    """The daemon's config: the sandbox as cluster ``sb`` and one app per entry, each in its own
    namespace, with the entry's lines (its source, interval...) added."""
    toml = env.daemon_toml() + f'[clusters.sb]\nkubeconfig = "{sandbox.kubeconfig}"\n'
    for name, lines in apps.items():
        toml += f'[apps.{name}]\ncluster = "sb"\nnamespace = "{name}"\n{lines}'
    return toml


def git_source(repo: GitRepo, path: str, extra: str = "") -> str:
    return f'source = {{type = "git", url = "{repo.url}", path = "{path}"{extra}}}\n'


async def test_an_idle_app_is_one_task(env: Env, sandbox: Sandbox) -> None:
    repo = GitRepo(env.root, "apps")
    names = [f"app{i}" for i in range(8)]
    repo.commit({f"{n}/objects.yaml": configmap(n, k="v") for n in names})
    toml = config(env, sandbox, {n: git_source(repo, n) for n in names})
    async with running(env, env.write(toml)) as daemon:
        await wait_for(lambda: all(daemon.apps[n].runner.status.sync == SyncStatus.SYNCED for n in names), timeout=60)
        await wait_for(lambda: not any(daemon.apps[n].runner.busy.locked() for n in names), timeout=30)
        tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("app:")]
        assert sorted(t.get_name() for t in tasks) == sorted(f"app:{n}" for n in names)
        # Each sleeps on its trigger, parked (engine/idle.py): no timer of its own, no cancel scope.
        waiting = [daemon.apps[n].runner.trigger._waiter for n in names]
        assert all(w is not None and not w.done() for w in waiting)


def unchanged_counts(exposition: bytes) -> dict[str, float]:
    """``gitopsd_reconcile_total{result="unchanged"}`` by app, from the /metrics text."""
    found = re.findall(r'gitopsd_reconcile_total\{app="([^"]+)",result="unchanged"\} (\S+)', exposition.decode())
    return {app: float(value) for app, value in found}


async def test_idle_apps_are_checked_every_interval_without_waking_and_still_see_a_push(env: Env, sandbox: Sandbox) -> None:
    # Parked apps (gitopsd.engine.idle): each interval counts an unchanged reconcile per app,
    # made by one task per repository; no app's task wakes until its revision moves.
    repo = GitRepo(env.root, "apps")
    names = [f"app{i}" for i in range(6)]
    repo.commit({f"{n}/objects.yaml": configmap(n, k="v") for n in names})
    toml = config(env, sandbox, {n: 'interval = "1s"\n' + git_source(repo, n, ', poll_cache = "0.5s"') for n in names})
    async with running(env, env.write(toml)) as daemon:
        runners = [daemon.apps[n].runner for n in names]
        await wait_for(lambda: all(r.status.sync == SyncStatus.SYNCED for r in runners), timeout=60)
        # Idle: every app has had an interval check since its sync (its check found it in sync).
        marks = [r.status.reconciles for r in runners]
        await wait_for(lambda: all(r.status.reconciles > m for r, m in zip(runners, marks, strict=True)), timeout=30)
        wakes = [r.wakes for r in runners]
        reconciles = [r.status.reconciles for r in runners]
        unchanged = unchanged_counts(daemon.metrics.exposition())
        await wait_for(lambda: all(r.status.reconciles >= c + 3 for r, c in zip(runners, reconciles, strict=True)), timeout=30)
        assert [r.wakes for r in runners] == wakes  # three intervals checked, no task woke
        counts = unchanged_counts(daemon.metrics.exposition())
        assert all(counts[n] >= unchanged[n] + 3 for n in names)  # /metrics counts each check
        assert all(r.status.sync == SyncStatus.SYNCED for r in runners)

        # A push is still noticed by the interval poll (no webhook here), and applied.
        sha = repo.commit({"app0/objects.yaml": configmap("app0", k="w")})
        await wait_for(lambda: runners[0].status.revision == f"main@sha1:{sha}", timeout=30)
        assert runners[0].wakes > wakes[0]
        assert runners[0].status.last_result == "succeeded"


async def kube(sb: Sandbox, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    ca = sb.ca_pem.decode() if isinstance(sb.ca_pem, bytes) else sb.ca_pem
    async with httpx.AsyncClient(verify=ssl.create_default_context(cadata=ca), headers={"Authorization": f"Bearer {sb.token}"}) as c:
        headers = {"Content-Type": "application/merge-patch+json"}
        r = await c.request(method, sb.url + path, content=None if body is None else json.dumps(body), headers=headers)
        r.raise_for_status()
        return dict(r.json())


async def test_a_parked_app_out_of_sync_wakes_at_its_interval(env: Env, sandbox: Sandbox) -> None:
    # Without self-heal, drift is only reported; the app's next interval finds it out of sync
    # and reconciles in its own task (the parked check must not count that as unchanged).
    repo = GitRepo(env.root, "apps")
    repo.commit({"one/objects.yaml": configmap("one", k="v")})
    lines = 'interval = "1s"\nself_heal = false\n' + git_source(repo, "one", ', poll_cache = "0.5s"')
    toml = config(env, sandbox, {"one": lines})
    async with running(env, env.write(toml)) as daemon:
        runner = daemon.apps["one"].runner
        await wait_for(lambda: runner.status.sync == SyncStatus.SYNCED, timeout=60)
        mark = runner.status.reconciles
        await wait_for(lambda: runner.status.reconciles >= mark + 2, timeout=30)
        wakes, syncs = runner.wakes, runner.status.last_sync_time
        await kube(sandbox, "PATCH", "/api/v1/namespaces/one/configmaps/one", {"data": {"k": "changed"}})
        await wait_for(lambda: runner.wakes > wakes and runner.status.last_sync_time != syncs, timeout=30)
        live = await kube(sandbox, "GET", "/api/v1/namespaces/one/configmaps/one")
        assert live["data"] == {"k": "v"}  # the interval's reconcile applied the desired state again
        assert runner.status.sync == SyncStatus.SYNCED


async def test_apps_whose_source_polls_alone_wake_on_their_own_timer(env: Env, sandbox: Sandbox) -> None:
    # A source without a poll group (here: a local directory) may wait on its own poll:
    # checked one after another such polls would add up, so its app is not parked.
    (env.root / "apps" / "solo").mkdir(parents=True)
    (env.root / "apps" / "solo" / "objects.yaml").write_text(configmap("solo", k="v") + "\n")
    toml = config(env, sandbox, {"solo": 'interval = "1s"\nsource = {type = "local", path = "apps/solo"}\n'})
    async with running(env, env.write(toml)) as daemon:
        runner = daemon.apps["solo"].runner
        await wait_for(lambda: runner.status.sync == SyncStatus.SYNCED, timeout=60)
        assert runner.source.poll_group == ""
        wakes, reconciles = runner.wakes, runner.status.reconciles
        await wait_for(lambda: runner.status.reconciles >= reconciles + 2, timeout=30)
        assert runner.wakes >= wakes + 2  # each interval woke the app's own task
