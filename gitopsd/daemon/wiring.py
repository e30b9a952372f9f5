"""What a reconcile needs besides its app, assembled in one place for every caller.

The daemon, the CLI's one-shot commands (``gitopsd sync``/``diff``/``render``) and the
testing kit's ``run_app`` all build :class:`~gitopsd.engine.reconciler.Reconciler` objects
from a :class:`Runtime`: the workspace (plugins, caches), the state store and the
cluster pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

from gitopsd.core.events import Event
from gitopsd.core.state import StateStore
from gitopsd.engine.reconciler import ReconcileMetrics, Reconciler
from gitopsd.engine.stages import Workspace
from gitopsd.engine.windows import SyncWindows
from gitopsd.plugin.config import AppConfig, Config
from gitopsd.plugin.manager import PluginManager

if TYPE_CHECKING:
    # Annotations only: engine.protocols (two frozen dataclasses) comes with the Kubernetes layer, after ready.
    from gitopsd.engine.protocols import ClusterPool


def kube_cluster_pool(
    config: Config,
    plugins: PluginManager,
    emit: Callable[[Event], None],
    on_request: Callable[[str, str, int | str], None] | None = None,
) -> ClusterPool:
    """The real cluster pool (imported lazily: ``check`` and ``render`` never need it).

    ``on_request(cluster, verb, code)`` sees every API request (the daemon counts them).
    """
    from gitopsd.kube import KubeClusterPool

    return KubeClusterPool(config, plugins.hooks, emit, on_request=on_request)


def import_kube() -> None:
    """Import the Kubernetes layer and the parts of kubernetes-asyncio it loads.

    The daemon calls it in a worker thread once its API serves, so the event loop keeps
    answering while about a tenth of a second of imports runs (docs/operations.md,
    "Start-up and readiness"). aiohttp's HTTP client is not among them: only a cluster
    behind a proxy needs it (:mod:`gitopsd.kube.session`).
    """
    from gitopsd.kube import k8s  # and the package gitopsd.kube, KubeClusterPool's

    k8s.load()


class Runtime:
    """The shared parts every :class:`Reconciler` of one process uses.

    ``store`` and ``pool`` are None when the runtime was opened without them (``gitopsd
    render`` touches neither the state nor a cluster).
    """

    def __init__(
        self,
        workspace: Workspace,
        emit: Callable[[Event], None],
        *,
        store: StateStore | None = None,
        pool: ClusterPool | None = None,
        metrics: ReconcileMetrics | None = None,
        windows: SyncWindows | None = None,
    ) -> None:
        self.workspace = workspace
        self.emit = emit
        self.store = store
        self.pool = pool
        self.metrics = metrics
        self.windows = windows  # the config's sync windows and the clock

    def reconciler(self, app: AppConfig, wake: Callable[[str, bool], None] | None = None) -> Reconciler:
        """A Reconciler for ``app`` in this runtime."""
        return Reconciler(
            app,
            self.workspace,
            store=self.store,
            cluster=self.pool.get(app.cluster) if self.pool is not None else None,
            emit=self.emit,
            metrics=self.metrics,
            wake=wake,
            windows=self.windows,
        )


@asynccontextmanager
async def open_runtime(
    config: Config,
    plugins: PluginManager,
    *,
    emit: Callable[[Event], None] | None = None,
    workspace: Workspace | None = None,
    metrics: ReconcileMetrics | None = None,
    on_request: Callable[[str, str, int | str], None] | None = None,
    clusters: bool = True,
    state: bool = True,
    windows: SyncWindows | None = None,
) -> AsyncIterator[Runtime]:
    """Open the state store and the cluster pool (unless told not to) for ``config``.

    Both are closed on exit. ``workspace`` defaults to a new one for ``config``; ``windows``
    to the config's sync windows on the real clock.
    """
    emit = emit or (lambda event: None)
    async with AsyncExitStack() as stack:
        runtime = Runtime(
            workspace or Workspace.create(config, plugins, emit=emit),
            emit,
            metrics=metrics,
            windows=windows or SyncWindows(config.windows),
        )
        if state:
            runtime.store = await StateStore.open(config.daemon.state_dir)
            stack.push_async_callback(runtime.store.close)
        if clusters:
            runtime.pool = await stack.enter_async_context(kube_cluster_pool(config, plugins, emit, on_request))
        yield runtime


@asynccontextmanager
async def one_app(
    config: Config,
    app_name: str,
    plugins: PluginManager,
    *,
    emit: Callable[[Event], None] | None = None,
    clusters: bool = True,
    state: bool = True,
) -> AsyncIterator[Reconciler]:
    """A loaded Reconciler for one app of ``config``, for one-shot commands and tests.

    It records and reports exactly as the daemon's would; the runtime is closed on exit.
    """
    async with open_runtime(config, plugins, emit=emit, clusters=clusters, state=state) as runtime:
        reconciler = runtime.reconciler(config.apps[app_name])
        try:
            if state:
                await reconciler.load()
            yield reconciler
        finally:
            await reconciler.aclose()
