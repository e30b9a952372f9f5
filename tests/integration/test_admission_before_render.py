"""Apps take their cluster's turn before rendering: the renders held for a sync are bounded.

Real git and the sandbox. With ``max_concurrent_syncs = 2`` and eight apps starting at
once, at most two of them have rendered and not finished their sync at any moment (before,
all eight rendered at once and then waited for a turn holding their manifests).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gitopsd.core.models import Rendered
from gitopsd.daemon.wiring import open_runtime
from gitopsd.engine import stages
from gitopsd.plugin.loading import validate_config
from gitopsd.plugin.manager import PluginManager

pytestmark = pytest.mark.anyio

APPS = [f"app{i}" for i in range(8)]


def configmap(name: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{value: '1'}}\n"


async def test_renders_held_for_a_sync_are_bounded_by_the_clusters_turns(
    tmp_path: Path, gitopsd_sandbox: Any, git_repo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    git_repo.commit({f"{name}/cm.yaml": configmap(name) for name in APPS})
    raw = {
        "daemon": {"state_dir": str(tmp_path / "state")},
        "clusters": {"sandbox": {"kubeconfig": str(gitopsd_sandbox.kubeconfig), "max_concurrent_syncs": 2}},
        "apps": {
            name: {"cluster": "sandbox", "namespace": "default", "timeout": "10s",
                   "source": {"type": "git", "url": git_repo.url, "ref": "main", "path": name}}
            for name in APPS
        },
    }
    config = validate_config(raw, PluginManager(builtins_only=True).types, label="<test config>")
    held = 0  # apps that rendered and have not finished their sync
    most = 0
    real_render = stages.render

    async def render(*args: Any) -> Rendered:
        nonlocal held, most
        rendered = await real_render(*args)
        held += 1
        most = max(most, held)
        return rendered

    monkeypatch.setattr(stages, "render", render)  # observed, not replaced
    async with open_runtime(config, PluginManager(builtins_only=True)) as runtime:
        assert runtime.pool is not None
        cluster = runtime.pool.get("sandbox")
        real_sync = cluster.sync

        async def sync(*args: Any, **kwargs: Any) -> Any:
            nonlocal held
            try:
                return await real_sync(*args, **kwargs)
            finally:
                held -= 1

        cluster.sync = sync  # type: ignore[method-assign]
        apps = [runtime.reconciler(config.apps[name]) for name in APPS]
        for r in apps:
            await r.load()
        results = await asyncio.gather(*(r.reconcile(["start"]) for r in apps))
        assert all(r is not None and r.ok for r in results), [r and r.message for r in results]
        assert held == 0
        assert most <= 2, f"{most} renders were held for a sync at once, with 2 turns"
        assert cluster.admission.peak <= 2  # type: ignore[attr-defined]
        assert cluster.admission.admitted == 0  # type: ignore[attr-defined]
