"""The start-up budget of ``gitopsd run``, as counts: what the daemon has imported once it is ready.

Import time is most of the daemon's start (docs/operations.md, "Start-up and readiness").
A fresh interpreter (a subprocess) starts the daemon exactly as ``gitopsd run`` does (the
plugin manager, the config file, :class:`~gitopsd.daemon.supervisor.Daemon`) and lists
``sys.modules`` the moment the daemon is ready: the API serves, every app's runner started.
What a config without appsets, sync windows, coordination, notifiers, SSH tunnels or
Helm/OCI sources does not need must not be there yet: it is imported when first used.
A wall-clock budget would flake on a shared machine; a module list does not.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

# Loaded only by the feature that needs them: a module or package with all its submodules, or
# (a name ending in ".") only the submodules of a package.
NOT_AT_START: dict[str, str] = {
    "jinja2": "templates of the web page (first page view) and of appsets",
    "httpx": "notifiers, Helm and OCI downloads, the member fan-out",
    "pygments": "httpx's command line",
    "croniter": "sync windows",
    "asyncssh": "clusters behind an SSH tunnel",
    "cryptography": "the sandbox's certificates",
    "google.protobuf": "the sandbox's protobuf bodies",
    "tomlkit": "gitopsd import",
    "kubernetes_asyncio.client.api": "kubernetes-asyncio's generated API classes (never used)",
    "kubernetes_asyncio.client.models.": "kubernetes-asyncio's generated models (kube/k8s.py keeps them out)",
    "gitopsd.sandbox": "gitopsd sandbox",
    "gitopsd.testing": "the testing kit",
    "gitopsd.cli.importers": "gitopsd import",
    "gitopsd.cli.docgen": "the documentation generator",
    "gitopsd.cli.ops": "the CLI's commands that talk to a running daemon",
    "gitopsd.cli.daemon_client": "the CLI's commands that talk to a running daemon",
    "gitopsd.coord.etcd": "coordination through etcd",
    "gitopsd.kube.leases": "coordination through Kubernetes Leases",
    "gitopsd.kube.tunnel": "clusters behind an SSH tunnel",
    "gitopsd_plugins._slack_socket": "Slack's Socket Mode (a Slack notifier with an app token)",
}

# Everything imported at readiness, with some headroom: a new dependency on the start path
# (or an eager import of a heavy one) shows up here first. Raise it only with a reason.
MAX_MODULES = 740

APPS = 25  # none has a policy: more config warnings than the daemon logs one by one

SCRIPT = r"""
import sys, json, anyio
from pathlib import Path
from gitopsd.core.logs import configure_logging
from gitopsd.plugin.loading import load_config
from gitopsd.plugin.manager import PluginManager
import gitopsd.cli.main  # the command's own module, as `gitopsd run` loads it

plugins = PluginManager(builtins_only=True)
config = load_config(sys.argv[1], plugins.types)
configure_logging("json", "warning")
from gitopsd.daemon.supervisor import Daemon

seen = []

def ready(daemon):
    seen.extend(sorted(sys.modules))
    daemon.stop()

async def main():
    await Daemon(config, plugins, on_ready=ready).run()

anyio.run(main)
print(json.dumps(seen))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path) -> Path:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    apps = "".join(
        f'[apps.app-{i}]\ncluster = "c"\nnamespace = "ns-{i}"\n'
        f'source = {{ type = "git", url = "file://{tmp_path}/missing.git", ref = "main", path = "apps/{i}" }}\n\n'
        for i in range(APPS)
    )
    config = tmp_path / "config.toml"
    config.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\nlisten = "127.0.0.1:{_free_port()}"\n'
        f'default_interval = "1h"\n\n[clusters.c]\nkubeconfig = "{kubeconfig}"\n\n{apps}'
    )
    return config


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[dict[str, object]]]:
    """(the modules imported at readiness, the daemon's log lines) of one start."""
    tmp_path = tmp_path_factory.mktemp("startup")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(_config(tmp_path))], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    lines = (proc.stdout + proc.stderr).splitlines()
    modules: list[str] = json.loads(proc.stdout.splitlines()[-1])
    assert "gitopsd.daemon.supervisor" in modules and "gitopsd_plugins.git" in modules
    logs = [json.loads(line) for line in lines if line.startswith('{"')]
    return modules, logs


@pytest.fixture(scope="module")
def modules_at_ready(started: tuple[list[str], list[dict[str, object]]]) -> list[str]:
    return started[0]


@pytest.mark.parametrize("heavy", sorted(NOT_AT_START))
def test_not_imported_before_ready(modules_at_ready: list[str], heavy: str) -> None:
    prefix = heavy if heavy.endswith(".") else heavy + "."
    loaded = [m for m in modules_at_ready if m == heavy or m.startswith(prefix)]
    assert not loaded, f"{heavy} ({NOT_AT_START[heavy]}) is imported before the daemon is ready: {loaded[:5]}"


def test_module_count(modules_at_ready: list[str]) -> None:
    assert len(modules_at_ready) <= MAX_MODULES, (
        f"{len(modules_at_ready)} modules imported before the daemon is ready (at most {MAX_MODULES})"
    )


def test_config_warnings_are_capped(started: tuple[list[str], list[dict[str, object]]]) -> None:
    """A line per unrestricted app would cost a second of start-up at 10,000 apps: 20, then a count."""
    from gitopsd.daemon.supervisor import CONFIG_WARNINGS_LOGGED

    logs = started[1]
    one_by_one = [e for e in logs if e.get("event") == "config warning"]
    assert len(one_by_one) == CONFIG_WARNINGS_LOGGED < APPS
    assert [e["count"] for e in logs if e.get("event") == "more config warnings"] == [APPS - CONFIG_WARNINGS_LOGGED]
