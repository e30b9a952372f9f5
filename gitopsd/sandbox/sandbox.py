"""The :class:`Sandbox`: a kube-apiserver simulator run in-process or from the CLI."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from . import certs
from .api import Api, Call, now_iso
from .controllers import Controllers
from .counters import Counters
from .faults import Faults
from .kinds import Registry
from .openapi import OpenApi
from .server import SandboxServer
from .store import Store

_BOOTSTRAP_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _node() -> dict[str, Any]:
    """The sandbox's one node: where every simulated pod is scheduled."""
    from .workloads import NODE

    return {
        "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux",
                                              "kubernetes.io/arch": "amd64",
                                              "node-role.kubernetes.io/control-plane": ""}},
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status", "lastHeartbeatTime": now_iso(),
                            "lastTransitionTime": now_iso()}],
            "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}, {"type": "Hostname", "address": NODE}],
            "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110"},
            "nodeInfo": {"kubeletVersion": "v1.33.0", "containerRuntimeVersion": "containerd://2.0.0",
                         "osImage": "gitopsd sandbox", "kernelVersion": "6.0.0", "operatingSystem": "linux",
                         "architecture": "amd64", "kubeProxyVersion": "", "machineID": "", "systemUUID": "",
                         "bootID": ""},
        },
    }


