"""A new revision re-renders only the apps whose inputs changed (Source.changed_paths, Renderer.inputs).

Real git, kubectl (kustomize) and the sandbox. An app whose directory, and whatever its
renderer reads outside it (a Kustomize ``../base``), did not change between the two
commits keeps its manifests and only moves its revision: no render, no sync, no history
entry. Every other app renders and syncs as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gitopsd.daemon.wiring import open_runtime
from gitopsd.engine.reconciler import Reconciler
from gitopsd.plugin.loading import validate_config
from gitopsd.plugin.manager import PluginManager
from tests.conftest import require_tool

pytestmark = pytest.mark.anyio


def configmap(name: str, value: str, namespace: str | None = None) -> str:
    ns = f", namespace: {namespace}" if namespace else ""
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}{ns}}}\ndata: {{value: {value!r}}}\n"


FILES = {
    "a/cm.yaml": configmap("a", "1"),
    "b/cm.yaml": configmap("b", "1"),
    "base/kustomization.yaml": "resources: [cm.yaml]\n",
    "base/cm.yaml": configmap("shared", "1"),
    "overlay/kustomization.yaml": "resources: [../base]\nnamePrefix: o-\n",
    "README.md": "apps\n",
}


async def test_a_push_renders_only_the_apps_it_changes(tmp_path: Path, gitopsd_sandbox: Any, git_repo: Any) -> None:
    kubectl = require_tool("kubectl")
    git_repo.commit(FILES)
    raw = {
        "daemon": {"state_dir": str(tmp_path / "state"), "tools": {"kubectl": kubectl}},
        "clusters": {"sandbox": {"kubeconfig": str(gitopsd_sandbox.kubeconfig)}},
        "apps": {
            name: {"cluster": "sandbox", "namespace": name, "timeout": "5s",
                   "source": {"type": "git", "url": git_repo.url, "ref": "main", "path": name}}
            for name in ("a", "b", "overlay")
        },
    }
    config = validate_config(raw, PluginManager(builtins_only=True).types, label="<test config>")
    plugins = PluginManager(builtins_only=True)
    async with open_runtime(config, plugins) as runtime:
        assert runtime.store is not None
        apps: dict[str, Reconciler] = {name: runtime.reconciler(config.apps[name]) for name in config.apps}
        for r in apps.values():
            await r.load()

        async def round_() -> dict[str, int]:
            """Reconcile every app as an interval poll does; the history length of each."""
            for r in apps.values():
                r.source.invalidate(float("inf"))
                await r.reconcile(["interval"])
            assert runtime.store is not None
            return {name: len(await runtime.store.history(name)) for name in apps}

        assert await round_() == {"a": 1, "b": 1, "overlay": 1}

        # Only a/ changes: a syncs, b and overlay move to the new revision without a render.
        head = git_repo.commit({"a/cm.yaml": configmap("a", "2")})
        assert await round_() == {"a": 2, "b": 1, "overlay": 1}
        for name, r in apps.items():
            assert r.status.revision.endswith(head), name
            record = await runtime.store.app(name)
            assert record is not None and record.revision.endswith(head), name

        # The overlay's base, outside its path, changes: the overlay renders and applies it.
        head = git_repo.commit({"base/cm.yaml": configmap("shared", "2")})
        assert await round_() == {"a": 2, "b": 1, "overlay": 2}
        live = await apps["overlay"].cluster.diff(apps["overlay"].app, await apps["overlay"].render())  # type: ignore[union-attr]
        assert live == []

        # A file outside every app: nothing renders, everything moves.
        head = git_repo.commit({"README.md": "apps, again\n"})
        assert await round_() == {"a": 2, "b": 1, "overlay": 2}
        assert all(r.status.revision.endswith(head) for r in apps.values())
        for r in apps.values():
            await r.aclose()
