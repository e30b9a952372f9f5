"""Helpers of the reliability suite: a real daemon process against a real sandbox process.

Everything is black-box: the daemon runs as ``python -m gitopsd run -c CONFIG`` and is
observed through its HTTP API, its log file, its SQLite state (read-only) and the sandbox.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import TOOLS, DaemonProc, SandboxProc, free_port, toml_str, tool_env

# Kinds the suite's manifests use, with their list paths (cluster-wide).
KIND_PATHS = {
    ("", "ConfigMap"): "/api/v1/configmaps",
    ("", "Secret"): "/api/v1/secrets",
    ("", "Service"): "/api/v1/services",
    ("", "ServiceAccount"): "/api/v1/serviceaccounts",
    ("apps", "Deployment"): "/apis/apps/v1/deployments",
    ("", "Namespace"): "/api/v1/namespaces",
}

ObjKey = tuple[str, str, str, str]  # group, kind, namespace, name


def configmap(name: str, **data: str) -> dict[str, Any]:
    """A ConfigMap without a namespace (the app's is used)."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def deployment(name: str, replicas: int = 1, image: str = "nginx:1.27") -> dict[str, Any]:
    """A Deployment without a namespace."""
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "main", "image": image}]}},
        },
    }


def service(name: str) -> dict[str, Any]:
    """A ClusterIP Service without a namespace."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app.kubernetes.io/name": name}, "ports": [{"port": 80, "targetPort": 8080}]}}


def write_manifests(directory: Path, docs: Iterable[dict[str, Any]]) -> Path:
    """Replace the YAML files of ``directory`` with one JSON document per file (JSON is YAML)."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.yaml"):
        old.unlink()
    for i, doc in enumerate(docs):
        (directory / f"{i:03d}-{doc['kind'].lower()}-{doc['metadata']['name']}.yaml").write_text(json.dumps(doc))
    return directory


def standard_app(index: int, revision: str = "1", objects: int = 4) -> list[dict[str, Any]]:
    """The usual app: a Deployment, a Service, and ConfigMaps, ``objects`` in all."""
    docs: list[dict[str, Any]] = [deployment("web"), service("web")]
    for i in range(max(0, objects - 2)):
        docs.append(configmap(f"settings-{i}", revision=revision, app=f"app-{index}"))
    return docs[:objects]


@dataclass
class AppDef:
    """One app of a generated config: a source table (inline TOML) and options."""

    name: str
    source: str
    namespace: str = ""
    render: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def toml(self) -> str:
        """The ``[apps.NAME]`` table."""
        lines = [f"[apps.{self.name}]", 'cluster = "sandbox"', f'namespace = "{self.namespace or self.name}"',
                 f"source = {self.source}", "prune = true", "self_heal = true"]
        if self.render:
            lines.append(f"render = {self.render}")
        lines += [f"{k} = {v}" for k, v in self.extra.items()]
        return "\n".join(lines) + "\n"


def local_app(name: str, path: Path, **extra: str) -> AppDef:
    """An app with a ``local`` source."""
    return AppDef(name, f"{{ type = \"local\", path = {toml_str(path)}, debounce = 0.1 }}", extra=extra)


@dataclass
class Env:
    """A test environment: directory, sandbox, secrets, and the config being run."""

    root: Path
    sandbox: SandboxProc
    token: str = "rel-api-token-7f3a9c1e5b"
    hook_secret: str = "rel-github-secret-4d8e2a6b0c"
    port: int = field(default_factory=free_port)
    daemon: DaemonProc | None = None
    log_level: str = "info"

    @property
    def state_dir(self) -> Path:
        """The daemon's state directory."""
        return self.root / "state"

    @property
    def log(self) -> Path:
        """The daemon's log file (stdout and stderr)."""
        return self.root / "gitopsd.log"

    def write_config(self, apps: Iterable[AppDef], *, extra: str = "", interval: str = "30s",
                     request_timeout: str = "30s", max_requests: int = 32, daemon_extra: str = "") -> Path:
        """Write gitopsd.toml (API token, GitHub webhook secret, one cluster: the sandbox)."""
        (self.root / "api-token").write_text(self.token + "\n")
        (self.root / "github-secret").write_text(self.hook_secret + "\n")
        text = "\n".join([
            "[daemon]",
            f"state_dir = {toml_str(self.state_dir)}",
            f'listen = "127.0.0.1:{self.port}"',
            f"api_token_file = {toml_str(self.root / 'api-token')}",
            'log_format = "json"',
            f'log_level = "{self.log_level}"',
            f'default_interval = "{interval}"',
            "watch_config = false",
            'shutdown_timeout = "5s"',
            daemon_extra,
            "[daemon.tools]",
            f"helm = {toml_str(TOOLS / 'helm')}",
            f"kubectl = {toml_str(TOOLS / 'kubectl')}",
            "",
            "[daemon.webhooks]",
            f"github_secret_file = {toml_str(self.root / 'github-secret')}",
            "",
            "[clusters.sandbox]",
            f"kubeconfig = {toml_str(self.sandbox.kubeconfig)}",
            f'request_timeout = "{request_timeout}"',
            f"max_concurrent_requests = {max_requests}",
            "",
            extra,
            *(a.toml() for a in apps),
        ])
        path = self.root / "gitopsd.toml"
        path.write_text(text)
        return path

    def start(self) -> DaemonProc:
        """Start the daemon on the written config; wait for /healthz."""
        self.daemon = DaemonProc.start(self.root / "gitopsd.toml", self.port, self.token, self.log, env=tool_env())
        self.daemon.wait_ready(60)
        return self.daemon

    def stop(self) -> int | None:
        """SIGTERM the daemon; its exit code."""
        if self.daemon is None:
            return None
        code = self.daemon.stop(20)
        self.daemon = None
        return code


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the daemon may be busy: keep polling, report the last error
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


