"""The supervisor: one task group, one named task per application, signals handled here.

SIGTERM/SIGINT stop the triggers, let in-flight reconciles finish until
``daemon.shutdown_timeout``, drain the notifier queues, close the API and the cluster
clients, then return (exit 0); a second signal, or the deadline, cancels what is left.
SIGHUP and a change of the config file reload it (see :meth:`Daemon.reload`).

Around the supervisor: the HTTP API (:mod:`gitopsd.server.api`), metrics (:mod:`gitopsd.server.metrics`)
and the sd_notify protocol (:mod:`gitopsd.server.systemd`).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import structlog
from anyio.abc import TaskGroup, TaskStatus

from gitopsd.core import events as ev
from gitopsd.core.errors import ConfigError
from gitopsd.core.events import Event
from gitopsd.core.state import StateStore
from gitopsd.daemon.appsets import AppSetController
from gitopsd.daemon.control import DaemonControl
from gitopsd.daemon.heap import HeapTrimmer
from gitopsd.daemon.housekeeping import status_line, watch_config_file
from gitopsd.daemon.view import DaemonView, EventLog
from gitopsd.daemon.wiring import Runtime, import_kube, kube_cluster_pool, open_runtime
from gitopsd.engine.bus import EventBus
from gitopsd.engine.cache_budget import CacheBudget
from gitopsd.engine.dependencies import DependencyGate
from gitopsd.engine.idle import IdleChecks
from gitopsd.engine.policy import config_warnings
from gitopsd.engine.reconciler import StateInventory
from gitopsd.engine.runner import AppRunner
from gitopsd.engine.stages import Workspace, cache_root
from gitopsd.engine.windows import Clock, SyncWindows, utcnow
from gitopsd.plugin.config import AppConfig, Config
from gitopsd.plugin.interfaces import Notifier
from gitopsd.plugin.manager import PluginManager
from gitopsd.server.api import ApiServer
from gitopsd.server.auth import ApiSecrets
from gitopsd.server.metrics import AppSample, Metrics
from gitopsd.server.systemd import SystemdNotifier

if TYPE_CHECKING:
    from gitopsd.daemon.coordination import Coordinator

    # Annotations only: engine.protocols (two frozen dataclasses) comes with the Kubernetes layer, after ready.
    from gitopsd.engine.protocols import ClusterPool

log = structlog.get_logger("gitopsd.daemon")

CACHE_SWEEP_INTERVAL = 60.0
"""Seconds between two measurements (and evictions) of the cache budget."""


CONFIG_WARNINGS_LOGGED = 20
"""Config warnings logged one by one at start; the rest are counted (a line per app costs a
second at 10,000 apps without a policy)."""



def _connection(config: Config, cluster: str) -> Any:
    """How a cluster is reached: its config without ``labels`` (which only appsets read)."""
    table = config.clusters.get(cluster)
    return None if table is None else table.model_copy(update={"labels": {}})


class _Done:
    """Set once an app's task has ended; an event that allocates nothing until someone waits.

    One per app: an ``anyio.Event`` holds an ``asyncio.Event`` and its waiter deque (about
    0.7 KiB) for the app's whole life, and only a stop or a reload ever waits on it.
    """

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters or [], None
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        if not self._set:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            await waiter


class _Running:
    """An app's runner, the cancel scope of its task and the event of its end."""

    __slots__ = ("_scope", "done", "runner")

    def __init__(self, runner: AppRunner) -> None:
        self.runner = runner
        self._scope: anyio.CancelScope | None = None
        self.done = _Done()

    @property
    def scope(self) -> anyio.CancelScope:
        """Made on first use (the app's task starts after ready): not one per app before /readyz.

        Cancelling it before the task enters it cancels the task as it enters, as before.
        """
        if self._scope is None:
            self._scope = anyio.CancelScope()
        return self._scope


