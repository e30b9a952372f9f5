"""Which way a cluster's requests go: gitopsd's own transport, or the library's aiohttp session
behind a proxy (the kubeconfig's ``proxy-url``, or the environment's, read once at open)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitopsd.kube.client import KubeClient
from gitopsd.plugin.config import ClusterConfig

pytestmark = pytest.mark.anyio

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")


def kubeconfig(tmp_path: Path, proxy_url: str | None = None) -> Path:
    path = tmp_path / "kubeconfig"
    proxy = f"\n    proxy-url: {proxy_url}" if proxy_url else ""
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters:\n- name: c\n  cluster:\n    server: https://api.example:6443\n    insecure-skip-tls-verify: true{proxy}\n"
        "users:\n- name: u\n  user:\n    token: abc\n"
        "contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n"
    )
    return path


async def opened(path: Path) -> KubeClient:
    client = KubeClient("c", ClusterConfig(kubeconfig=path), lambda *a: None)
    await client.open()  # no request is sent: nothing listens at api.example
    return client


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


async def test_without_a_proxy_requests_go_on_the_transport(tmp_path: Path) -> None:
    client = await opened(kubeconfig(tmp_path))
    try:
        assert client._direct is not None and client._api is None
    finally:
        await client.close()
    assert not client.is_open


async def test_the_environment_proxy_is_read_once_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    client = await opened(kubeconfig(tmp_path))
    try:
        assert client._direct is None
        assert client._api.rest_client.proxy == "http://proxy.example:3128"
        assert client._api.rest_client.pool_manager._trust_env is False  # no lookup per request
    finally:
        await client.close()


async def test_no_proxy_naming_the_server_keeps_the_transport(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "api.example")
    client = await opened(kubeconfig(tmp_path))
    try:
        assert client._direct is not None and client._api is None
    finally:
        await client.close()


async def test_the_kubeconfig_proxy_url_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    client = await opened(kubeconfig(tmp_path, proxy_url="http://kubeconfig-proxy:8080"))
    try:
        assert client._direct is None
        assert client._api.rest_client.proxy == "http://kubeconfig-proxy:8080"
    finally:
        await client.close()


async def test_a_proxy_with_credentials_keeps_aiohttp_handling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://user:secret@proxy.example:3128")
    client = await opened(kubeconfig(tmp_path))
    try:
        assert client._direct is None
        assert client._api.rest_client.proxy is None
        assert client._api.rest_client.pool_manager._trust_env is True
    finally:
        await client.close()


OPEN_AND_LIST = """
import sys, anyio
import gitopsd.server  # aiohttp as a lazy package, as in the daemon
from gitopsd.daemon.wiring import import_kube
import_kube()
from gitopsd.kube.client import KubeClient
from gitopsd.plugin.config import ClusterConfig

async def main():
    client = KubeClient("c", ClusterConfig(kubeconfig=sys.argv[1]), lambda *a: None)
    await client.open()
    await client.close()

anyio.run(main)
LIBRARY = ("aiohttp.client", "aiohttp.connector", "kubernetes_asyncio.client.api_client", "dateutil.parser",
           "multiprocessing", "urllib3.connectionpool")
print(" ".join(sorted(name for name in LIBRARY if name in sys.modules)))
"""


@pytest.mark.parametrize("proxied", [False, True])
def test_aiohttp_client_is_imported_only_behind_a_proxy(tmp_path: Path, proxied: bool) -> None:
    """Its import builds two TLS contexts from the system's CA bundle (~85 ms of CPU per start).

    So is kubernetes-asyncio's ApiClient (its module imports dateutil's parser and
    multiprocessing), and urllib3 stays a lazy package (the library's Configuration imports
    it and never uses it): ~50 ms of CPU after ready at every start.
    """
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    if proxied:
        env["HTTPS_PROXY"] = "http://proxy.example:3128"
    out = subprocess.run([sys.executable, "-c", OPEN_AND_LIST, str(kubeconfig(tmp_path))],
                         capture_output=True, text=True, env=env, check=True, timeout=60).stdout.split()
    if proxied:
        assert {"aiohttp.client", "aiohttp.connector", "kubernetes_asyncio.client.api_client"} <= set(out)
    else:
        assert out == []
