"""gitopsd's TLS context for a cluster is the one kubernetes-asyncio's REST client would build.

Requests go on gitopsd's own transport with :func:`gitopsd.kube.k8s.tls_context`; the
library's ``RESTClientObject`` (and the aiohttp client it imports) is built here only to
compare: the CA, verification mode and flags, the server name, and the client certificate.
"""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from typing import Any

import pytest

from gitopsd.kube import k8s
from gitopsd.sandbox.certs import generate

pytestmark = pytest.mark.anyio


def kubeconfig(tmp_path: Path, cluster: dict[str, str], user: dict[str, str] | None = None) -> Path:
    lines = ["apiVersion: v1", "kind: Config", "current-context: c", "clusters:", "- name: c", "  cluster:",
             "    server: https://127.0.0.1:6443"]
    lines += [f"    {k}: {v}" for k, v in cluster.items()]
    lines += ["users:", "- name: u", "  user:", "    token: abc"]
    lines += [f"    {k}: {v}" for k, v in (user or {}).items()]
    lines += ["contexts:", "- name: c", "  context:", "    cluster: c", "    user: u"]
    path = tmp_path / "kubeconfig"
    path.write_text("\n".join(lines) + "\n")
    return path


async def configuration(path: Path) -> Any:
    configuration_type, _, load_kube_config = k8s.load()
    config = type.__call__(configuration_type)
    await load_kube_config(config_file=str(path), client_configuration=config, persist_config=False)
    return config


def library_context(config: Any) -> tuple[ssl.SSLContext, str | None]:
    from kubernetes_asyncio.client.rest import RESTClientObject

    rest = RESTClientObject(config)
    context = rest.pool_manager.connector._ssl
    assert isinstance(context, ssl.SSLContext)
    return context, rest.server_hostname


def settings(context: ssl.SSLContext) -> dict[str, Any]:
    return {
        "verify_mode": context.verify_mode,
        "check_hostname": context.check_hostname,
        "verify_flags": context.verify_flags,
        "options": context.options,
        "minimum_version": context.minimum_version,
        "maximum_version": context.maximum_version,
        "ca_certs": context.get_ca_certs(),
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


CERTS = generate()
CLIENT = generate()  # another CA's certificate and key, sent as the client certificate

KUBECONFIGS = {
    "CA data": ({"certificate-authority-data": b64(CERTS.ca_pem)}, None),
    "system CAs": ({}, None),
    "insecure-skip-tls-verify": ({"insecure-skip-tls-verify": "true"}, None),
    "tls-server-name": ({"certificate-authority-data": b64(CERTS.ca_pem), "tls-server-name": "kubernetes"}, None),
    "client certificate": (
        {"certificate-authority-data": b64(CERTS.ca_pem)},
        {"client-certificate-data": b64(CLIENT.cert_pem), "client-key-data": b64(CLIENT.key_pem)},
    ),
}


@pytest.mark.parametrize("kind", [*KUBECONFIGS, "strict verification off"])
async def test_the_same_context_as_the_library(tmp_path: Path, kind: str) -> None:
    cluster, user = KUBECONFIGS.get(kind, KUBECONFIGS["CA data"])
    config = await configuration(kubeconfig(tmp_path, cluster, user))
    if kind == "strict verification off":  # a Configuration setting, not a kubeconfig one
        config.disable_strict_ssl_verification = True
    theirs, server_name = library_context(config)
    ours = k8s.tls_context(config)
    assert settings(ours) == settings(theirs)
    assert (config.tls_server_name or None) == (server_name or None)
    if kind == "system CAs":
        assert ours.get_ca_certs(), "the system's CAs are loaded when the kubeconfig names none"
    if kind == "insecure-skip-tls-verify":
        assert ours.verify_mode == ssl.CERT_NONE and not ours.check_hostname


async def test_the_client_certificate_is_loaded(tmp_path: Path) -> None:
    """A client certificate whose key does not match fails in both: the chain is loaded, not ignored."""
    cluster = {"certificate-authority-data": b64(CERTS.ca_pem)}
    user = {"client-certificate-data": b64(CLIENT.cert_pem), "client-key-data": b64(CERTS.key_pem)}
    config = await configuration(kubeconfig(tmp_path, cluster, user))
    with pytest.raises(ssl.SSLError):
        library_context(config)
    with pytest.raises(ssl.SSLError):
        k8s.tls_context(config)