class Sandbox:
    """A Kubernetes API server simulator that real kubectl and kubernetes-asyncio accept.

    Use as an async context manager (in the test's own event loop)::

        async with Sandbox() as sb:
            subprocess.run(["kubectl", "--kubeconfig", sb.kubeconfig, "get", "ns"])

    Arguments:
        tls: serve HTTPS with a generated CA (``ca_pem``); plain HTTP when false.
        port: TCP port, 0 for an ephemeral one (see ``port`` after start).
        token: the bearer token clients must send; generated when None.
        extra_sans: more DNS names / IPs for the server certificate (SSH tunnels).
        faults: a fault spec (see :mod:`gitopsd.sandbox.faults`).
        seed: seed for fault injection, uids and generated names.
        state_file: load objects from this JSON file at start, save them at stop.
        rollout_delay: seconds until simulated workloads become ready.
        host: the address to listen on (loopback by default).
        history: watch event history size; older resourceVersions are Expired (410).
        bookmark_interval: seconds between BOOKMARK events on idle watches.
        watch_timeout: seconds a watch without ``timeoutSeconds`` stays open before the
            server ends it (clients then reconnect from their last resourceVersion).
        job_duration: seconds a Job's pod runs before it succeeds (default: ``rollout_delay``).
        max_events: Events kept (the oldest are deleted beyond it; 0 records none).
        protos_dir: the Kubernetes protobuf descriptors (default: see
            :func:`gitopsd.sandbox.protobuf.default_protos_dir`); without them protobuf bodies get 415.
    """

    def __init__(
        self,
        tls: bool = True,
        port: int = 0,
        token: str | None = None,
        extra_sans: tuple[str, ...] | list[str] = (),
        faults: Any = None,
        seed: int = 0,
        state_file: str | Path | None = None,
        rollout_delay: float = 0.2,
        host: str = "127.0.0.1",
        history: int = 10_000,
        bookmark_interval: float = 5.0,
        watch_timeout: float = 1800.0,
        job_duration: float | None = None,
        max_events: int = 2000,
        protos_dir: str | Path | None = None,
    ) -> None:
        self.tls = tls
        self.host = host
        self._port = port
        self.token = token or secrets.token_urlsafe(24)
        self.extra_sans = tuple(extra_sans)
        self.seed = seed
        self.state_file = Path(state_file) if state_file else None
        self.rollout_delay = rollout_delay
        self.bookmark_interval = bookmark_interval
        self.watch_timeout = watch_timeout
        self.registry = Registry()
        self.openapi = OpenApi(self.registry)
        self.store = Store(history=history)
        self.api = Api(self.store, self.registry, seed=seed)
        self.api.schemas = self.openapi.schema_for
        self.controllers = Controllers(self.api, self.store, self.registry, rollout_delay,
                                       job_duration, max_events, seed)
        self.protos_dir = Path(protos_dir) if protos_dir else None
        self.faults = Faults(faults, seed=seed)
        self.counters_obj = Counters()
        self._certs: certs.ServerCerts | None = None
        self._runner: web.ServerRunner | None = None
        self._tmp: Path | None = None
        self.kubeconfig: Path = Path()
        self.ca_pem: bytes = b""
        self._bootstrap()

    # -- lifecycle ------------------------------------------------------------
    def _bootstrap(self) -> None:
        if self.state_file and self.state_file.exists():
            self.store.load(json.loads(self.state_file.read_text()))
            return
        ns_type = self.registry.lookup("", "v1", "namespaces")
        assert ns_type is not None
        for name in _BOOTSTRAP_NAMESPACES:
            body = json.dumps({"metadata": {"name": name}}).encode()
            self.api.create(Call(ns_type, None, None, body=body, user_agent="kube-apiserver"))
        sc_type = self.registry.lookup("storage.k8s.io", "v1", "storageclasses")
        assert sc_type is not None
        sc = {"metadata": {"name": "standard",
                           "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
              "provisioner": "sandbox.gitopsd.dev/hostpath", "reclaimPolicy": "Delete",
              "volumeBindingMode": "Immediate"}
        self.api.create(Call(sc_type, None, None, body=json.dumps(sc).encode(), user_agent="kube-apiserver"))
        node_type = self.registry.lookup("", "v1", "nodes")
        assert node_type is not None
        node = _node()
        _, made = self.api.create(Call(node_type, None, None, body=json.dumps(node).encode(), user_agent="kubelet"))
        self.store.put("nodes", dict(made, status=node["status"]), "MODIFIED")  # the kubelet's status update

    async def start(self) -> Sandbox:
        """Listen, then write the kubeconfig (only once requests are accepted)."""
        loop = asyncio.get_running_loop()
        self.controllers.start(loop)
        ssl_ctx = None
        if self.tls:
            self._certs = await loop.run_in_executor(None, certs.generate, self.extra_sans)
            self.ca_pem = self._certs.ca_pem
            ssl_ctx = self._certs.ssl_context()
        server = SandboxServer(self)
        self._runner = web.ServerRunner(server.server(), handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        sock.listen(512)
        sock.setblocking(False)
        site = web.SockSite(self._runner, sock, ssl_context=ssl_ctx)
        await site.start()
        self._port = sock.getsockname()[1]
        self._tmp = Path(tempfile.mkdtemp(prefix="gitopsd-sandbox-"))
        self.kubeconfig = self.write_kubeconfig(self._tmp / "kubeconfig")
        return self

    async def stop(self) -> None:
        """Stop serving; save state if a state file was given."""
        self.controllers.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.state_file:
            self.save_state()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    async def __aenter__(self) -> Sandbox:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def save_state(self) -> None:
        """Write every object to the state file (atomically)."""
        if not self.state_file:
            return
        tmp = self.state_file.with_suffix(self.state_file.suffix + ".tmp")
        tmp.write_text(json.dumps(self.store.dump()))
        tmp.replace(self.state_file)

    # -- facts -----------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The TCP port (after start)."""
        return self._port

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT`` (or http with ``tls=False``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self._port}"

    def write_kubeconfig(self, path: str | Path, server: str | None = None,
                         tls_server_name: str | None = None) -> Path:
        """Write a kubeconfig (CA data, bearer token, current-context ``sandbox``) to ``path``."""
        cluster: dict[str, Any] = {"server": server or self.url}
        if self.tls:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_pem).decode()
        if tls_server_name:
            cluster["tls-server-name"] = tls_server_name
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": cluster}],
            "users": [{"name": "sandbox", "user": {"token": self.token}}],
            "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox",
                                                         "namespace": "default"}}],
            "current-context": "sandbox",
            "preferences": {},
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    # -- measurement and faults ------------------------------------------------------------
    def counters(self) -> dict[str, Any]:
        """Request counters (see :class:`~gitopsd.sandbox.counters.Counters`); also GET /sandbox/counters."""
        return self.counters_obj.snapshot()

    def reset_counters(self) -> None:
        """Zero the counters; also DELETE /sandbox/counters."""
        self.counters_obj.reset()

    def set_faults(self, spec: Any) -> None:
        """Replace the fault rules; also POST /sandbox/faults. ``None`` clears them."""
        self.faults.set(spec)

    def stats(self) -> dict[str, Any]:
        """Objects, resourceVersion, open watches, pending controller work."""
        return {
            "objects": self.store.count(),
            "resourceVersion": self.store.rv,
            "watches": self.store.watcher_count(),
            "pending_controller_actions": self.controllers.pending(),
        }
