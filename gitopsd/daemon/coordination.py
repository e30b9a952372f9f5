"""One member among several: which apps this daemon runs, and when it must stop writing.

With ``[daemon.coordination]`` the :class:`~gitopsd.daemon.supervisor.Daemon` starts no app
by itself: the :class:`Coordinator` keeps this member's lease alive, reads the live members,
decides which apps belong here (``shard``: weighted rendezvous hashing; ``standby``: every
app on the holder of the ``leader`` lock), takes each app's lock before starting its runner
and stops the runner before giving the lock back.

Fencing: each runner's Reconciler gets ``fence = lambda: coordinator.may_write(app)``; the
cluster checks it before every write phase. It turns False a safety margin
(``lease_ttl / 5``) before the lease could expire on the backend, so a member cut off from
etcd (or the API server holding the Leases) stops writing before anyone can take its apps.
Then the runners are stopped and ``coordination-lost`` is emitted; when the backend answers
again the member joins with a new lease and takes apps like a new member would.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio
import structlog

from gitopsd.coord.base import Backend, CoordinationUnavailable, LeaseLost, MemberInfo
from gitopsd.coord.placement import owner
from gitopsd.core import events as ev
from gitopsd.core.errors import ConfigError
from gitopsd.core.events import Event
from gitopsd.engine.protocols import ClusterPool
from gitopsd.plugin.config import AppConfig, Config, CoordinationConfig

log = structlog.get_logger("gitopsd.coordination")

LEADER = "leader"
"""The lock whose holder runs every app in standby mode (app locks are ``app-<name>``: no clash)."""
ACQUIRE_CONCURRENCY = 32


def _lock(app: str) -> str:
    """The lock name of an app (``app-`` prefix: an app called "leader" cannot clash with the leader lock)."""
    return f"app-{app}"


def open_backend(coordination: CoordinationConfig, pool: ClusterPool | None) -> Backend:
    """The backend ``coordination`` names (the kubernetes one uses the pool's client of its cluster)."""
    if coordination.backend == "etcd":
        from gitopsd.coord.etcd import EtcdBackend

        return EtcdBackend(
            coordination.endpoints,
            coordination.member,
            coordination.lease_ttl,
            advertise_url=coordination.advertise_url,
            weight=coordination.weight,
            prefix=coordination.prefix,
            ca_file=coordination.ca_file,
            cert_file=coordination.cert_file,
            key_file=coordination.key_file,
            username=coordination.username,
            password_file=coordination.password_file,
        )
    from gitopsd.kube.leases import LeaseBackend

    assert pool is not None and coordination.cluster is not None
    try:
        cluster: Any = pool.get(coordination.cluster)
    except KeyError:
        raise ConfigError(
            [f"daemon.coordination.cluster: no [clusters.{coordination.cluster}] table (the cluster holding the Leases)"]
        ) from None
    return LeaseBackend(
        cluster.client,
        coordination.namespace,
        coordination.member,
        coordination.lease_ttl,
        advertise_url=coordination.advertise_url,
        weight=coordination.weight,
    )


class AppHost(Protocol):
    """What the coordinator needs of the daemon (:class:`gitopsd.daemon.supervisor.Daemon`)."""

    config: Config
    stopping: anyio.Event

    @property
    def apps(self) -> Mapping[str, Any]: ...

    def emit(self, event: Event) -> None: ...

    def start_app(self, app: AppConfig) -> None: ...

    async def stop_app_gracefully(self, name: str, timeout: float | None = None) -> None: ...


class Coordinator:
    """Runs the apps this member owns; see the module docstring.

    Args:
        daemon: The daemon whose ``_start``/``_stop_app`` start and stop app runners.
        backend: etcd or Kubernetes Leases.
        config: ``[daemon.coordination]``.
    """

    def __init__(self, daemon: AppHost, backend: Backend, config: CoordinationConfig):
        self.daemon = daemon
        self.backend = backend
        self.config = config
        self.member = config.member
        self.margin = config.lease_ttl / 5
        self.held: set[str] = set()  # app names whose lock this member holds (and runs)
        self.leader = False
        self.joined = False
        self.lost = False
        self.members: list[MemberInfo] = []
        self.holders: dict[str, str] = {}  # app -> member, as last read
        self._renew_at = 0.0
        self._lease_lost: str | None = None  # set by the renewal task when the backend says the lease is gone
        # After a join, take no app until the member list has been stable for a while (at most
        # 3 TTLs): members started together then agree at once instead of trading apps.
        self._settle_until = 0.0
        self._settle_cap = 0.0
        self._limiter = anyio.CapacityLimiter(ACQUIRE_CONCURRENCY)

    # -- what runners ask ------------------------------------------------------------------

    def may_write(self, app: str) -> bool:
        """True while this member holds ``app``'s lock and its lease is surely alive."""
        return app in self.held and self.backend.valid(self.margin)

    def fence_for(self, app: str) -> Callable[[], bool]:
        """The Reconciler's fence for ``app``."""
        return lambda: self.may_write(app)

    def owns(self, app: str) -> bool:
        """Whether ``app`` runs here now."""
        return app in self.held

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, stopping: anyio.Event) -> None:
        """Join, renew, rebalance, until ``stopping``; then the caller :meth:`leave`\\ s.

        Renewal runs in its own task: a long rebalance (taking hundreds of apps) never
        delays it.
        """
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._renew, stopping, name="coordination-renew")
            await self._main(stopping)
            tg.cancel_scope.cancel()

    async def _renew(self, stopping: anyio.Event) -> None:
        interval = self.config.lease_ttl / 3
        while not stopping.is_set():
            if self.joined and self._lease_lost is None and time.monotonic() >= self._renew_at:
                try:
                    await self.backend.keepalive()
                    self._renew_at = time.monotonic() + interval
                except LeaseLost as exc:
                    self._lease_lost = str(exc)
                except CoordinationUnavailable as exc:
                    log.warning("lease renewal failed; retrying", error=str(exc))
                    self._renew_at = time.monotonic() + min(0.5, interval / 2)
            await self._sleep(stopping, max(0.02, min(self._renew_at - time.monotonic(), 0.25)))

    async def _main(self, stopping: anyio.Event) -> None:
        interval = self.config.lease_ttl / 3
        while not stopping.is_set():
            if not self.joined:
                try:
                    await self.backend.join()
                except (CoordinationUnavailable, LeaseLost) as exc:
                    log.warning("cannot join the coordination backend; retrying", backend=self.backend.kind, error=str(exc))
                    await self._sleep(stopping, min(1.0, interval))
                    continue
                self._lease_lost = None
                self._renew_at = time.monotonic() + interval
                self._settle_until = time.monotonic() + self.config.lease_ttl
                self._settle_cap = time.monotonic() + 3 * self.config.lease_ttl
                self.joined = True
                log.info("joined", member=self.member, backend=self.backend.kind, mode=self.config.mode)
                if self.lost:
                    self.lost = False
                    self.daemon.emit(
                        ev.CoordinationRestored.make(
                            message=f"member {self.member} joined {self.backend.kind} again",
                            data={"member": self.member, "backend": self.backend.kind},
                        )
                    )
            if self._lease_lost is not None:
                await self._lose(self._lease_lost)
                continue
            if not self.backend.valid(self.margin):
                await self._lose(f"lease not renewed within {self.config.lease_ttl:g}s")
                continue
            try:
                await self.rebalance()
            except CoordinationUnavailable as exc:
                log.debug("rebalance skipped: backend unavailable", error=str(exc))
            except LeaseLost as exc:
                await self._lose(str(exc))
                continue
            timeout = max(0.05, min(self._renew_at - time.monotonic(), 1.0))
            with anyio.move_on_after(timeout):
                async with anyio.create_task_group() as tg:
                    async def on_stop() -> None:
                        await stopping.wait()
                        tg.cancel_scope.cancel()

                    tg.start_soon(on_stop)
                    await self.backend.wait_change(timeout)
                    tg.cancel_scope.cancel()

    async def _sleep(self, stopping: anyio.Event, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await stopping.wait()

    async def rebalance(self) -> None:
        """Read members and locks; hand over apps that belong elsewhere; take the ones that belong here."""
        members = await self.backend.members()
        if self.member not in {m.name for m in members}:
            raise LeaseLost(f"member {self.member} is not in the member list")
        now = time.monotonic()
        if now < self._settle_until:
            if [m.name for m in members] != [m.name for m in self.members]:
                self._settle_until = min(self._settle_cap, now + self.config.lease_ttl)
            self.members = members
            return
        self.members = members
        holders = {k.removeprefix("app-"): v for k, v in (await self.backend.holders()).items() if k.startswith("app-")}
        self.holders = holders
        apps = self.daemon.config.apps
        if self.config.mode == "standby":
            self.leader = await self.backend.acquire(LEADER)
            desired = set(apps) if self.leader else set()
        else:
            weights = {m.name: m.weight for m in members}
            desired = {name for name in apps if owner(name, weights) == self.member}
        # A lock we think we hold but the backend does not list as ours: gone (stop at once).
        for name in sorted(self.held):
            if holders.get(name) != self.member:
                log.warning("app lock lost", app=name)
                await self._stop(name, release=False)
        leaving = sorted(self.held - desired)
        if leaving:
            async with anyio.create_task_group() as tg:
                for name in leaving:
                    tg.start_soon(self._stop, name, True)
            log.info("apps handed over", count=len(leaving))
        wanted = [name for name in sorted(desired - self.held) if holders.get(name) in (None, self.member)]
        if wanted:
            async with anyio.create_task_group() as tg:
                for name in wanted:
                    tg.start_soon(self._take, name)

    async def _take(self, name: str) -> None:
        async with self._limiter:
            try:
                if not self.backend.valid(self.margin) or not await self.backend.acquire(_lock(name)):
                    return
            except (CoordinationUnavailable, LeaseLost) as exc:
                log.debug("app lock not taken", app=name, error=str(exc))  # the next round tries again
                return
        app = self.daemon.config.apps.get(name)
        if app is None or name in self.held or self.daemon.stopping.is_set():
            with contextlib.suppress(CoordinationUnavailable, LeaseLost):
                await self.backend.release(_lock(name))
            return
        self.held.add(name)
        if name not in self.daemon.apps:
            self.daemon.start_app(app)
        log.info("app taken", app=name)

    async def _stop(self, name: str, release: bool) -> None:
        """Stop ``name``'s runner (an in-flight reconcile may finish, fenced), then free its lock."""
        self.held.discard(name)
        await self.daemon.stop_app_gracefully(name)
        if release:
            try:
                await self.backend.release(_lock(name))
            except (CoordinationUnavailable, LeaseLost):
                pass  # it expires with the lease

    async def _lose(self, why: str) -> None:
        apps = sorted(self.held)
        self.held.clear()
        self.leader = False
        self.joined = False
        async with anyio.create_task_group() as tg:
            for name in apps:
                tg.start_soon(self.daemon.stop_app_gracefully, name, 0.0)
        if not self.lost:
            self.lost = True
            self.daemon.emit(
                ev.CoordinationLost.make(
                    reason="LeaseExpired",
                    message=f"member {self.member} lost its {self.backend.kind} lease ({why}): stopped writing to {len(apps)} app(s)",
                    data={"member": self.member, "backend": self.backend.kind, "apps": apps},
                )
            )
        log.error("coordination lost: stopped writing", member=self.member, apps=len(apps), why=why)

    async def leave(self) -> None:
        """Graceful stop (the runners are already stopped): release every lock and end the lease at once."""
        self.held.clear()
        if self.joined:
            self.joined = False
            try:
                with anyio.fail_after(max(1.0, self.config.lease_ttl / 2)):
                    await self.backend.leave()
                log.info("left the coordination group", member=self.member)
            except (CoordinationUnavailable, LeaseLost, TimeoutError) as exc:
                log.warning("could not leave cleanly; the lease will expire", error=str(exc))
        await self.backend.aclose()

    # -- reporting ---------------------------------------------------------------------------

    async def report(self) -> dict[str, Any]:
        """``GET /api/v1/members``: members with their apps and lease ages, as the backend tells now."""
        try:
            members = await self.backend.members(with_ages=True)
            holders = {k.removeprefix("app-"): v for k, v in (await self.backend.holders()).items() if k.startswith("app-")}
            error = ""
        except (CoordinationUnavailable, LeaseLost) as exc:
            members, holders, error = self.members, self.holders, str(exc)
        apps: dict[str, list[str]] = {m.name: [] for m in members}
        for app, member in sorted(holders.items()):
            apps.setdefault(member, []).append(app)
        return {
            "member": self.member,
            "backend": self.backend.kind,
            "mode": self.config.mode,
            "joined": self.joined and self.backend.valid(),
            "error": error,
            "members": [
                {
                    "name": m.name,
                    "advertise_url": m.advertise_url,
                    "weight": m.weight,
                    "lease_age": m.lease_age,
                    "apps": apps.get(m.name, []),
                    "self": m.name == self.member,
                }
                for m in members
            ],
            "unowned": sorted(set(self.daemon.config.apps) - set(holders)),
        }
