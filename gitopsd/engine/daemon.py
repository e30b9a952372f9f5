"""The supervisor: one task group, one named task per application, signals handled here.

SIGTERM/SIGINT stop the triggers, let in-flight reconciles finish until
``daemon.shutdown_timeout``, drain the notifier queues, then cancel what is left;
a second signal cancels at once. SIGHUP reloads the config (see :meth:`Daemon.reload`).
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from gitopsd import events as ev
from gitopsd.config import AppConfig, Config
from gitopsd.engine.applier import ClusterPool
from gitopsd.engine.bus import EventBus
from gitopsd.engine.runner import AppRunner
from gitopsd.engine.stages import Workspace
from gitopsd.events import Event
from gitopsd.interfaces import Notifier
from gitopsd.plugins import PluginManager
from gitopsd.state import StateStore

log = structlog.get_logger("gitopsd.daemon")

ClusterPoolFactory = Callable[[Config, PluginManager, Callable[[Event], None]], ClusterPool]


def kube_cluster_pool(config: Config, plugins: PluginManager, emit: Callable[[Event], None]) -> ClusterPool:
    """The real cluster pool (imported lazily: the CLI's ``check`` and ``render`` never need it)."""
    from gitopsd.kube import KubeClusterPool

    return KubeClusterPool(config, plugins.hooks, emit)


@dataclass
class _Running:
    runner: AppRunner
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)


