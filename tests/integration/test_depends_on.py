"""depends_on in the daemon: a chain of three apps syncs in order; a failing dependency holds its dependants."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitopsd.plugin.loading import load_config
from gitopsd.plugin.manager import PluginManager
from gitopsd.sandbox import Sandbox

from .test_engine import (
    Recorder,
    manifests_dir,
    run_daemon,
    sandbox,
    synced,
    wait_for,
    write_config,
)

__all__ = ["sandbox"]  # the fixture

pytestmark = pytest.mark.anyio


def deployment(name: str, fail: bool = False, image: str = "nginx:1.27", fixed: bool = False) -> str:
    annotations = f'\n  annotations: {{sandbox.gitopsd.dev/fail: "{str(fail).lower()}"}}' if fail or fixed else ""
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}{annotations}
spec:
  replicas: 1
  progressDeadlineSeconds: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: main, image: {image}}}]
"""


def chain_config(tmp_path: Path, sandbox: Sandbox, db_fails: bool) -> Path:
    dirs = {
        "db": str(manifests_dir(tmp_path, "db", deployment("db", fail=db_fails))),
        "api": str(manifests_dir(tmp_path, "api", deployment("api"))),
        "web": str(manifests_dir(tmp_path, "web", deployment("web"))),
    }
    # Declared in reverse so that config order cannot explain the sync order.
    path = write_config(tmp_path, tmp_path / "kubeconfig", {"web": dirs["web"], "api": dirs["api"], "db": dirs["db"]})
    text = path.read_text()
    text = text.replace('[apps.web]\n', '[apps.web]\ndepends_on = ["api"]\n')
    text = text.replace('[apps.api]\n', '[apps.api]\ndepends_on = ["db"]\ntimeout = "20s"\n')
    text = text.replace('[apps.db]\n', '[apps.db]\ntimeout = "20s"\n')
    path.write_text(text)
    return path


async def test_a_chain_of_three_apps_syncs_in_dependency_order(tmp_path: Path, sandbox: Sandbox) -> None:
    config = load_config(chain_config(tmp_path, sandbox, db_fails=False), PluginManager(builtins_only=True).types)
    recorder = Recorder()

    async def body(daemon) -> None:  # type: ignore[no-untyped-def]
        await wait_for(lambda: synced(daemon, "db", "api", "web"), timeout=60)
        succeeded = [e.app for e in recorder.events if e.name == "sync-succeeded"]
        assert succeeded == ["db", "api", "web"], succeeded
        assert all(not daemon.apps[n].runner.status.waiting for n in ("db", "api", "web"))

    await run_daemon(config, body, recorder)


async def test_a_failing_dependency_holds_its_dependants(tmp_path: Path, sandbox: Sandbox) -> None:
    config = load_config(chain_config(tmp_path, sandbox, db_fails=True), PluginManager(builtins_only=True).types)
    recorder = Recorder()

    async def body(daemon) -> None:  # type: ignore[no-untyped-def]
        db, api, web = (daemon.apps[n].runner for n in ("db", "api", "web"))
        await wait_for(lambda: db.status.last_result == "failed", timeout=60)
        # db's failed sync wakes api, which checks again and names db and why.
        await wait_for(lambda: "last sync failed" in api.status.waiting, timeout=20)
        assert api.status.waiting.startswith("waiting for db (") and "Degraded" in api.status.waiting
        assert web.status.waiting.startswith("waiting for api (")
        assert sandbox.store.get("deployments.apps", "api", "api") is None
        assert sandbox.store.get("deployments.apps", "web", "web") is None
        assert not [e for e in recorder.events if e.app in ("api", "web") and e.name.startswith("sync-")]

        # The fix lands: db syncs, and its dependants follow without waiting for their interval.
        (tmp_path / "db" / "app.yaml").write_text(deployment("db", image="nginx:1.28", fixed=True))
        db.trigger.fire("refresh", force=True)
        await wait_for(lambda: synced(daemon, "db", "api", "web") and not web.status.waiting, timeout=60)
        assert sandbox.store.get("deployments.apps", "web", "web") is not None

    await run_daemon(config, body, recorder)