class Daemon:
    """A running gitopsd: owns the state store, the cluster pool, the event bus, the API and the app runners.

    Args:
        config: The validated config (``config.path`` is what SIGHUP and the watcher reload).
        plugins: The plugin manager.
        on_ready: Called (and awaited, if it returns an awaitable) once apps are started
            (:attr:`ready`).
        on_settled: Called once every app started with the daemon has finished its first
            reconcile (:attr:`settled`).
        systemd: The sd_notify sender (default: from ``$NOTIFY_SOCKET``; a no-op outside systemd).
        clock: The wall clock of sync windows and approval timeouts (tests pass a fake one).
    """

    def __init__(
        self,
        config: Config,
        plugins: PluginManager,
        *,
        on_ready: Callable[[Daemon], Awaitable[None] | None] | None = None,
        systemd: SystemdNotifier | None = None,
        clock: Clock = utcnow,
        on_settled: Callable[[Daemon], None] | None = None,
    ):
        self.config = config
        self.plugins = plugins
        self._on_ready = on_ready
        self._on_settled = on_settled
        self.systemd = systemd if systemd is not None else SystemdNotifier()
        self.metrics = Metrics(apps=self._app_samples)
        self.workspace = Workspace.create(config, plugins, emit=self.emit)
        self.workspace.ctx.count = self.metrics.plugin_count
        self.windows = SyncWindows(config.windows, clock)
        self.notifiers = self._make_notifiers(config, {}, {})
        self.bus = EventBus(hooks=plugins.hooks, notifiers=self.notifiers, metrics=self.metrics)
        self.bus.set_routes(EventBus.routes_from_config(config))
        self.events = EventLog()  # recent events per app, for the web page
        self.view = DaemonView(self, self.events)
        self.workspace.ctx.control = DaemonControl(self, self.view)  # chat commands and approvals (Slack)
        self.bus.subscribe(self.events.record)
        self.apps: dict[str, _Running] = {}
        self.gate = DependencyGate(lambda: {name: r.runner for name, r in self.apps.items()})
        self.idle_checks = IdleChecks()  # interval checks of idle apps without waking them
        self.stopping = anyio.Event()
        self.accepting = anyio.Event()
        """Set once the API serves and every app has its runner (/readyz is 200 from here on):
        requests and webhooks reach the apps, whose tasks start once the clusters are set up."""
        self.ready = anyio.Event()
        """Set once started: the clusters' clients are set up and every app's task runs."""
        self.settled = anyio.Event()
        """Set once every app started with the daemon has finished its first reconcile,
        failed or not (suspended apps excepted): the cold start's converge is over."""
        self._unsettled: set[AppRunner] = set()  # started with the daemon, not reconciled once yet
        self._all_settled = anyio.Event()
        self.runtime: Runtime | None = None
        self.api: ApiServer | None = None
        self._tg: TaskGroup | None = None
        self._hard_stop = anyio.CancelScope()
        self.reload_lock = anyio.Lock()
        self.appsets = AppSetController(self)
        ws = self.workspace
        self.cache_budget = CacheBudget(
            cache_root(config), config.daemon.cache_max_bytes, lambda: ws.ctx.evictable,
            lambda: ws.artifacts_in_use.values(), lambda: ws.artifacts_handed_out,
        )
        self.cache_sweep_interval = CACHE_SWEEP_INTERVAL
        self._evictions_counted = 0
        self._cluster_failure: Exception | None = None  # raised by run() as it is
        self._apps_stopped = anyio.Event()
        self.coordinator: Coordinator | None = None
        """Set while running with ``[daemon.coordination]``: decides which apps run here."""

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
        warnings = config_warnings(self.config)  # unrestricted apps, apps rendering the same objects
        for warning in warnings[:CONFIG_WARNINGS_LOGGED]:
            log.warning("config warning", warning=warning)
        if len(warnings) > CONFIG_WARNINGS_LOGGED:
            log.warning("more config warnings", count=len(warnings) - CONFIG_WARNINGS_LOGGED, hint="gitopsd check lists them all")
        self.cache_budget.clean_leftovers()
        try:
            await self._run(secrets)
        except BaseExceptionGroup as group:
            # A cluster that cannot be set up stops the start as it did before the API
            # served: its own error, not a group from the task groups it went through.
            failure = self._cluster_failure
            if failure is not None and group.split(lambda exc: exc is failure)[1] is None:
                raise failure from None
            raise
        log.info("gitopsd stopped")

    async def _run(self, secrets: ApiSecrets) -> None:
        async with AsyncExitStack() as stack:
            stack.callback(self.systemd.close)
            coordination = self.config.daemon.coordination
            self.runtime = await stack.enter_async_context(
                open_runtime(
                    self.config,
                    self.plugins,
                    emit=self.emit,
                    workspace=self.workspace,
                    metrics=self.metrics,
                    on_request=self.metrics.kube_request,
                    # The clusters are set up after the API serves (_open_clusters), except
                    # for coordination, whose backend may be a cluster's Leases.
                    clusters=coordination is not None,
                    windows=self.windows,
                )
            )
            if coordination is not None:
                # Imported only with [daemon.coordination] (tests/unit/test_startup_imports.py).
                from gitopsd.daemon.coordination import Coordinator, open_backend

                self.coordinator = Coordinator(self, open_backend(coordination, self.runtime.pool), coordination)
            self.api = ApiServer(self.view, self.config.daemon, secrets, self.metrics)
            await self.api.start()
            stack.push_async_callback(self.api.aclose)
            async with anyio.create_task_group() as services:  # live until the very end
                services.start_soon(self.api.serve, name="api")
                services.start_soon(self._handle_signals, name="signals")
                services.start_soon(self.systemd.run_watchdog, name="watchdog")
                with self._hard_stop:  # a second stop signal cancels everything below
                    await self._supervise(services)
                services.cancel_scope.cancel()

    async def _supervise(self, services: TaskGroup) -> None:
        async with anyio.create_task_group() as bus_tg:
            bus_tg.start_soon(self.bus.run, name="event-bus")
            self.config = await self.appsets.start(self.config)  # appsets that read a repository
            try:
                await self._supervise_apps(services)
            finally:
                self._apps_stopped.set()  # the clusters close after every app's task (_open_clusters)
            await self.bus.drain(self.config.daemon.shutdown_timeout)
            bus_tg.cancel_scope.cancel()

    async def _supervise_apps(self, services: TaskGroup) -> None:
        """Every app's runner and the daemon's periodic tasks, from start to shutdown."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self.store is not None:  # one read for every app instead of three per app
                await self.store.preload(self.config.apps)
            coordinating = anyio.CancelScope()
            if self.coordinator is None:
                for app in self.config.apps.values():
                    self.apps[app.name] = _Running(self._make_runner(app, self.config))
            self.accepting.set()  # /readyz: requests and webhooks reach every app from here on
            if self.runtime is not None and self.runtime.pool is None:
                await services.start(self._open_clusters, name="clusters")
            if self.coordinator is None:
                for running in self.apps.values():
                    self._start(running.runner.app, running.runner)
            else:  # the coordinator starts the apps this member owns (daemon/coordination.py)
                tg.start_soon(self._coordinate, coordinating, name="coordination")
            tg.start_soon(self.idle_checks.run, name="idle-checks")
            tg.start_soon(self.appsets.run, name="appsets")
            if self.config.daemon.watch_config and self.config.path is not None:
                tg.start_soon(watch_config_file, self.config.path, self.reload_from_file, name="config-watch")
            tg.start_soon(self._report_status, name="sd-status")
            tg.start_soon(self.cache_budget.run, self.cache_sweep_interval, self._cache_swept, name="cache-budget")
            tg.start_soon(HeapTrimmer().run, name="heap-trim")  # freed memory back while apps converge
            tg.start_soon(self._notice_settled, list(self.apps.values()), name="settled")
            self.ready.set()
            self.systemd.ready(self.status_line())
            log.info("gitopsd ready", apps=len(self.apps), listen=self.config.daemon.listen)
            if self._on_ready is not None:
                result = self._on_ready(self)
                if result is not None:
                    await result
            await self.stopping.wait()
            self.systemd.stopping()
            coordinating.cancel()
            await self._shutdown_apps()
            if self.coordinator is not None:
                await self.coordinator.leave()  # the locks are free at once: handover without waiting for expiry
            tg.cancel_scope.cancel()

    async def _notice_settled(self, started: list[_Running]) -> None:
        """Set :attr:`settled` (and call ``on_settled``) once every app of ``started`` has
        reconciled once; an app stopped or suspended meanwhile no longer counts.

        Each runner says when it progressed (:meth:`_progressed`, and ``_run_app`` when it
        stops): no periodic look at every app (10,000 of them at a cold start).
        """
        self._unsettled = {r.runner for r in started if not r.done.is_set() and not _settled(r.runner)}
        if self._unsettled:
            await self._all_settled.wait()
        self.settled.set()
        log.info("initial converge done", apps=len(started))
        if self._on_settled is not None:
            self._on_settled(self)

    def _progressed(self, runner: AppRunner) -> None:
        """A runner reconciled or changed its pin: it may be the last one :meth:`_notice_settled` waits for."""
        if runner in self._unsettled and _settled(runner):
            self._drop_unsettled(runner)

    def _drop_unsettled(self, runner: AppRunner) -> None:
        self._unsettled.discard(runner)
        if not self._unsettled:
            self._all_settled.set()

    async def _open_clusters(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Set up every cluster's client (kubeconfig, credentials, TLS; no request) and keep
        them open until every app's task has ended. An error stops the start: run() raises it."""
        assert self.runtime is not None
        async with AsyncExitStack() as stack:
            try:
                # About a tenth of a second of imports, off the event loop: /readyz answers meanwhile.
                await anyio.to_thread.run_sync(import_kube)
                pool = await stack.enter_async_context(
                    kube_cluster_pool(self.config, self.plugins, self.emit, self.metrics.kube_request)
                )
            except Exception as exc:
                self._cluster_failure = exc
                raise
            self.runtime.pool = pool
            for running in self.apps.values():
                running.runner.reconciler.cluster = pool.get(running.runner.app.cluster)
            task_status.started()
            # Open until every app's task has ended, also when the daemon is cancelled from
            # outside: an app may still be finishing a shielded step that needs its cluster.
            with anyio.CancelScope(shield=True):
                await self._apps_stopped.wait()

    async def _coordinate(self, scope: anyio.CancelScope) -> None:
        assert self.coordinator is not None
        with scope:
            await self.coordinator.run(self.stopping)

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

    def _cache_swept(self, budget: CacheBudget) -> None:
        self.metrics.cache(budget.size, budget.evictions - self._evictions_counted)
        self._evictions_counted = budget.evictions

    async def _report_status(self) -> None:
        if not self.systemd.enabled:
            return  # nobody reads the status line: no pass over every app each 5 s
        last = ""
        while True:
            line = self.status_line()
            if line != last:
                self.systemd.status(line)
                last = line
            await anyio.sleep(5)

    # -- apps ----------------------------------------------------------------------------

    def _start(self, app: AppConfig, runner: AppRunner | None = None) -> None:
        assert self._tg is not None
        runner = runner or self._make_runner(app, self.config)
        running = self.apps.get(app.name)
        if running is None or running.runner is not runner:  # else made before the clusters opened
            running = _Running(runner)
            self.apps[app.name] = running
        self._tg.start_soon(self._run_app, running, name=f"app:{app.name}")

    def _make_runner(self, app: AppConfig, config: Config) -> AppRunner:
        """A runner for ``app`` (this builds its Source, which may fail: OSError, plugin bugs)."""
        assert self.runtime is not None
        runner = AppRunner(self.runtime.reconciler(app), config)
        runner.gate = self.gate
        runner.idle_checks = self.idle_checks
        runner.on_progress = self._progressed
        if self.coordinator is not None:
            runner.reconciler.fence = self.coordinator.fence_for(app.name)
        return runner

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
            if running.runner in self._unsettled:
                self._drop_unsettled(running.runner)

    async def _stop_app(self, name: str, failures: list[str] | None = None) -> None:
        """Stop one app's task and close its source; a failing ``aclose`` is added to ``failures``."""
        running = self.apps.pop(name)
        running.runner.trigger.fire("stop")
        running.scope.cancel()  # waits for nothing: an in-flight apply is rolled into the next start
        await running.done.wait()
        try:
            await running.runner.reconciler.aclose()
        except Exception as exc:  # a plugin's bug must not stop a reload half-way
            log.exception("closing a source failed", app=name)
            if failures is not None:
                failures.append(f"apps.{name}: closing its source failed: {type(exc).__name__}: {exc}")

    def start_app(self, app: AppConfig) -> None:
        """Start ``app``'s runner here (the coordinator calls it for the apps this member owns)."""
        self._start(app)

    async def stop_app_gracefully(self, name: str, timeout: float | None = None) -> None:
        """Stop ``name`` here (it moves to another member): its in-flight reconcile may finish
        within ``timeout`` (default ``daemon.shutdown_timeout``), then the runner is cancelled."""
        running = self.apps.pop(name, None)
        if running is None:
            return
        running.runner.trigger.fire("stop")
        locked = False
        with anyio.move_on_after(self.config.daemon.shutdown_timeout if timeout is None else timeout):
            await running.runner.busy.acquire()  # no new reconcile starts; the one in flight ends
            locked = True
        running.scope.cancel()
        await running.done.wait()
        if locked:
            running.runner.busy.release()
        await running.runner.reconciler.aclose()
        self.metrics.forget_app(name)

    async def _prune_removed(self, app: AppConfig) -> None:
        """Delete the objects of an app removed with ``prune_on_remove = true``, then forget it."""
        assert self.runtime is not None and self.runtime.pool is not None and self.runtime.store is not None
        # engine.protocols is loaded with the clusters (after ready).
        from gitopsd.engine.protocols import PrunesRemovedApps

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
        from gitopsd.plugin.loading import load_config

        assert self.config.path is not None
        await self.ready.wait()  # a SIGHUP while starting: reload once started
        async with self.reload_lock:
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
                except Exception as exc:  # anything else (OSError, a plugin's bug): keep running as before
                    log.exception("reload failed")
                    self.metrics.reload("failed")
                    error = f"{type(exc).__name__}: {exc}"
                    self.emit(
                        ev.ConfigReloadFailed.make(
                            reason="InternalError", message=f"config not reloaded: {error}", data={"errors": [error]}
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
        try:  # everything that can fail happens before the first app is stopped
            runners = {
                name: self._make_runner(new.apps[name], new)
                for name in added + changed
                if self.coordinator is None or self.coordinator.owns(name)
            }
        except Exception as exc:
            raise ConfigError([f"apps: cannot create an app's source: {type(exc).__name__}: {exc}"]) from None
        if changed_clusters and (changed or added):
            log.warning("cluster settings changed: restart gitopsd to reconnect", clusters=sorted(changed_clusters))
        for key in ("listen", "state_dir", "max_body_bytes", "instance", "inventory_namespace"):
            if getattr(old.daemon, key) != getattr(new.daemon, key):
                log.warning("daemon setting changed: restart gitopsd to apply it", setting=f"daemon.{key}")
        ran_here = set(self.apps)
        failures: list[str] = []
        async with anyio.create_task_group() as stops:  # concurrently: a source may take a while to close
            for name in removed + changed:
                if name in self.apps:  # with coordination, only the apps running here
                    stops.start_soon(self._stop_app, name, failures)
        if failures:
            # A plugin failed to let go of an app: run the stopped apps again as they were, and
            # report the reload as failed (the daemon keeps the previous config).
            for name in removed + changed:
                if name in ran_here:
                    self._start(old.apps[name])
            raise ConfigError(failures)
        self.config = new
        self.windows.configure(new.windows)
        self.plugins.configure(new)
        if self.api is not None:
            self.api.secrets = secrets
            self.api.settings = new.daemon
        routes = EventBus.routes_from_config(new)
        if notifiers.keys() != self.notifiers.keys() or any(notifiers[n] is not self.notifiers[n] for n in notifiers):
            await self.bus.reconfigure(notifiers, routes, drain_seconds=new.daemon.shutdown_timeout)
        else:
            self.bus.set_routes(routes)
        self.notifiers = notifiers
        for name in added + changed:
            if name in runners:  # with coordination, the coordinator places the others
                self._start(new.apps[name], runners[name])
        for name in removed:
            self.metrics.forget_app(name)
            self.events.forget(name)
            if old.apps[name].prune_on_remove and self._tg is not None and (self.coordinator is None or name in ran_here):
                self._tg.start_soon(self._prune_removed, old.apps[name], name=f"prune:{name}")
        summary = {"added": added, "removed": removed, "changed": changed}
        self.metrics.reload("ok")
        self.emit(ev.ConfigReloaded.make(message="configuration reloaded", data=summary))
        return summary


def _settled(runner: AppRunner) -> bool:
    """The runner counts as settled for :attr:`Daemon.settled`: it reconciled once, or it is suspended."""
    return runner.passes > 0 or runner.status.suspended
