"""The supervisor: one task group, one named task per application, signals handled here.

SIGTERM/SIGINT stop the triggers, let in-flight reconciles finish until
``daemon.shutdown_timeout``, drain the notifier queues, close the API and the cluster
clients, then return (exit 0); a second signal, or the deadline, cancels what is left.
SIGHUP and a change of the config file reload it (see :meth:`Daemon.reload`).

Around the supervisor: the HTTP API (:mod:`gitopsd.server.api`), metrics (:mod:`gitopsd.server.metrics`)
and the sd_notify protocol (:mod:`gitopsd.server.systemd`).
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

from gitopsd.core import events as ev
from gitopsd.core.errors import ConfigError
from gitopsd.core.events import Event
from gitopsd.core.state import StateStore
from gitopsd.daemon.appsets import AppSetController
from gitopsd.daemon.housekeeping import status_line, watch_config_file
from gitopsd.daemon.wiring import Runtime, open_runtime
from gitopsd.engine.bus import EventBus
from gitopsd.engine.dependencies import DependencyGate
from gitopsd.engine.protocols import ClusterPool, PrunesRemovedApps
from gitopsd.engine.reconciler import StateInventory
from gitopsd.engine.runner import AppRunner
from gitopsd.engine.stages import Workspace
from gitopsd.plugin.config import AppConfig, Config
from gitopsd.plugin.interfaces import Notifier
from gitopsd.plugin.manager import PluginManager
from gitopsd.server.api import ApiSecrets, ApiServer
from gitopsd.server.metrics import AppSample, Metrics
from gitopsd.server.systemd import SystemdNotifier

log = structlog.get_logger("gitopsd.daemon")



def _connection(config: Config, cluster: str) -> Any:
    """How a cluster is reached: its config without ``labels`` (which only appsets read)."""
    table = config.clusters.get(cluster)
    return None if table is None else table.model_copy(update={"labels": {}})


@dataclass
class _Running:
    runner: AppRunner
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)


class Daemon:
    """A running gitopsd: owns the state store, the cluster pool, the event bus, the API and the app runners.

    Args:
        config: The validated config (``config.path`` is what SIGHUP and the watcher reload).
        plugins: The plugin manager.
        on_ready: Called (and awaited, if it returns an awaitable) once apps are started.
        systemd: The sd_notify sender (default: from ``$NOTIFY_SOCKET``; a no-op outside systemd).
    """

    def __init__(
        self,
        config: Config,
        plugins: PluginManager,
        *,
        on_ready: Callable[[Daemon], Awaitable[None] | None] | None = None,
        systemd: SystemdNotifier | None = None,
    ):
        self.config = config
        self.plugins = plugins
        self._on_ready = on_ready
        self.systemd = systemd if systemd is not None else SystemdNotifier()
        self.metrics = Metrics(apps=self._app_samples)
        self.workspace = Workspace.create(config, plugins, emit=self.emit)
        self.workspace.ctx.count = self.metrics.plugin_count
        self.notifiers = self._make_notifiers(config, {}, {})
        self.bus = EventBus(hooks=plugins.hooks, notifiers=self.notifiers, metrics=self.metrics)
        self.bus.set_routes(EventBus.routes_from_config(config))
        self.apps: dict[str, _Running] = {}
        self.gate = DependencyGate(lambda: {name: r.runner for name, r in self.apps.items()})
        self.stopping = anyio.Event()
        self.ready = anyio.Event()
        self.runtime: Runtime | None = None
        self.api: ApiServer | None = None
        self._tg: TaskGroup | None = None
        self._hard_stop = anyio.CancelScope()
        self._reload_lock = anyio.Lock()
        self.appsets = AppSetController(self)

    @property
    def store(self) -> StateStore | None:
        """The state store, once running."""
        return self.runtime.store if self.runtime is not None else None

    @property
    def pool(self) -> ClusterPool | None:
        """The cluster pool, once running."""
        return self.runtime.pool if self.runtime is not None else None

    def emit(self, event: Event) -> None:
        """Emit an event: logged, seen by the gitopsd_event hook, queued for notifiers."""
        if event.name == ev.DriftCorrected.name and event.app:
            self.metrics.drift_correction(event.app)
        self.bus.emit(event)

    def _make_notifiers(self, config: Config, old_tables: dict[str, Any], old: dict[str, Notifier]) -> dict[str, Notifier]:
        """Notifier instances for ``config``; unchanged tables keep their running instance."""
        types = self.plugins.types.notifiers
        result: dict[str, Notifier] = {}
        for name, table in config.notifiers.items():
            if name in old and old_tables.get(name) == table:
                result[name] = old[name]
            else:
                result[name] = types[table.type](name, table.options, self.workspace.ctx)
        return result

    def _app_samples(self) -> list[AppSample]:
        return [
            AppSample(s.name, s.cluster, s.sync, s.health, s.suspended) for s in (r.runner.status for r in self.apps.values())
        ]

    def status_line(self) -> str:
        return status_line([r.runner.status for r in self.apps.values()])

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT (or :meth:`stop`), then shut down gracefully."""
        secrets = ApiSecrets.load(self.config)  # an unreadable secret file stops the start here
        async with AsyncExitStack() as stack:
            stack.callback(self.systemd.close)
            self.runtime = await stack.enter_async_context(
                open_runtime(
                    self.config,
                    self.plugins,
                    emit=self.emit,
                    workspace=self.workspace,
                    metrics=self.metrics,
                    on_request=self.metrics.kube_request,
                )
            )
            self.api = ApiServer(self, secrets)
            await self.api.start()
            stack.push_async_callback(self.api.aclose)
            async with anyio.create_task_group() as services:  # live until the very end
                services.start_soon(self._handle_signals, name="signals")
                services.start_soon(self.systemd.run_watchdog, name="watchdog")
                with self._hard_stop:  # a second stop signal cancels everything below
                    await self._supervise()
                services.cancel_scope.cancel()
        log.info("gitopsd stopped")

    async def _supervise(self) -> None:
        async with anyio.create_task_group() as bus_tg:
            bus_tg.start_soon(self.bus.run, name="event-bus")
            self.config = await self.appsets.start(self.config)  # appsets that read a repository
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self.store is not None:  # one read for every app instead of three per app
                    await self.store.preload(self.config.apps)
                for app in self.config.apps.values():
                    self._start(app)
                tg.start_soon(self.appsets.run, name="appsets")
                if self.config.daemon.watch_config and self.config.path is not None:
                    tg.start_soon(watch_config_file, self.config.path, self.reload_from_file, name="config-watch")
                tg.start_soon(self._report_status, name="sd-status")
                self.ready.set()
                self.systemd.ready(self.status_line())
                log.info("gitopsd ready", apps=len(self.apps), listen=self.config.daemon.listen)
                if self._on_ready is not None:
                    result = self._on_ready(self)
                    if result is not None:
                        await result
                await self.stopping.wait()
                self.systemd.stopping()
                await self._shutdown_apps()
                tg.cancel_scope.cancel()
            await self.bus.drain(self.config.daemon.shutdown_timeout)
            bus_tg.cancel_scope.cancel()

    def stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM does)."""
        self.stopping.set()

    async def _handle_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    if not self.stopping.is_set() and self._tg is not None:
                        self._tg.start_soon(self.reload_from_file, name="reload")
                elif self.stopping.is_set():
                    log.warning("second stop signal: cancelling in-flight work")
                    self._hard_stop.cancel()
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

    async def _report_status(self) -> None:
        last = ""
        while True:
            line = self.status_line()
            if line != last:
                self.systemd.status(line)
                last = line
            await anyio.sleep(5)

    # -- apps ----------------------------------------------------------------------------

    def _start(self, app: AppConfig) -> None:
        assert self._tg is not None and self.runtime is not None
        runner = AppRunner(self.runtime.reconciler(app), self.config)
        runner.gate = self.gate
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
        await running.runner.reconciler.aclose()

    async def _prune_removed(self, app: AppConfig) -> None:
        """Delete the objects of an app removed with ``prune_on_remove = true``, then forget it."""
        assert self.runtime is not None and self.runtime.pool is not None and self.runtime.store is not None
        store = self.runtime.store
        cluster = self.runtime.pool.get(app.cluster)
        if not isinstance(cluster, PrunesRemovedApps):
            log.error("cluster cannot prune a removed app's objects (no prune_all)", app=app.name, cluster=app.cluster)
            return
        try:
            result = await cluster.prune_all(app, StateInventory(store, app.name))
        except Exception as exc:
            log.error("pruning a removed app failed; its objects stay", app=app.name, error=str(exc))
            return
        pruned = [str(o.ref) for o in result.objects if o.action == "pruned"]
        if result.ok:
            await store.forget_app(app.name)
        self.emit(
            ev.Pruned.make(
                app=app.name,
                cluster=app.cluster,
                message=f"{app.name} removed from the config: pruned {len(pruned)} object(s)"
                + ("" if result.ok else f"; {result.message}"),
                data={"objects": pruned, "removed_app": True},
            )
        )

    # -- reload --------------------------------------------------------------------------

    async def reload_from_file(self) -> None:
        """Reload from the config file; on errors keep the running config and emit an event.

        Tells systemd ``RELOADING=1`` before and ``READY=1`` after, whatever the outcome.
        """
        from gitopsd.plugin.config import load_config

        assert self.config.path is not None
        async with self._reload_lock:
            self.systemd.reloading()
            try:
                try:
                    new = self.appsets.expand_known(load_config(self.config.path, self.plugins.types))
                    await self.reload(new)
                    await self.appsets.reconfigure()
                except ConfigError as exc:
                    self.metrics.reload("failed")
                    self.emit(
                        ev.ConfigReloadFailed.make(
                            reason=exc.reason,
                            message=f"config not reloaded: {len(exc.errors)} error(s): " + "; ".join(exc.errors[:5]),
                            data={"errors": exc.errors},
                        )
                    )
            finally:
                self.systemd.ready(self.status_line())

    async def reload(self, new: Config) -> dict[str, list[str]]:
        """Switch to ``new``: start added apps, stop removed ones, restart changed ones.

        Apps whose config (and cluster config) did not change keep running untouched: same
        runner, same task, no request. Removed apps' objects stay unless the app had
        ``prune_on_remove = true``. Changed notifiers are swapped on the bus; unchanged ones
        keep their queues. Raises ConfigError (and changes nothing) when the new config's
        secret files cannot be read, a notifier cannot be built, or an app needs a cluster
        that is new since the start. Returns the app names by change kind.
        """
        old = self.config
        secrets = ApiSecrets.load(new)
        changed_clusters = {n for n in old.clusters.keys() | new.clusters.keys() if _connection(old, n) != _connection(new, n)}
        added = sorted(new.apps.keys() - old.apps.keys())
        removed = sorted(old.apps.keys() - new.apps.keys())
        changed = sorted(
            n
            for n in old.apps.keys() & new.apps.keys()
            if old.apps[n] != new.apps[n] or new.apps[n].cluster in changed_clusters
        )
        unknown = sorted({new.apps[n].cluster for n in added + changed} - old.clusters.keys())
        if unknown:
            raise ConfigError([f"clusters.{name}: a new cluster needs a restart of gitopsd" for name in unknown])
        try:
            notifiers = self._make_notifiers(new, dict(old.notifiers), self.notifiers)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError([f"notifiers: cannot create a notifier: {type(exc).__name__}: {exc}"]) from None
        if changed_clusters and (changed or added):
            log.warning("cluster settings changed: restart gitopsd to reconnect", clusters=sorted(changed_clusters))
        for key in ("listen", "state_dir", "max_body_bytes"):
            if getattr(old.daemon, key) != getattr(new.daemon, key):
                log.warning("daemon setting changed: restart gitopsd to apply it", setting=f"daemon.{key}")
        async with anyio.create_task_group() as stops:  # concurrently: a source may take a while to close
            for name in removed + changed:
                stops.start_soon(self._stop_app, name)
        self.config = new
        self.plugins.configure(new)
        if self.api is not None:
            self.api.secrets = secrets
        routes = EventBus.routes_from_config(new)
        if notifiers.keys() != self.notifiers.keys() or any(notifiers[n] is not self.notifiers[n] for n in notifiers):
            await self.bus.reconfigure(notifiers, routes, drain_seconds=new.daemon.shutdown_timeout)
        else:
            self.bus.set_routes(routes)
        self.notifiers = notifiers
        for name in added + changed:
            self._start(new.apps[name])
        for name in removed:
            self.metrics.forget_app(name)
            if old.apps[name].prune_on_remove and self._tg is not None:
                self._tg.start_soon(self._prune_removed, old.apps[name], name=f"prune:{name}")
        summary = {"added": added, "removed": removed, "changed": changed}
        self.metrics.reload("ok")
        self.emit(ev.ConfigReloaded.make(message="configuration reloaded", data=summary))
        return summary
