"""The start-up budget of ``gitopsd run``, as counts: what the daemon has imported once it is ready.

Import time is most of the daemon's start (docs/operations.md, "Start-up and readiness").
A fresh interpreter (a subprocess) runs the ``gitopsd run`` command. The daemon lists
``sys.modules`` the moment it becomes ready (the API serves, every app has its runner), just
before it sets up the clusters' clients; a thread polls /readyz, waits for the start to end
(garbage collection resumes), then sends the process SIGTERM.
What a config without appsets, sync windows, coordination, notifiers, SSH tunnels or
Helm/OCI sources does not need must not be there yet: it is imported when first used, and
the Kubernetes layer (with aiohttp's client) just after ready, off the event loop.
A wall-clock budget would flake on a shared machine; a module list does not.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

# Loaded only by the feature that needs them: a module or package with all its submodules, or
# (a name ending in ".") only the submodules of a package.
NOT_AT_START: dict[str, str] = {
    "jinja2": "templates of the web page (first page view) and of appsets",
    "httpx": "notifiers, Helm and OCI downloads, the member fan-out",
    "pygments": "httpx's command line",
    "croniter": "sync windows",
    "yaml": "manifests and kustomizations (the first render)",
    "tarfile": "extracting a fetched tree (the first fetch)",
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
    "gitopsd.daemon.coordination": "[daemon.coordination] (several members share the apps)",
    "gitopsd.coord": "[daemon.coordination] (several members share the apps)",
    "gitopsd.kube.leases": "coordination through Kubernetes Leases",
    "gitopsd.kube.tunnel": "clusters behind an SSH tunnel",
    "gitopsd_plugins._slack_socket": "Slack's Socket Mode (a Slack notifier with an app token)",
    "gitopsd_plugins._generators": "appset generators (an appset in the config)",
    "tomli": "a config file rtoml refuses (tomli's error message; gitopsd/plugin/tomlread.py)",
    "gitopsd.kube": "the clusters' clients (set up once the daemon is ready)",
    "kubernetes_asyncio": "the clusters' clients (set up once the daemon is ready)",
    "aiohttp.client": "aiohttp's HTTP client (only a cluster behind a proxy; the server needs only aiohttp.web)",
    "aiohttp.connector": "aiohttp's TLS contexts, built when its client is imported",
    "prometheus_client.metrics": "the metric types (the first count after ready, or the first scrape; server/metrics.py)",
    "prometheus_client.exposition": "never: /metrics writes the text format itself (server/metrics.py)",
    "wsgiref": "prometheus_client's exposition servers (never used)",
    "watchfiles": "the config-file watcher (it starts once the daemon is ready)",
    "gitopsd_plugins._semver": "semver versions and ranges (a source with a range, a Helm chart version)",
    "gitopsd.server.push": "push webhooks' verification and parsing (the first POST /hooks/...)",
    "gitopsd.server.viewdata": "the view's data types (the first app listing, web page or push webhook)",
    "gitopsd.engine.protocols": "the cluster protocols and their dataclasses (with the Kubernetes layer, after ready)",
    "gitopsd.engine.approvals": "the change-control gate (an app with `approval`)",
}

# Everything imported at readiness, with some headroom: a new dependency on the start path
# (or an eager import of a heavy one) shows up here first. Raise it only with a reason.
MAX_MODULES = 740

APPS = 25  # none has a policy: more config warnings than the daemon logs one by one

SCRIPT = r"""
import gc, json, os, signal, socket, sys, threading, time
import gitopsd
import gitopsd.daemon.supervisor as supervisor
from gitopsd.cli.main import cli

seen = {}

class Daemon(supervisor.Daemon):
    async def _open_clusters(self, **kwargs):
        # Ready (/readyz is 200) since the statement before this call: what is imported now.
        seen["modules"] = sorted(sys.modules)
        seen["generators"] = sorted(c.__qualname__ for c in gitopsd.Generator.__subclasses__())
        seen["view_types"] = sorted(n for n in ("AppSummary", "ObjectView", "DiffView", "PushTarget") if n in vars(sys.modules["gitopsd.server.view"]))
        seen["dataclasses"] = sorted(
            f"{name}.{cls.__qualname__}"
            for name, module in list(sys.modules.items()) if name == "gitopsd" or name.startswith("gitopsd.")
            for cls in list(vars(module).values())
            if isinstance(cls, type) and cls.__module__ == name and "__dataclass_params__" in vars(cls)
        )
        seen["ready"] = self.accepting.is_set()
        await super()._open_clusters(**kwargs)