class Daemon:
    """A running gitopsd: owns the state store, the cluster pool, the event bus and the app runners."""

    def __init__(
        self,
        config: Config,
        plugins: PluginManager,
        *,
        cluster_pool_factory: ClusterPoolFactory = kube_cluster_pool,
        on_ready: Callable[[Daemon], Awaitable[None] | None] | None = None,
    ):
        self.config = config
        self.plugins = plugins
        self._pool_factory = cluster_pool_factory
        self._on_ready = on_ready
        self.workspace = Workspace.create(config, plugins, emit=self.emit)
        self.bus = EventBus(hooks=plugins.hooks, notifiers=self._make_notifiers(config))
        self.bus.set_routes({name: list(app.notify) for name, app in config.apps.items()})
        self.apps: dict[str, _Running] = {}
        self.stopping = anyio.Event()
        self.ready = anyio.Event()
        self.store: StateStore | None = None
        self.pool: ClusterPool | None = None
        self._tg: TaskGroup | None = None

    def emit(self, event: Event) -> None:
        """Emit an event: logged, seen by the gitopsd_event hook, queued for notifiers."""
        self.bus.emit(event)

    def _make_notifiers(self, config: Config) -> dict[str, Notifier]:
        types = self.plugins.types.notifiers
        return {
            name: types[table.type](name, table.options, self.workspace.ctx) for name, table in config.notifiers.items()
        }

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT (or :meth:`stop`), then shut down gracefully."""
        async with AsyncExitStack() as stack:
            self.store = await StateStore.open(self.config.daemon.state_dir)
            stack.push_async_callback(self.store.close)
            self.pool = await stack.enter_async_context(self._pool_factory(self.config, self.plugins, self.emit))
            async with anyio.create_task_group() as bus_tg:
                bus_tg.start_soon(self.bus.run, name="event-bus")
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    tg.start_soon(self._handle_signals, name="signals")
                    for app in self.config.apps.values():
                        self._start(app)
                    self.ready.set()
                    if self._on_ready is not None:
                        result = self._on_ready(self)
                        if result is not None:
                            await result
                    await self.stopping.wait()
                    await self._shutdown_apps()
                    tg.cancel_scope.cancel()
                await self.bus.drain(self.config.daemon.shutdown_timeout)
                bus_tg.cancel_scope.cancel()
        log.info("gitopsd stopped")

    def stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM does)."""
        self.stopping.set()

    async def _handle_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self.reload_from_file()
                elif self.stopping.is_set():
                    log.warning("second stop signal: cancelling in-flight work")
                    for running in self.apps.values():
                        running.scope.cancel()
                else:
                    log.info("stop signal received: finishing in-flight work", signal=signal.Signals(signum).name)
                    self.stop()

    async def _shutdown_apps(self) -> None:
        for running in self.apps.values():
            running.runner.trigger.fire("stop")
        with anyio.move_on_after(self.config.daemon.shutdown_timeout) as scope:
            for running in list(self.apps.values()):
                await running.done.wait()
        if scope.cancelled_caught:
            log.warning("shutdown deadline passed: cancelling", apps=[n for n, r in self.apps.items() if not r.done.is_set()])
            for running in self.apps.values():
                running.scope.cancel()

    # -- apps ----------------------------------------------------------------------------

    def _start(self, app: AppConfig) -> None:
        assert self._tg is not None and self.store is not None and self.pool is not None
        runner = AppRunner(app, self.config, self.workspace, self.store, self.pool.get(app.cluster), self.emit)
        running = _Running(runner)
        self.apps[app.name] = running
        self._tg.start_soon(self._run_app, running, name=f"app:{app.name}")

    async def _run_app(self, running: _Running) -> None:
        """Run one app; a bug in it is logged and the app restarts, the others never notice."""
        try:
            with running.scope:
                while not self.stopping.is_set():
                    try:
                        await running.runner.run(self.stopping)
                    except Exception:
                        log.exception("app runner crashed; restarting in 5s", app=running.runner.app.name)
                        await anyio.sleep(5)
        finally:
            running.runner.cluster.untrack(running.runner.app.name)
            running.done.set()

    async def _stop_app(self, name: str) -> None:
        running = self.apps.pop(name)
        running.runner.trigger.fire("stop")
        running.scope.cancel()  # waits for nothing: an in-flight apply is rolled into the next start
        await running.done.wait()
        await running.runner.source.aclose()

    # -- reload --------------------------------------------------------------------------

    async def reload_from_file(self) -> None:
        """Reload from the config file; on errors keep the running config and emit an event."""
        from gitopsd.config import load_config
        from gitopsd.errors import ConfigError

        assert self.config.path is not None
        try:
            new = load_config(self.config.path, self.plugins.types)
        except ConfigError as exc:
            self.emit(
                ev.ConfigReloadFailed.make(
                    reason=exc.reason, message=f"config not reloaded: {len(exc.errors)} error(s)", data={"errors": exc.errors}
                )
            )
            return
        await self.reload(new)

    async def reload(self, new: Config) -> dict[str, list[str]]:
        """Switch to ``new``: start added apps, stop removed ones, restart changed ones.

        Apps whose config (and cluster config) did not change keep running untouched.
        Returns the app names by change kind.
        """
        old = self.config
        changed_clusters = {n for n in old.clusters.keys() | new.clusters.keys() if old.clusters.get(n) != new.clusters.get(n)}
        added = sorted(new.apps.keys() - old.apps.keys())
        removed = sorted(old.apps.keys() - new.apps.keys())
        changed = sorted(
            n
            for n in old.apps.keys() & new.apps.keys()
            if old.apps[n] != new.apps[n] or new.apps[n].cluster in changed_clusters
        )
        if changed_clusters and (changed or added):
            log.warning("cluster settings changed: restart gitopsd to reconnect", clusters=sorted(changed_clusters))
        for name in removed + changed:
            await self._stop_app(name)
        self.config = new
        self.bus.set_routes({name: list(app.notify) for name, app in new.apps.items()})
        for name in added + changed:
            self._start(new.apps[name])
        summary = {"added": added, "removed": removed, "changed": changed}
        self.emit(ev.ConfigReloaded.make(message="configuration reloaded", data=summary))
        return summary


def app_statuses(daemon: Daemon) -> list[Any]:
    """Status of every app, sorted by name."""
    return [daemon.apps[name].runner.status for name in sorted(daemon.apps)]
