"""Real components for the coordination tests: a 3-node etcd cluster, a TCP proxy that can
cut a member off, and gitopsd members as real ``python -m gitopsd run`` subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def etcd_binary() -> str:
    """Debian's etcd-server; missing: skipped locally, a failure with CI=true."""
    found = shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)
    if found:
        return found
    message = "etcd is not installed (apt-get install etcd-server)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


class EtcdCluster:
    """Three etcd members on loopback ports, each a subprocess that tests can kill and restart."""

    def __init__(self, base: Path, size: int = 3):
        self.binary = etcd_binary()
        self.base = base
        self.names = [f"n{i}" for i in range(size)]
        self.client_ports = {n: free_port() for n in self.names}
        self.peer_ports = {n: free_port() for n in self.names}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def endpoints(self) -> list[str]:
        return [self.url(n) for n in self.names]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.client_ports[name]}"

    def start(self, name: str) -> None:
        cluster = ",".join(f"{n}=http://127.0.0.1:{self.peer_ports[n]}" for n in self.names)
        data = self.base / name
        args = [
            self.binary, "--name", name, "--data-dir", str(data),
            "--listen-client-urls", self.url(name), "--advertise-client-urls", self.url(name),
            "--listen-peer-urls", f"http://127.0.0.1:{self.peer_ports[name]}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_ports[name]}",
            "--initial-cluster", cluster, "--initial-cluster-token", "gitopsd-test",
            "--initial-cluster-state", "new",
            # Loaded CI machine: slower heartbeats than the default so a busy CPU is no leader loss.
            "--heartbeat-interval", "200", "--election-timeout", "2000",
            "--logger", "zap", "--log-level", "error",
        ]
        log = open(self.base / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(args, stdout=log, stderr=log)

    def start_all(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        for n in self.names:
            self.start(n)
        self.wait_healthy()

    def wait_healthy(self, names: list[str] | None = None, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for n in names or [n for n in self.names if n in self.procs]:
            while True:
                try:
                    r = httpx.get(f"{self.url(n)}/health", timeout=2)
                    if r.status_code == 200 and r.json().get("health") == "true":
                        break
                except (httpx.HTTPError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd {n} not healthy within {timeout}s (see {self.base / n}.log)")
                time.sleep(0.2)

    def leader(self) -> str:
        for n in self.procs:
            try:
                status = httpx.post(f"{self.url(n)}/v3/maintenance/status", json={}, timeout=2).json()
            except (httpx.HTTPError, ValueError):
                continue
            if status.get("leader") and status["leader"] == status["header"]["member_id"]:
                return n
        raise RuntimeError("no etcd leader")

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for n in list(self.procs):
            self.kill(n)


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; ``cut()`` drops every connection and refuses new
    ones (a network partition), ``mend()`` forwards again."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.cut_off = False
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        self._running = True
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while self._running:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.cut_off:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            a.settimeout(None)
            while data := a.recv(65536):
                if self.cut_off:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    def cut(self) -> None:
        self.cut_off = True
        with self._lock:
            for s in self._conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self._conns.clear()

    def mend(self) -> None:
        self.cut_off = False

    def close(self) -> None:
        self._running = False
        self.cut()
        self._listener.close()


READ_TOKEN = "coordination-test-read-token"
AUTH = {"Authorization": f"Bearer {READ_TOKEN}"}

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data: {{app: "{app}", greeting: hello}}
"""


def write_apps(base: Path, count: int) -> dict[str, Path]:
    """``count`` apps ``a00``.., each one ConfigMap in its own namespace."""
    apps = {}
    for i in range(count):
        name = f"a{i:02d}"
        d = base / "apps" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "cm.yaml").write_text(CONFIGMAP.format(app=name))
        apps[name] = d
    return apps


class Member:
    """One ``python -m gitopsd run`` subprocess with its own state, port and config."""

    def __init__(self, base: Path, name: str, kubeconfig: Path, apps: dict[str, Path], coordination: str):
        self.name = name
        self.dir = base / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = self.dir / "gitopsd.log"
        self.config = self.dir / "config.toml"
        token_file = base / "read-token"  # shared by the members: fan-out reads the others with it
        if not token_file.exists():
            token_file.write_text(READ_TOKEN)
            token_file.chmod(0o600)
        text = textwrap.dedent(f"""
            [daemon]
            state_dir = "{self.dir / 'state'}"
            read_token_file = "{token_file}"
            listen = "127.0.0.1:{self.port}"
            default_interval = "1h"
            shutdown_timeout = "10s"
            watch_config = false
            log_format = "json"

            [daemon.coordination]
            member = "{name}"
            advertise_url = "{self.url}"
            {coordination}

            [clusters.sandbox]
            kubeconfig = "{kubeconfig}"
            """)
        for app, directory in apps.items():
            text += textwrap.dedent(f"""
                [apps.{app}]
                cluster = "sandbox"
                namespace = "{app}"
                create_namespace = true
                prune = true
                source = {{ type = "local", path = "{directory}" }}
                """)
        self.config.write_text(text)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def user_agent_tag(self) -> str:
        return f"(member {self.name})"

    def start(self) -> None:
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gitopsd", "--config", str(self.config), "run"], stdout=out, stderr=out
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def get(self, path: str) -> Any:
        r = httpx.get(self.url + path, timeout=10, headers=AUTH)
        r.raise_for_status()
        return r.json()

    def try_get(self, path: str) -> Any:
        try:
            return self.get(path)
        except (httpx.HTTPError, ValueError):
            return None

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if f'"{name}"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == name:
                out.append(entry)
        return out


def app_of(entry: dict[str, Any]) -> str | None:
    """The app a sandbox write belongs to: its namespace (apps ``aNN``), or the namespace object itself."""
    if entry["resource"].endswith("namespaces"):
        name = entry["name"]
    else:
        name = entry["namespace"]
    return name if name.startswith("a") and name[1:].isdigit() else None


def member_of(client: str) -> str:
    """``gitopsd/0.1.0 (member m1)`` -> ``m1``."""
    return client.rsplit("(member ", 1)[-1].rstrip(")") if "(member " in client else client
