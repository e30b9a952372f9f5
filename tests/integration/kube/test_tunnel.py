"""SSH tunnels through a real sshd (loopback port, keys and known_hosts made here)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gitopsd.core.errors import ApplyError
from gitopsd.core.state import StateStore
from gitopsd.kube import KubeClusterPool
from gitopsd.plugin.config import ClusterConfig, Config, SSHConfig, SSHHop
from gitopsd.sandbox import Sandbox
from tests.conftest import sshd_privilege_separation_dir

from .conftest import StoreInventory, app_config, configmap, deployment, eventually, make_kubectl

pytestmark = pytest.mark.anyio


def _sshd_binary() -> str:
    found = shutil.which("sshd", path="/usr/sbin:/usr/local/sbin:" + os.environ.get("PATH", ""))
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("sshd is not installed (apt-get install openssh-server)")
        pytest.skip("sshd is not installed")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class SSHD:
    """A real sshd on a loopback port, and the client side files it trusts."""

    binary: str
    config: Path
    port: int
    identity: Path
    known_hosts: Path
    user: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        sshd_privilege_separation_dir()
        self.proc = subprocess.Popen(
            [self.binary, "-D", "-e", "-f", str(self.config)], stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    pytest.fail(f"sshd did not start: {err}")
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the listener and every connection it serves."""
        if self.proc is None:
            return
        children = _descendants(self.proc.pid)
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc = None

    def hop(self, **overrides: Any) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": self.user,
            "identity_file": self.identity,
            "known_hosts": self.known_hosts,
            **overrides,
        }

    def kill_connections(self) -> int:
        """SIGKILL every process sshd forked for a connection: the TCP connections die."""
        assert self.proc is not None
        victims = _descendants(self.proc.pid)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(victims)


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SSHD]:
    binary = _sshd_binary()
    d = tmp_path / "ssh"
    d.mkdir()
    host_pub = _keygen(d / "host_key")
    client_pub = _keygen(d / "id_client")
    (d / "authorized_keys").write_text(client_pub + "\n")
    port = _free_port()
    known_hosts = d / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    config = d / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {d / 'host_key'}",
                f"AuthorizedKeysFile {d / 'authorized_keys'}",
                f"PidFile {d / 'sshd.pid'}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                "StrictModes no",
                "AllowTcpForwarding yes",
                "PermitTunnel no",
                "X11Forwarding no",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    user = (
        os.environ.get("USER")
        or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    )
    server = SSHD(binary, config, port, d / "id_client", known_hosts, user)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def our_tcp_listeners() -> set[str]:
    """Socket inodes of this process that listen on TCP (IPv4 or IPv6)."""
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            ours.add(target[len("socket:["):-1])
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    listening.add(fields[9])
    return ours & listening


def tunnel_config(
    kubeconfig: Path, ssh: dict[str, Any], jump: list[dict[str, Any]] | None = None
) -> Config:
    ssh_config = SSHConfig(**ssh, jump=[SSHHop(**j) for j in jump or []])
    return Config(
        clusters={"far": ClusterConfig(kubeconfig=kubeconfig, ssh=ssh_config, request_timeout=5)}
    )


async def test_sync_through_tunnel_verifies_the_real_server_name(
    sshd: SSHD, tmp_path: Path
) -> None:
    async with Sandbox(tls=True, rollout_delay=0.1, extra_sans=("api.cluster.internal",)) as sb:
        # The API server as the bastion knows it: an address only the SSH side reaches, and
        # the name in its certificate.
        kubeconfig = sb.write_kubeconfig(
            tmp_path / "kubeconfig",
            server=f"https://127.0.0.1:{sb.port}",
            tls_server_name="api.cluster.internal",
        )
        store = await StateStore.open(tmp_path / "state")
        listening_before = our_tcp_listeners()
        try:
            async with KubeClusterPool(tunnel_config(kubeconfig, sshd.hop())) as pool:
                cluster = pool.get("far")
                assert cluster.tunnel is not None
                assert cluster.client.server == f"https://127.0.0.1:{sb.port}"
                result = await cluster.sync(
                    app_config(cluster="far"), [configmap("via-ssh")], StoreInventory(store, "web")
                )
                assert result.ok, result.message
                assert cluster.tunnel.connects == 1
                # The local end is a unix socket in a private directory; nothing listens on TCP.
                assert our_tcp_listeners() == listening_before, "the tunnel listens on TCP"
                sock_dir = Path(cluster.tunnel.socket_path).parent
                assert stat.S_ISSOCK(os.stat(cluster.tunnel.socket_path).st_mode)
                assert stat.S_IMODE(os.stat(sock_dir).st_mode) == 0o700
                assert os.stat(sock_dir).st_uid == os.geteuid()
        finally:
            await store.close()
        kubectl = make_kubectl(sb.kubeconfig, tmp_path / "kubectl")
        assert "via-ssh" in await kubectl("get", "configmap", "via-ssh")


