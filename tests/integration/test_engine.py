"""The engine end to end: daemon + local sources + the sandbox API server over real HTTPS."""

from __future__ import annotations

import signal
import socket
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest

from gitopsd.core.events import Event
from gitopsd.core.models import SyncStatus
from gitopsd.daemon.supervisor import Daemon
from gitopsd.plugin.config import Config
from gitopsd.plugin.hookspecs import hookimpl
from gitopsd.plugin.loading import load_config
from gitopsd.plugin.manager import PluginManager
from gitopsd.sandbox import Sandbox

pytestmark = pytest.mark.anyio

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx:1.27}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path, kubeconfig: Path, apps: dict[str, str], extra: str = "") -> Path:
    """A config with one app per (name -> manifests directory) on the sandbox cluster."""
    text = textwrap.dedent(f"""
        [daemon]
        state_dir = "{tmp_path / 'state'}"
        listen = "127.0.0.1:{free_port()}"
        default_interval = "1h"
        shutdown_timeout = "10s"
        watch_config = false
        log_format = "json"

        [clusters.sandbox]
        kubeconfig = "{kubeconfig}"
        """)
    for name, directory in apps.items():
        text += textwrap.dedent(f"""
            [apps.{name}]
            cluster = "sandbox"
            namespace = "{name}"
            source = {{ type = "local", path = "{directory}" }}
            prune = true
            """)
    path = tmp_path / "config.toml"
    path.write_text(text + extra)
    return path


def manifests_dir(tmp_path: Path, name: str, text: str) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "app.yaml").write_text(text)
    return directory


async def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.05)


def api(sandbox: Sandbox) -> httpx.AsyncClient:
    import ssl

    context = ssl.create_default_context(cadata=sandbox.ca_pem.decode())
    return httpx.AsyncClient(base_url=sandbox.url, verify=context, headers={"Authorization": f"Bearer {sandbox.token}"})


@pytest.fixture
async def sandbox(tmp_path: Path):
    async with Sandbox(tls=True, rollout_delay=0.05) as sb:
        sb.write_kubeconfig(tmp_path / "kubeconfig")
        yield sb


def synced(daemon: Daemon, *names: str) -> bool:
    return all(
        name in daemon.apps and daemon.apps[name].runner.status.sync == SyncStatus.SYNCED for name in names
    )