supervisor.Daemon = Daemon

def ready(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /readyz HTTP/1.0\r\n\r\n")
            return s.recv(64).split(b" ")[1] == b"200"
    except OSError:
        return False

def probe(port):
    deadline = time.monotonic() + 60
    while not ready(port) or not gc.isenabled():  # gc resumes once started
        if time.monotonic() > deadline:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        time.sleep(0.01)
    seen["gc"] = [gc.isenabled(), gc.get_freeze_count(), gc.get_threshold()[0]]
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=probe, args=(int(sys.argv[2]),), daemon=True).start()
try:
    cli(["run", "-c", sys.argv[1]], prog_name="gitopsd")
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps(seen))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path, port: int) -> Path:
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
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\nlisten = "127.0.0.1:{port}"\nlog_format = "json"\n'
        f'default_interval = "1h"\n\n[clusters.c]\nkubeconfig = "{kubeconfig}"\n\n{apps}'
    )
    return config


def _third_party_plugins() -> str:
    """Installed plugins that are not gitopsd's own (the development venv has the example plugin)."""
    return ",".join(
        ep.name for ep in entry_points(group="gitopsd") if ep.dist is None or ep.dist.name != "gitopsd"
    )


Started = tuple[dict[str, Any], list[dict[str, Any]]]


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Started:
    """What a thread of ``gitopsd run`` saw when /readyz first answered 200, and the daemon's log lines."""
    tmp_path = tmp_path_factory.mktemp("startup")
    port = _free_port()
    env = {**os.environ, "GITOPSD_DISABLE_PLUGINS": _third_party_plugins()}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(_config(tmp_path, port)), str(port)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    seen: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    assert "modules" in seen, "the daemon did not set up its clusters after it became ready (Daemon._open_clusters)"
    assert seen["ready"] and "gc" in seen
    assert "gitopsd.daemon.supervisor" in seen["modules"] and "gitopsd_plugins.git" in seen["modules"]
    logs = [json.loads(line) for line in (proc.stdout + proc.stderr).splitlines() if line.startswith('{"')]
    return seen, logs


@pytest.fixture(scope="module")
def modules_at_ready(started: Started) -> list[str]:
    modules: list[str] = started[0]["modules"]
    return modules


@pytest.mark.parametrize("heavy", sorted(NOT_AT_START))
def test_not_imported_before_ready(modules_at_ready: list[str], heavy: str) -> None:
    prefix = heavy if heavy.endswith(".") else heavy + "."
    loaded = [m for m in modules_at_ready if m == heavy or m.startswith(prefix)]
    assert not loaded, f"{heavy} ({NOT_AT_START[heavy]}) is imported before the daemon is ready: {loaded[:5]}"


# What the test's script imports for itself (the daemon's own start does not need them).
SCRIPT_IMPORTS = {"gc", "json", "os", "signal", "socket", "sys", "threading", "time"}


