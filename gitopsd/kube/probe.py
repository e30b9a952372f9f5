"""Probe one cluster for ``gitopsd doctor``: reach it (through its SSH hops), read its version,
and ask it whether our credentials may write what the apps render.

Uses the same kubeconfig loading, TLS settings and tunnel as the daemon
(:class:`~gitopsd.kube.client.KubeClient`, :class:`~gitopsd.kube.tunnel.Tunnel`), so a probe
that passes means the daemon will get through too. Never sends a write: permissions are asked
with SelfSubjectAccessReview (``POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews``,
which only answers a question). Messages name no credential.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio

from gitopsd.core.models import Manifest
from gitopsd.kube.client import ApiError, KubeClient, Unreachable
from gitopsd.kube.discovery import Discovery, UnknownKind, is_crd, resources_from_crd
from gitopsd.plugin.config import ClusterConfig

if TYPE_CHECKING:
    from gitopsd.kube.tunnel import Tunnel

WRITE_VERBS = ("create", "patch", "delete")
"""What a sync needs on every kind it applies (server-side apply is a patch; prune deletes)."""


@dataclass
class Access:
    """Whether the credentials may ``verb`` the ``resource`` (plural.group) in ``namespace``."""

    verb: str
    resource: str
    namespace: str
    allowed: bool
    reason: str = ""

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {self.resource}{where}"


@dataclass
class ClusterProbe:
    """What :func:`probe_cluster` found. ``error`` is empty when the API server answered."""

    name: str
    server: str = ""
    via: str = ""
    """``ssh user@host:port`` (and the jump hosts) when the cluster is reached through SSH."""
    version: str = ""
    error: str = ""
    access: list[Access] = field(default_factory=list)
    unknown_kinds: list[str] = field(default_factory=list)

    @property
    def denied(self) -> list[Access]:
        return [a for a in self.access if not a.allowed]


async def probe_cluster(
    name: str,
    config: ClusterConfig,
    manifests: list[Manifest] | None = None,
    *,
    default_namespace: str = "default",
    timeout: float = 15.0,
) -> ClusterProbe:
    """Reach cluster ``name``, read ``/version``, review access to what ``manifests`` contain.

    ``manifests`` (rendered, any app's; namespaced objects without a namespace count as
    ``default_namespace``) decide which (verb, resource, namespace) triples are reviewed.
    Never raises for an unreachable or refusing cluster: the answer says what failed.
    """
    probe = ClusterProbe(name)
    client = KubeClient(name, config, on_reachable=lambda reachable, why: None)
    tunnel: Tunnel | None = None
    try:
        try:
            await client.open()
        except Exception as exc:
            probe.error = f"kubeconfig {config.kubeconfig}: {_short(exc)}"
            return probe
        probe.server = client.server
        if config.ssh is not None:
            tunnel, failure = await _open_tunnel(name, config, client, probe, timeout)
            if failure:
                probe.error = failure
                return probe
        try:
            answer = await client.request("GET", "/version", budget=timeout)
        except (Unreachable, ApiError) as exc:
            probe.error = str(exc).removeprefix(f"cluster {name}: ")
            return probe
        probe.version = str(answer.get("gitVersion") or f"{answer.get('major')}.{answer.get('minor')}")
        if manifests:
            await _review(client, probe, manifests, default_namespace)
        return probe
    finally:
        await client.close()
        if tunnel is not None:
            await tunnel.close()


async def _open_tunnel(
    name: str, config: ClusterConfig, client: KubeClient, probe: ClusterProbe, timeout: float
) -> tuple[Tunnel | None, str]:
    """Start the SSH tunnel, wait for its first outcome; (tunnel, failure or "")."""
    from gitopsd.kube.tunnel import Tunnel  # asyncssh only for clusters behind SSH

    assert config.ssh is not None
    ssh = config.ssh
    hops = [*ssh.jump, ssh]
    probe.via = "ssh " + " -> ".join(f"{h.user}@{h.host}:{h.port}" for h in hops)
    await client.close()
    parts = urlsplit(client.server)
    if not parts.hostname:
        return None, f"kubeconfig server {client.server!r} has no host"
    outcome: asyncio.Queue[tuple[bool, str]] = asyncio.Queue()
    tunnel = Tunnel(
        name, ssh, parts.hostname, parts.port or 443, on_state=lambda up, why: outcome.put_nowait((up, why))
    )
    socket_path = await tunnel.start()
    up, why = False, f"ssh: no answer within {timeout:g}s"
    with anyio.move_on_after(timeout):
        up, why = await outcome.get()
    if not up:
        return tunnel, why
    # TLS is still verified against the API server's real name (tls_server_name).
    await client.open(host_override=f"https://127.0.0.1:{parts.port or 443}", unix_socket=socket_path)
    return tunnel, ""


async def _review(
    client: KubeClient, probe: ClusterProbe, manifests: list[Manifest], default_namespace: str
) -> None:
    discovery = Discovery(client)
    hints = {(r.api_version, r.kind): r for m in manifests if is_crd(m) for r in resources_from_crd(m)}
    wanted: dict[tuple[str, str, str], None] = {}
    for manifest in manifests:
        api_version, kind = str(manifest.get("apiVersion", "")), str(manifest.get("kind", ""))
        if not api_version or not kind:
            continue
        try:
            resource = await discovery.resolve(api_version, kind, hints=hints)
        except UnknownKind:
            probe.unknown_kinds.append(f"{kind} ({api_version})")
            continue
        except (Unreachable, ApiError) as exc:
            probe.error = f"discovery of {api_version}: {exc}"
            return
        namespace = ""
        if resource.namespaced:
            namespace = str((manifest.get("metadata") or {}).get("namespace") or default_namespace)
        wanted[(resource.group, resource.plural, namespace)] = None
    for (group, plural, namespace) in wanted:
        for verb in WRITE_VERBS:
            attributes = {"verb": verb, "group": group, "resource": plural}
            if namespace:
                attributes["namespace"] = namespace
            body = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes},
            }
            name = f"{plural}.{group}" if group else plural
            try:
                answer = await client.request(
                    "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=body,
                    content_type="application/json",
                )
            except (Unreachable, ApiError) as exc:
                probe.access.append(Access(verb, name, namespace, False, f"review failed: {exc}"))
                continue
            status = answer.get("status") or {}
            probe.access.append(
                Access(verb, name, namespace, bool(status.get("allowed")), str(status.get("reason") or ""))
            )


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]