def app_states(daemon: DaemonProc) -> dict[str, dict[str, Any]]:
    """Every app's API view, by name."""
    return {a["name"]: a for a in daemon.apps()}


def converged(daemon: DaemonProc, names: Iterable[str]) -> bool:
    """True when every named app is Synced and Healthy."""
    states = app_states(daemon)
    return all(states[n]["sync"] == "Synced" and states[n]["health"] == "Healthy" for n in names)


def wait_converged(daemon: DaemonProc, names: Iterable[str], timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """Wait until every named app is Synced and Healthy; on timeout, say which ones were not."""
    names = list(names)
    deadline = time.monotonic() + timeout
    states: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        assert daemon.alive(), f"gitopsd exited with {daemon.proc.returncode}"
        try:
            states = app_states(daemon)
        except Exception:
            time.sleep(0.3)
            continue
        if all(states[n]["sync"] == "Synced" and states[n]["health"] == "Healthy" for n in names):
            return states
        time.sleep(0.3)
    pending = {n: (states.get(n, {}).get("sync"), states.get(n, {}).get("health"),
                   (states.get(n, {}).get("last_sync") or {}).get("message", "")[:300])
               for n in names if states.get(n, {}).get("sync") != "Synced" or states.get(n, {}).get("health") != "Healthy"}
    raise AssertionError(f"apps not converged after {timeout} s: {pending}")


def state_inventories(state_dir: Path) -> dict[str, set[ObjKey]]:
    """The inventory table of the daemon's SQLite state, read-only: {app: {(group, kind, ns, name)}}."""
    conn = sqlite3.connect(f"file:{state_dir / 'state.db'}?mode=ro", uri=True, timeout=10)
    try:
        out: dict[str, set[ObjKey]] = {}
        for app, grp, kind, ns, name in conn.execute("SELECT app, grp, kind, namespace, name FROM inventory"):
            out.setdefault(app, set()).add((grp, kind, ns, name))
        return out
    finally:
        conn.close()


def integrity_check(state_dir: Path) -> str:
    """``PRAGMA integrity_check`` of the state database (``ok`` when sound)."""
    conn = sqlite3.connect(f"file:{state_dir / 'state.db'}", uri=True, timeout=10)
    try:
        return ",".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def live_owned(sandbox: SandboxProc) -> dict[str, list[ObjKey]]:
    """Live objects carrying gitopsd's app label, by app (a list: duplicates would show twice)."""
    out: dict[str, list[ObjKey]] = {}
    for (group, kind), path in KIND_PATHS.items():
        r = sandbox.client.get(path, params={"labelSelector": "gitopsd.dev/app"})
        r.raise_for_status()
        for item in r.json().get("items") or []:
            meta = item["metadata"]
            app = (meta.get("labels") or {}).get("gitopsd.dev/app")
            out.setdefault(app, []).append((group, kind, meta.get("namespace", ""), meta["name"]))
    return out


OWNER = "gitopsd.dev/owner"


def live_by_owner(sandbox: SandboxProc) -> dict[str, list[ObjKey]]:
    """Live objects by their ``gitopsd.dev/owner`` annotation ("<instance>/<app>"; "" for none)."""
    out: dict[str, list[ObjKey]] = {}
    for (group, kind), path in KIND_PATHS.items():
        r = sandbox.client.get(path)
        r.raise_for_status()
        for item in r.json().get("items") or []:
            meta = item["metadata"]
            owner = (meta.get("annotations") or {}).get(OWNER, "")
            out.setdefault(owner, []).append((group, kind, meta.get("namespace", ""), meta["name"]))
    return out


def cluster_records(sandbox: SandboxProc, namespace: str = "gitopsd-system") -> dict[str, set[ObjKey]]:
    """The inventory records in the cluster: {"<instance>/<app>": {(group, kind, ns, name)}}."""
    r = sandbox.client.get(f"/api/v1/namespaces/{namespace}/configmaps", params={"labelSelector": "gitopsd.dev/inventory=true"})
    if r.status_code == 404:
        return {}
    r.raise_for_status()
    out: dict[str, set[ObjKey]] = {}
    for item in r.json().get("items") or []:
        data = item.get("data") or {}
        refs = {tuple(json.loads(line)) for line in (data.get("objects") or "").splitlines() if line.strip()}
        out[f"{data['instance']}/{data['app']}"] = {(g, k, ns, n) for g, _v, k, ns, n in refs}
    return out


def log_events(log: Path) -> list[dict[str, Any]]:
    """The events the daemon logged (JSON lines of logger gitopsd.core.events)."""
    events = []
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("logger") == "gitopsd.core.events" or "event_id" in record or record.get("kind") == "event":
            events.append(record)
    return events


def log_records(log: Path) -> list[dict[str, Any]]:
    """Every JSON log record of the daemon."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out