def test_bytecode_warm_up_covers_the_start(modules_at_ready: list[str]) -> None:
    """bench's warm-up imports every module ``gitopsd run`` has imported at ready.

    The benchmarks run the daemon with ``PYTHONPYCACHEPREFIX``, where Python reads only the
    cache's bytecode (the standard library's too): a module the warm-up leaves out is
    compiled by the first measured start.
    """
    from bench.procs import WARM_IMPORTS

    proc = subprocess.run(
        [sys.executable, "-c", WARM_IMPORTS + "; import json, sys; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    warmed = set(json.loads(proc.stdout.splitlines()[-1]))
    missing = sorted(set(modules_at_ready) - warmed - SCRIPT_IMPORTS - {"__main__"})
    assert not missing, f"imported before ready but not by bench.procs.WARM_IMPORTS: {missing}"


def test_no_generator_types_without_appsets(started: Started) -> None:
    """Generator classes (and their options models) are built when an appset needs them, not at every start."""
    assert started[0]["generators"] == []


def test_no_view_data_types_at_start(started: Started) -> None:
    """The view's frozen dataclasses (about 2 M instructions each to create) come with the first
    app listing, web page or push webhook, not at every start (gitopsd/server/viewdata.py)."""
    assert started[0]["view_types"] == []


# The public types plugin authors build on (docs/plugins.md) are dataclasses; gitopsd's own
# records are NamedTuples or plain classes: on Python 3.11 a frozen dataclass compiles six
# methods (about 4 M instructions) at every start.
PUBLIC_DATACLASSES = {
    *(f"gitopsd.core.models.{n}" for n in ("Artifact", "Rendered", "ObjectRef", "HealthStatus", "ObjectResult", "SyncResult", "HistoryEntry")),
    "gitopsd.core.events.Event",
    "gitopsd.core.proc.Completed",
    "gitopsd.plugin.interfaces.PluginContext",
    "gitopsd.plugin.interfaces.GeneratorContext",
    "gitopsd.plugin.options.Tools",
}


def test_only_public_dataclasses_before_ready(started: Started) -> None:
    """Every dataclass gitopsd has built when it is ready is a public type: an internal record
    made a dataclass again costs every start its generated methods."""
    assert "gitopsd.core.events.Event" in started[0]["dataclasses"]  # the check sees dataclasses
    internal = sorted(set(started[0]["dataclasses"]) - PUBLIC_DATACLASSES)
    assert not internal, f"internal dataclasses built before ready (use a NamedTuple or a plain class): {internal}"


def test_module_count(modules_at_ready: list[str]) -> None:
    assert len(modules_at_ready) <= MAX_MODULES, (
        f"{len(modules_at_ready)} modules imported before the daemon is ready (at most {MAX_MODULES})"
    )


def test_collection_resumes_at_ready(started: Started) -> None:
    """``gitopsd run`` collects no garbage while it starts; from ready on it skips what the start
    built and collects the young generation less often than Python's default (700)."""
    from gitopsd.cli.main import YOUNG_COLLECTION_EVERY

    enabled, frozen, young_every = started[0]["gc"]
    assert enabled and frozen > 10_000
    assert young_every == YOUNG_COLLECTION_EVERY > 700


def test_config_warnings_are_capped(started: Started) -> None:
    """A line per unrestricted app would cost a second of start-up at 10,000 apps: 20, then a count."""
    from gitopsd.daemon.supervisor import CONFIG_WARNINGS_LOGGED

    logs = started[1]
    one_by_one = [e for e in logs if e.get("event") == "config warning"]
    assert len(one_by_one) == CONFIG_WARNINGS_LOGGED < APPS
    assert [e["count"] for e in logs if e.get("event") == "more config warnings"] == [APPS - CONFIG_WARNINGS_LOGGED]


def test_bench_import_time_separates_gitopsd_own_modules() -> None:
    """bench.startup's import time names the part spent in gitopsd's own modules, and only that."""
    import os

    from bench.startup import import_time

    env = dict(os.environ)
    total, own, cpu, modules = import_time(env, "import json")
    assert total > 0 and cpu > 0 and modules > 0
    assert own == 0  # no gitopsd module imported
    total, own, _, _ = import_time(env, "import gitopsd.core.errors")
    assert 0 < own < total  # gitopsd's package and module, within what Python's start adds


def test_bench_names_modules_compiled_after_the_warm_up(tmp_path: Path) -> None:
    """The converge benchmarks see a module the warm-up left out (its compiling would be measured)."""
    from bench.procs import bytecode_env, compiled_since, warm_bytecode

    cache = tmp_path / "pycache"
    warmed = warm_bytecode(cache)
    env = bytecode_env(dict(os.environ), cache)

    def run(code: str) -> None:
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)

    # What a converge loads after ready (manifests, the metric types): warmed.
    run("import gitopsd.core.yamlio, gitopsd.server.metrics as m; m._Families()")
    assert compiled_since(cache, warmed) == []
    run("import colorsys")  # nothing of gitopsd's imports it
    compiled = compiled_since(cache, warmed)
    assert len(compiled) == 1 and compiled[0].endswith("/colorsys.py") and Path(compiled[0]).is_file(), compiled


def test_bench_file_create_cost_leaves_nothing(tmp_path: Path) -> None:
    """bench's file-creation probe reports a cost and removes what it made."""
    from bench.procs import file_create_cost

    assert file_create_cost(tmp_path, files=60) > 0
    assert list(tmp_path.iterdir()) == []
