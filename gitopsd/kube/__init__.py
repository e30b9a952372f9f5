"""The Kubernetes layer: the only package that imports kubernetes-asyncio (and, for tunnels, asyncssh).

:class:`KubeClusterPool` implements :class:`gitopsd.engine.protocols.ClusterPool`: one
:class:`~gitopsd.kube.cluster.KubeCluster` per configured cluster, each with its own client,
discovery, live cache (LIST + WATCH of gitopsd-labelled objects) and SSH tunnel if configured.

Labels put on every applied object:

- ``app.kubernetes.io/managed-by: gitopsd``: what the live cache watches;
- ``gitopsd.dev/app: <app>``: selection.

Annotation put on every applied object: ``gitopsd.dev/owner: <instance>/<app>`` (ownership:
see :mod:`gitopsd.kube.ownership`; prune deletes only objects whose live copy names the app).

Annotations read: ``gitopsd.dev/sync-wave`` (or ``argocd.argoproj.io/sync-wave``),
``gitopsd.dev/prune: disabled`` and ``gitopsd.dev/adopt: "true"``.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from gitopsd.core.events import Event
from gitopsd.core.version import user_agent
from gitopsd.kube.apply import FIELD_MANAGER, PRUNE_ANNOTATION
from gitopsd.kube.background import Background
from gitopsd.kube.cache import APP_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from gitopsd.kube.cluster import KubeCluster
from gitopsd.kube.health import HealthHook
from gitopsd.kube.order import WAVE_ANNOTATIONS
from gitopsd.plugin.config import Config
from gitopsd.plugin.manager import Hooks

__all__ = [
    "APP_LABEL",
    "FIELD_MANAGER",
    "MANAGED_BY_LABEL",
    "MANAGED_BY_VALUE",
    "PRUNE_ANNOTATION",
    "WAVE_ANNOTATIONS",
    "KubeCluster",
    "KubeClusterPool",
]


class KubeClusterPool:
    """Every configured cluster (:class:`gitopsd.engine.protocols.ClusterPool`).

    Entering opens each cluster's client (loading its kubeconfig; tunnels connect in the
    background) without any API request, so an unreachable cluster delays nothing.

    Args:
        config: The validated config; ``config.clusters`` is used.
        hooks: The plugin hooks (``gitopsd_health`` for kinds without built-in rules), or None.
        emit: Receives ClusterUnreachable / ClusterReachable events (must not block).
        on_request: Called with (cluster, verb, HTTP code or "error") once per API request,
            e.g. ``Metrics.kube_request``.
    """

    def __init__(
        self,
        config: Config,
        hooks: Hooks | None = None,
        emit: Callable[[Event], None] | None = None,
        *,
        on_request: Callable[[str, str, int | str], None] | None = None,
    ):
        health: HealthHook | None = hooks.health if hooks is not None else None
        # Every watch, late tracking and tunnel task of every cluster: inside the task tree
        # of whoever enters the pool (the daemon's supervisor), and waited for on exit.
        self._background = Background("clusters")
        self._clusters = {
            name: KubeCluster(
                name,
                cluster,
                health_hook=health,
                emit=emit,
                on_request=on_request,
                background=self._background,
                instance=config.daemon.instance,
                inventory_namespace=config.daemon.inventory_namespace,
            )
            for name, cluster in config.clusters.items()
        }
        if config.daemon.coordination is not None:  # tell the API servers which member is writing
            for kube in self._clusters.values():
                kube.client.user_agent = user_agent(config.daemon.coordination.member)

    async def __aenter__(self) -> KubeClusterPool:
        await self._background.open()
        opened: list[KubeCluster] = []
        try:
            for cluster in self._clusters.values():
                await cluster.open()
                opened.append(cluster)
        except BaseException:
            with anyio.CancelScope(shield=True):
                for cluster in opened:
                    await cluster.close()
            await self._background.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for cluster in self._clusters.values():
                    tg.start_soon(cluster.close)
        # Outside the shield: the background group was entered before it, so it is left after.
        await self._background.aclose()

    def get(self, name: str) -> KubeCluster:
        """The cluster called ``name`` in the config (KeyError if there is none)."""
        return self._clusters[name]
