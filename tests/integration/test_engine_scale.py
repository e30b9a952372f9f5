"""What many apps cost when nothing changes.

Real git and the sandbox. An interval with nothing changed costs one shared ls-remote and a
look at the live cache: no render, no state write, no event.
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


async def test_a_no_op_interval_writes_nothing_emits_nothing_renders_nothing_and_polls_once(
    tmp_path: Path, gitopsd_sandbox: Any, git_repo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    git_repo.commit({f"{name}/cm.yaml": configmap(name) for name in APPS[:4]})
    raw = {
        "daemon": {"state_dir": str(tmp_path / "state")},
        "clusters": {"sandbox": {"kubeconfig": str(gitopsd_sandbox.kubeconfig)}},
        "apps": {
            name: {"cluster": "sandbox", "namespace": "default", "timeout": "10s",
                   "source": {"type": "git", "url": git_repo.url, "ref": "main", "path": name}}
            for name in APPS[:4]
        },
    }
    config = validate_config(raw, PluginManager(builtins_only=True).types, label="<test config>")
    events: list[Any] = []
    renders = 0
    real_render = stages.render

    async def render(*args: Any) -> Rendered:
        nonlocal renders
        renders += 1
        return await real_render(*args)

    monkeypatch.setattr(stages, "render", render)  # counted, not replaced
    async with open_runtime(config, PluginManager(builtins_only=True), emit=events.append) as runtime:
        assert runtime.store is not None
        apps = [runtime.reconciler(config.apps[name]) for name in APPS[:4]]
        for r in apps:
            await r.load()
        first = await asyncio.gather(*(r.reconcile(["start"]) for r in apps))
        assert all(r is not None and r.ok for r in first)
        assert events

        events.clear()
        rendered_before = renders
        writes = runtime.store._conn.total_changes  # rows this connection changed
        polls = apps[0].source.repo.ls_remote_count  # type: ignore[attr-defined]
        for _ in range(3):  # three intervals with nothing changed
            for r in apps:
                r.source.invalidate(float("inf"))  # the shared poll's result is from the last interval
            assert await asyncio.gather(*(r.reconcile(["interval"]) for r in apps)) == [None] * 4
        assert events == []
        assert renders == rendered_before
        assert runtime.store._conn.total_changes == writes
        assert apps[0].source.repo.ls_remote_count == polls + 3  # type: ignore[attr-defined]  # one per interval
        assert all(r.status.sync == "Synced" for r in apps)