async def test_wrong_server_name_is_refused(sshd: SSHD, tmp_path: Path) -> None:
    async with Sandbox(tls=True) as sb:
        kubeconfig = sb.write_kubeconfig(
            tmp_path / "kubeconfig",
            server=f"https://127.0.0.1:{sb.port}",
            tls_server_name="not-in-the-cert.example",
        )
        store = await StateStore.open(tmp_path / "state")
        try:
            async with KubeClusterPool(tunnel_config(kubeconfig, sshd.hop())) as pool:
                with pytest.raises(ApplyError) as caught:
                    await pool.get("far").sync(
                        app_config(cluster="far"), [configmap("x")], StoreInventory(store, "web")
                    )
        finally:
            await store.close()
        assert caught.value.reason == "ClusterUnreachable"
        assert "TLS" in str(caught.value)
        assert sb.token not in str(caught.value)
        assert sb.counters()["writes"] == 0


async def test_unknown_host_key_is_refused(sshd: SSHD, tmp_path: Path) -> None:
    other = tmp_path / "other_host_key"
    other_pub = _keygen(other)
    known_hosts = tmp_path / "known_hosts_other"
    known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {other_pub}\n")
    async with Sandbox(tls=True) as sb:
        store = await StateStore.open(tmp_path / "state")
        try:
            async with KubeClusterPool(
                tunnel_config(sb.kubeconfig, sshd.hop(known_hosts=known_hosts))
            ) as pool:
                cluster = pool.get("far")
                await asyncio.sleep(0.5)
                assert cluster.tunnel is not None and cluster.tunnel.connects == 0
                assert not cluster.tunnel.up
        finally:
            await store.close()
        # No trust on first use: the file was not touched, and nothing reached the server.
        assert known_hosts.read_text() == f"[127.0.0.1]:{sshd.port} {other_pub}\n"
        assert sb.counters()["by_verb"] == {}


async def test_jump_host_chain(sshd: SSHD, tmp_path: Path) -> None:
    async with Sandbox(tls=True) as sb:
        store = await StateStore.open(tmp_path / "state")
        try:
            # bastion -> jump (sshd) -> target (the same sshd, reached through the jump's forward)
            config = tunnel_config(sb.kubeconfig, sshd.hop(), jump=[sshd.hop(), sshd.hop()])
            async with KubeClusterPool(config) as pool:
                result = await pool.get("far").sync(
                    app_config(cluster="far"), [configmap("jumped")], StoreInventory(store, "web")
                )
                assert result.ok, result.message
        finally:
            await store.close()


async def test_killing_the_ssh_connection_mid_sync(sshd: SSHD, tmp_path: Path) -> None:
    async with Sandbox(tls=True, rollout_delay=0.1) as sb:
        store = await StateStore.open(tmp_path / "state")
        inventory = StoreInventory(store, "web")
        manifests = [configmap(f"cm-{i}") for i in range(40)] + [deployment("api")]
        try:
            async with KubeClusterPool(tunnel_config(sb.kubeconfig, sshd.hop())) as pool:
                cluster = pool.get("far")
                assert cluster.tunnel is not None
                # Slow writes so that the kill lands in the middle of the applies.
                sb.set_faults({"rules": [{"verb": "apply", "resource": "*", "latency_ms": 150}]})
                sync = asyncio.create_task(
                    cluster.sync(app_config(cluster="far"), manifests, inventory)
                )
                await eventually(lambda: sb.counters()["writes"] >= 5, within=20, interval=0.01)
                killed = sshd.kill_connections()
                result = await sync
                assert killed >= 1
                assert result.ok, result.message
                assert result.counts["created"] == 41
                assert cluster.tunnel.connects >= 2
                sb.set_faults(None)
                # The watches came back through the new connection: a no-op costs nothing.
                sb.reset_counters()
                again = await cluster.sync(app_config(cluster="far"), manifests, inventory)
                assert again.ok and again.counts["unchanged"] == 41
                assert {v: n for v, n in sb.counters()["by_verb"].items() if v != "watch"} == {}
        finally:
            await store.close()
        kubectl = make_kubectl(sb.kubeconfig, tmp_path / "kubectl")
        names = (
            await kubectl("get", "configmaps", "-l", "gitopsd.dev/app=web", "-o", "name")
        ).split()
        assert len(names) == 40 == len(set(names))


