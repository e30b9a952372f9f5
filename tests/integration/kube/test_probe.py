"""The cluster probe behind `gitopsd doctor`: through a real sshd to the sandbox, with the
host key checked, the key used, and TLS verified against the API server's real name."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitopsd.kube.probe import probe_cluster
from gitopsd.plugin.config import ClusterConfig, SSHConfig
from gitopsd.sandbox import Sandbox

from . import test_tunnel
from .conftest import configmap
from .test_tunnel import SSHD, _keygen

pytestmark = pytest.mark.anyio
sshd = test_tunnel.sshd  # the real sshd fixture of the tunnel tests


def far(kubeconfig: Path, sshd: SSHD, **hop: object) -> ClusterConfig:
    return ClusterConfig(kubeconfig=kubeconfig, ssh=SSHConfig(**sshd.hop(**hop)), request_timeout=5)


async def test_through_ssh_with_version_and_access(sshd: SSHD, tmp_path: Path) -> None:
    async with Sandbox(tls=True, extra_sans=("api.cluster.internal",)) as sb:
        kubeconfig = sb.write_kubeconfig(
            tmp_path / "kubeconfig", server=f"https://127.0.0.1:{sb.port}", tls_server_name="api.cluster.internal"
        )
        probe = await probe_cluster("far", far(kubeconfig, sshd), [configmap("c", namespace="web")])
    assert probe.error == ""
    assert probe.via == f"ssh {sshd.user}@127.0.0.1:{sshd.port}"
    assert probe.version == "v1.33.0-gitopsd-sandbox"
    assert [(a.verb, a.resource, a.namespace, a.allowed) for a in probe.access] == [
        ("create", "configmaps", "web", True), ("patch", "configmaps", "web", True), ("delete", "configmaps", "web", True),
    ]


async def test_an_unknown_host_key_is_named(sshd: SSHD, tmp_path: Path) -> None:
    stranger = _keygen(tmp_path / "other_host_key")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {stranger}\n")
    async with Sandbox(tls=True) as sb:
        probe = await probe_cluster("far", far(sb.kubeconfig, sshd, known_hosts=known_hosts), timeout=10)
    assert probe.version == ""
    assert probe.error.startswith("ssh: ") and "host key" in probe.error.lower(), probe.error


async def test_a_wrong_server_name_fails_tls(sshd: SSHD, tmp_path: Path) -> None:
    async with Sandbox(tls=True) as sb:
        kubeconfig = sb.write_kubeconfig(
            tmp_path / "kubeconfig", server=f"https://127.0.0.1:{sb.port}", tls_server_name="not-in-the-cert.example"
        )
        probe = await probe_cluster("far", far(kubeconfig, sshd), timeout=5)
    assert "TLS verification failed" in probe.error, probe.error
