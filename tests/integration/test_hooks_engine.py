"""Hooks in the daemon: they run for a new revision or a manual sync, not on a no-op round or a self-heal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from gitopsd.plugin.loading import load_config
from gitopsd.plugin.manager import PluginManager
from gitopsd.sandbox import Sandbox

from .test_engine import api, manifests_dir, run_daemon, sandbox, synced, wait_for, write_config

__all__ = ["sandbox"]  # the fixture

pytestmark = pytest.mark.anyio

APP = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello}
---
apiVersion: batch/v1
kind: Job
metadata:
  generateName: migrate-
  annotations: {argocd.argoproj.io/hook: PreSync}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: m, image: busybox:1.36}]
"""


def migrations(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [j for j in sandbox.store.iter("jobs.batch") if j["metadata"]["name"].startswith("migrate-")]


async def test_hooks_run_only_when_the_desired_state_changes_or_on_request(tmp_path: Path, sandbox: Sandbox) -> None:
    directory = manifests_dir(tmp_path, "web", APP)
    config = load_config(write_config(tmp_path, tmp_path / "kubeconfig", {"web": str(directory)}), PluginManager(builtins_only=True).types)

    async def body(daemon) -> None:  # type: ignore[no-untyped-def]
        runner = daemon.apps["web"].runner
        await wait_for(lambda: synced(daemon, "web") and len(migrations(sandbox)) == 1, timeout=60)
        first = migrations(sandbox)[0]["metadata"]["name"]

        # A round with nothing new: no hook.
        before = runner.status.reconciles
        runner.trigger.fire("interval")
        await wait_for(lambda: runner.status.reconciles > before)
        # Drift, healed: objects re-applied, no hook.
        async with api(sandbox) as client:
            response = await client.patch(
                "/api/v1/namespaces/web/configmaps/settings",
                json={"data": {"greeting": "changed"}},
                headers={"Content-Type": "application/merge-patch+json"},
            )
            assert response.status_code == 200
        await wait_for(lambda: sandbox.store.get("configmaps", "web", "settings")["data"]["greeting"] == "hello")
        await anyio.sleep(0.3)
        assert [j["metadata"]["name"] for j in migrations(sandbox)] == [first]

        # A manual sync (refresh) runs it again: the earlier Job is replaced (BeforeHookCreation).
        runner.trigger.fire("refresh", force=True)
        await wait_for(lambda: [j["metadata"]["name"] for j in migrations(sandbox)] not in ([first], []), timeout=30)
        assert len(migrations(sandbox)) == 1

        # A new revision runs it again too.
        second = migrations(sandbox)[0]["metadata"]["name"]
        (directory / "app.yaml").write_text(APP.replace("hello", "bonjour"))
        runner.trigger.fire("source-changed")
        await wait_for(lambda: [j["metadata"]["name"] for j in migrations(sandbox)] not in ([second], []), timeout=30)

    await run_daemon(config, body)