async def test_watch_resumes_after_an_outage_and_relists_on_410(sshd: SSHD, tmp_path: Path) -> None:
    """The tunnel is down while more changes happen than the server keeps: 410, re-list, drift seen."""
    async with Sandbox(tls=True, rollout_delay=0.05, history=5) as sb:
        store = await StateStore.open(tmp_path / "state")
        inventory = StoreInventory(store, "web")
        app = app_config(cluster="far")
        manifests = [configmap("watched", k="v"), configmap("deleted-meanwhile")]
        drifted: list[str] = []
        kubectl = make_kubectl(sb.kubeconfig, tmp_path / "kubectl")
        try:
            async with KubeClusterPool(tunnel_config(sb.kubeconfig, sshd.hop())) as pool:
                cluster = pool.get("far")
                assert (await cluster.sync(app, manifests, inventory)).ok
                cluster.track(app, manifests, lambda refs: drifted.extend(str(r) for r in refs))

                sshd.stop()
                # Meanwhile, directly: one drift, one deletion, and enough other writes to
                # push the cache's resourceVersion out of the server's history.
                await kubectl(
                    "patch", "configmap", "watched", "--type=merge", "-p", '{"data":{"k":"edited"}}'
                )
                await kubectl("delete", "configmap", "deleted-meanwhile")
                for i in range(6):
                    # (server-side apply: the sandbox does not read kubectl create's protobuf bodies)
                    noise = {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": "noise"},
                        "data": {"n": str(i)},
                    }
                    await kubectl(
                        "apply",
                        "--server-side",
                        "--validate=false",
                        "-f",
                        "-",
                        stdin=json.dumps(noise),
                    )
                assert drifted == []

                sb.reset_counters()
                sshd.start()
                await eventually(lambda: len(set(drifted)) == 2, within=30)
                # Resuming from the old resourceVersion got 410 Expired: the informer re-listed.
                assert sb.counters()["by_verb"].get("list", 0) >= 1
                assert set(drifted) == {
                    "ConfigMap default/watched",
                    "ConfigMap default/deleted-meanwhile",
                }
                assert cluster.in_sync(app, manifests) is False
                healed = await cluster.sync(app, manifests, inventory)
                assert healed.ok and healed.counts["changed"] + healed.counts["created"] == 2, (
                    healed
                )
        finally:
            await store.close()


async def test_bad_key_reports_the_cluster_unreachable_and_retries(sshd: SSHD, tmp_path: Path) -> None:
    """A key that cannot be imported (corrupt, half rotated) must not kill the tunnel for good."""
    from gitopsd.core.events import Event

    key = tmp_path / "rotating_key"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nhalf written\n")
    key.chmod(0o600)
    events: list[Event] = []
    async with Sandbox(tls=True) as sb:
        async with KubeClusterPool(tunnel_config(sb.kubeconfig, sshd.hop(identity_file=key)), None,
                                   events.append) as pool:
            cluster = pool.get("far")
            assert cluster.tunnel is not None

            def unreachable() -> list[Event]:
                return [e for e in events if e.name == "cluster-unreachable"]

            await eventually(lambda: bool(unreachable()), within=20)
            assert "KeyImportError" in unreachable()[0].message, unreachable()[0].message
            assert len(unreachable()) == 1  # reported once, not on every retry
            assert cluster.tunnel.connects == 0
            shutil.copy(sshd.identity, key)  # the rotation completes
            await eventually(lambda: cluster.tunnel is not None and cluster.tunnel.connects == 1, within=30)
