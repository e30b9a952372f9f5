"""The daemon keeps its caches under daemon.cache_max_bytes and reports their size (issue 13)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gitopsd.sandbox import Sandbox

from .conftest import Env, GitRepo, configmap, git, running, wait_for

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(tls=True, rollout_delay=0.05) as sb:
        yield sb


async def test_old_trees_evicted_current_kept_leftovers_removed(env: Env, sandbox: Sandbox) -> None:
    repo = GitRepo(env.root, "web")
    first = repo.commit({"objects.yaml": configmap("web", rev="1")})
    cache = env.root / "cache"
    leftover = cache / "git-trees" / ".extract-interrupted"
    (leftover / "half").mkdir(parents=True)
    toml = env.daemon_toml(extra=f'cache_dir = "{cache}"\ncache_max_bytes = 1') + \
        f'[clusters.sb]\nkubeconfig = "{sandbox.kubeconfig}"\n' + \
        f'[apps.web]\ncluster = "sb"\nnamespace = "web"\nsource = {{type = "git", url = "{repo.url}", poll_cache = 0}}\n'
    config = env.write(toml)
    async with running(env, config) as daemon:
        assert not leftover.exists(), "the leftover of an interrupted extraction was not removed at start"
        status = daemon.apps["web"].runner.status

        def cache_bytes() -> float:
            lines = daemon.metrics.exposition().decode().splitlines()
            return float(next(line for line in lines if line.startswith("gitopsd_cache_bytes ")).split()[1])

        await wait_for(lambda: "gitopsd_cache_bytes " in daemon.metrics.exposition().decode(), timeout=30)
        await wait_for(lambda: first in status.revision, timeout=30)
        for rev in ("2", "3"):
            sha = repo.commit({"objects.yaml": configmap("web", rev=rev)})
            daemon.apps["web"].runner.trigger.fire("webhook")
            await wait_for(lambda sha=sha: sha in status.revision, timeout=30)
        trees = cache / "git-trees"
        assert len([p for p in trees.iterdir() if not p.name.startswith(".")]) == 3
        daemon.cache_budget.grace = 0.0
        daemon.cache_budget.max_bytes = 1
        result = daemon.cache_budget.sweep()
        daemon._cache_swept(daemon.cache_budget)
        current = [p for p in trees.iterdir() if not p.name.startswith(".")]
        assert len(result.evicted) == 2 and len(current) == 1, (result, current)
        assert current[0].name == git("rev-parse", "HEAD^{tree}", cwd=repo.work), "the app's current tree was evicted"
        metrics = daemon.metrics.exposition().decode()
        assert "gitopsd_cache_evictions_total 2.0" in metrics
        assert cache_bytes() == result.size_after > 0