class Recorder:
    """Records every event, through the same hook any plugin would use."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    @hookimpl
    def gitopsd_event(self, event: Event) -> None:
        self.events.append(event)

    def names(self, app: str) -> list[str]:
        return [e.name for e in self.events if e.app == app]


async def run_daemon(config: Config, body: Callable[[Daemon], object], recorder: Recorder | None = None) -> None:
    daemon = Daemon(config, PluginManager(builtins_only=True, plugins=[recorder] if recorder else []))
    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.run)
        await daemon.ready.wait()
        try:
            await body(daemon)  # type: ignore[misc]
        finally:
            daemon.stop()


async def test_apps_converge_and_a_noop_round_sends_no_request(tmp_path: Path, sandbox: Sandbox) -> None:
    shared = manifests_dir(tmp_path, "shared", DEPLOYMENT)
    config = load_config(write_config(tmp_path, tmp_path / "kubeconfig", {"one": str(shared), "two": str(shared)}), PluginManager(builtins_only=True).types)

    async def body(daemon: Daemon) -> None:
        await wait_for(lambda: synced(daemon, "one", "two"), what="both apps synced")
        async with api(sandbox) as client:
            for ns in ("one", "two"):
                response = await client.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")
                assert response.status_code == 200
                labels = response.json()["metadata"]["labels"]
                assert labels.get("gitopsd.dev/app") == ns or ns in labels.values()
        # Both apps read the same directory: one render served both (the cache keys on the app too,
        # so each app renders once; a second pass must hit the cache).
        misses = daemon.workspace.render_cache.misses
        sandbox.reset_counters()
        before = {n: r.runner.status.reconciles for n, r in daemon.apps.items()}
        for running in daemon.apps.values():
            running.runner.trigger.fire("interval")
        await wait_for(lambda: all(r.runner.status.reconciles > before[n] for n, r in daemon.apps.items()))
        await anyio.sleep(0.2)
        counts = sandbox.counters()
        assert counts["writes"] == 0, counts
        assert {v: n for v, n in counts["by_verb"].items() if v != "watch"} == {}, counts
        assert daemon.workspace.render_cache.misses == misses

    await run_daemon(config, body)


async def test_drift_is_corrected(tmp_path: Path, sandbox: Sandbox) -> None:
    config = load_config(write_config(tmp_path, tmp_path / "kubeconfig", {"web": str(manifests_dir(tmp_path, "m", DEPLOYMENT))}), PluginManager(builtins_only=True).types)

    async def body(daemon: Daemon) -> None:
        await wait_for(lambda: synced(daemon, "web"))
        async with api(sandbox) as client:
            response = await client.patch(
                "/apis/apps/v1/namespaces/web/deployments/web",
                json={"spec": {"replicas": 5}},
                headers={"Content-Type": "application/merge-patch+json"},
            )
            assert response.status_code == 200 and response.json()["spec"]["replicas"] == 5
            with anyio.fail_after(10):
                while True:
                    live = (await client.get("/apis/apps/v1/namespaces/web/deployments/web")).json()
                    if live["spec"]["replicas"] == 2:
                        break
                    await anyio.sleep(0.05)

    await run_daemon(config, body)


async def test_a_broken_app_does_not_stop_the_others(tmp_path: Path, sandbox: Sandbox) -> None:
    good = manifests_dir(tmp_path, "good", DEPLOYMENT)
    bad = manifests_dir(tmp_path, "bad", "kind: [unclosed\n")
    config = load_config(write_config(tmp_path, tmp_path / "kubeconfig", {"good": str(good), "bad": str(bad)}), PluginManager(builtins_only=True).types)

    async def body(daemon: Daemon) -> None:
        await wait_for(lambda: synced(daemon, "good"))
        status = daemon.apps["bad"].runner.status
        await wait_for(lambda: status.last_result == "failed")
        assert "app.yaml: document 0" in status.last_message and "invalid YAML" in status.last_message

    await run_daemon(config, body)


async def test_sigterm_stops_the_daemon_cleanly(tmp_path: Path, sandbox: Sandbox) -> None:
    config = write_config(tmp_path, tmp_path / "kubeconfig", {"web": str(manifests_dir(tmp_path, "m", DEPLOYMENT))})
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log_file:
        proc = await anyio.open_process(
            [sys.executable, "-m", "gitopsd", "run", "-c", str(config)], stdout=log_file, stderr=log_file
        )
        async with api(sandbox) as client:
            with anyio.fail_after(30):
                while (await client.get("/api/v1/namespaces/web/configmaps/settings")).status_code != 200:
                    await anyio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(15):  # shutdown_timeout is 10 s
            code = await proc.wait()
    log = log_path.read_text()
    assert code == 0, log
    assert "gitopsd stopped" in log


async def test_apps_sharing_a_namespace_do_not_fight_over_it(tmp_path: Path, sandbox: Sandbox) -> None:
    config_path = write_config(tmp_path, tmp_path / "kubeconfig", {})
    for name, manifests in (("first", DEPLOYMENT), ("second", DEPLOYMENT.replace("name: web", "name: api").replace("name: settings", "name: api-settings"))):
        directory = manifests_dir(tmp_path, name, manifests)
        config_path.write_text(config_path.read_text() + textwrap.dedent(f"""
            [apps.{name}]
            cluster = "sandbox"
            namespace = "shared"
            source = {{ type = "local", path = "{directory}" }}
            prune = true
            """))
    config = load_config(config_path, PluginManager(builtins_only=True).types)

    async def body(daemon: Daemon) -> None:
        await wait_for(lambda: synced(daemon, "first", "second"))
        settled = {n: r.runner.status.reconciles for n, r in daemon.apps.items()}
        await anyio.sleep(1.0)  # a drift ping-pong would reconcile many times a second
        assert {n: r.runner.status.reconciles for n, r in daemon.apps.items()} == settled
        async with api(sandbox) as client:
            namespace = (await client.get("/api/v1/namespaces/shared")).json()
        assert "gitopsd.dev/app" not in namespace["metadata"].get("labels", {})

    await run_daemon(config, body)


async def test_health_events_once_per_transition(tmp_path: Path, sandbox: Sandbox) -> None:
    directory = manifests_dir(tmp_path, "m", DEPLOYMENT)
    config = load_config(write_config(tmp_path, tmp_path / "kubeconfig", {"web": str(directory)}), PluginManager(builtins_only=True).types)
    config = config.model_copy(update={"apps": {"web": config.apps["web"].model_copy(update={"timeout": 3.0})}})
    recorder = Recorder()

    async def body(daemon: Daemon) -> None:
        await wait_for(lambda: synced(daemon, "web"))
        assert recorder.names("web") == ["revision-detected", "sync-started", "sync-succeeded"]
        (directory / "app.yaml").write_text(DEPLOYMENT.replace("image: nginx:1.27", "image: nginx:fail"))
        await wait_for(lambda: "health-degraded" in recorder.names("web"))
        (directory / "app.yaml").write_text(DEPLOYMENT)
        await wait_for(lambda: "health-recovered" in recorder.names("web"))
        names = recorder.names("web")
        assert names.count("health-degraded") == 1 and names.count("health-recovered") == 1
        assert names.index("health-degraded") < names.index("health-recovered")

    await run_daemon(config, body, recorder)
