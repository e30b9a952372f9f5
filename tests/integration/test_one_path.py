"""One reconcile path: the daemon, the testing kit and the CLI share the Reconciler.

The kit's ``run_app`` must report exactly the events the daemon emits for the same
scenario, and an unexpected exception inside a reconcile is a reported failure with
backoff, not a silent restart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

import gitopsd
from gitopsd.core.errors import InternalError
from gitopsd.core.events import Event
from gitopsd.core.models import Artifact
from gitopsd.daemon.supervisor import Daemon
from gitopsd.plugin.loading import load_config
from gitopsd.plugin.manager import PluginManager
from tests.integration.test_engine import DEPLOYMENT, Recorder, run_daemon, wait_for, write_config

pytestmark = pytest.mark.anyio

BROKEN = DEPLOYMENT.replace("image: nginx:1.27", "image: nginx:fail")
WITHOUT_CONFIGMAP = DEPLOYMENT.split("---")[0]

# Each step: what the app's directory holds, then the event that ends the step.
SCENARIO = [
    (DEPLOYMENT, "sync-succeeded"),
    (BROKEN, "health-degraded"),
    (DEPLOYMENT, "health-recovered"),
    (WITHOUT_CONFIGMAP, "sync-succeeded"),
]


def shape(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.name, e.reason) for e in events]


async def test_the_kit_reports_the_events_the_daemon_emits(
    tmp_path: Path, gitopsd_sandbox: Any, git_repo: Any, run_app: Any, recorded_events: list[Event]
) -> None:
    source = {"type": "git", "url": git_repo.url, "ref": "main", "path": "web"}
    kit_steps = []
    for manifests, _ in SCENARIO:
        git_repo.commit({"web/app.yaml": manifests})
        seen = len(recorded_events)
        # Another app name than the daemon's below: one cluster, one installation, one owner per name.
        await run_app({"name": "kit-web", "namespace": "kit", "timeout": "3s", "prune": True, "source": source})
        kit_steps.append(shape(recorded_events[seen:]))

    # The same scenario in the daemon, on a new branch of the same repository.
    git_repo.git("checkout", "-q", "--orphan", "daemon")
    git_repo.commit({"web/app.yaml": SCENARIO[0][0]})
    gitopsd_sandbox.write_kubeconfig(tmp_path / "kubeconfig")
    path = write_config(tmp_path, tmp_path / "kubeconfig", {})
    path.write_text(
        path.read_text()
        + '\n[apps.web]\ncluster = "sandbox"\nnamespace = "web"\nprune = true\ntimeout = "3s"\n'
        + f'source = {{ type = "git", url = "{git_repo.url}", ref = "daemon", path = "web" }}\n'
    )
    config = load_config(path, PluginManager(builtins_only=True).types)
    recorder = Recorder()
    daemon_steps = []

    async def body(daemon: Daemon) -> None:
        for index, (manifests, last) in enumerate(SCENARIO):
            seen = len(recorder.events)
            if index:
                git_repo.commit({"web/app.yaml": manifests})
                daemon.apps["web"].runner.trigger.fire("refresh", force=True)
            await wait_for(lambda last=last, seen=seen: last in [e.name for e in recorder.events[seen:]], timeout=30, what=last)
            await anyio.sleep(0.3)  # nothing else follows the step's last event
            daemon_steps.append(shape([e for e in recorder.events[seen:] if e.app == "web"]))

    await run_daemon(config, body, recorder)
    assert kit_steps == daemon_steps
    assert kit_steps[0] == [("revision-detected", ""), ("sync-started", ""), ("sync-succeeded", "")]
    assert ("health-degraded", "Degraded") in kit_steps[1] and ("health-recovered", "") in kit_steps[2]
    assert ("pruned", "") in kit_steps[3]


class BrokenSource(gitopsd.Source):
    """A third-party source with a bug: its fetch raises something that is not a GitopsdError."""

    async def latest_revision(self) -> str:
        return "v1"

    async def fetch(self, revision: str) -> Artifact:
        raise KeyError("no such layer")


class BrokenPlugin:
    @gitopsd.hookimpl
    def gitopsd_source_types(self) -> dict[str, type[gitopsd.Source]]:
        return {"broken": BrokenSource}


@pytest.mark.gitopsd_plugins(BrokenPlugin())
async def test_an_unexpected_exception_is_a_reported_failure(run_app: Any, recorded_events: list[Event]) -> None:
    with pytest.raises(InternalError, match="KeyError: 'no such layer'"):
        await run_app({"source": {"type": "broken"}})
    failed = [e for e in recorded_events if e.name == "sync-failed"]
    assert [e.reason for e in failed] == ["InternalError"]


async def test_the_daemon_backs_off_after_an_unexpected_exception(tmp_path: Path, gitopsd_sandbox: Any) -> None:
    gitopsd_sandbox.write_kubeconfig(tmp_path / "kubeconfig")
    path = write_config(tmp_path, tmp_path / "kubeconfig", {})
    path.write_text(path.read_text() + '\n[apps.web]\ncluster = "sandbox"\nnamespace = "web"\nsource = { type = "broken" }\n')
    plugins = PluginManager(builtins_only=True, plugins=[BrokenPlugin()])
    config = load_config(path, plugins.types)
    recorder = Recorder()
    daemon = Daemon(config, PluginManager(builtins_only=True, plugins=[BrokenPlugin(), recorder]))
    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.run)
        await daemon.ready.wait()
        runner = daemon.apps["web"].runner
        await wait_for(lambda: runner.status.reconciles >= 2, timeout=30, what="a retry")
        daemon.stop()
    assert runner.status.last_result == "failed" and runner.status.last_reason == "InternalError"
    assert [e.reason for e in recorder.events if e.name == "sync-failed"][:2] == ["InternalError"] * 2
    # Backoff doubles from 2 s (capped by the interval), instead of a fixed 5 s restart loop.
    assert runner._next_delay() >= 4.0
