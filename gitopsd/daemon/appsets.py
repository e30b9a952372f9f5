"""Appsets whose generators read a repository: expanded at start, on every poll and on a push.

Static appsets (``list``, ``clusters``, ``matrix`` of those) are expanded when the config
is loaded (:mod:`gitopsd.plugin.appsets`). The others need a fetch: the daemon's
:class:`AppSetController` refreshes each one at start, every appset ``interval`` and at
once on a push webhook for its repository, and applies the change of its app set through
:meth:`gitopsd.daemon.supervisor.Daemon.reload` (which starts added apps, stops removed ones
and prunes a removed app's objects when it has ``prune_on_remove``, which generated apps
take from their appset).

The guard: an appset that suddenly generates zero apps, or would remove more than its
``max_removals``, removes nothing (its new apps are still added) and emits ``appset-guard``.
It applies to config reloads too.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol

import anyio
import structlog
from anyio.abc import TaskGroup

from gitopsd.core import events as ev
from gitopsd.core.errors import ConfigError, GitopsdError, SourceError
from gitopsd.core.events import Event
from gitopsd.engine.stages import Workspace
from gitopsd.plugin.appsets import (
    build_generators,
    expand,
    generate_apps,
    needs_fetch,
    with_generated,
)
from gitopsd.plugin.config import AppConfig, AppSetConfig, Config
from gitopsd.plugin.interfaces import Generator, Params
from gitopsd.plugin.manager import PluginManager
from gitopsd.plugin.registry import TypeRegistry


class AppSetHost(Protocol):
    """What the controller needs of the daemon (:class:`gitopsd.daemon.supervisor.Daemon`)."""

    plugins: PluginManager
    workspace: Workspace
    config: Config
    reload_lock: anyio.Lock
    """Held while the daemon's config changes: a refresh and a reload never interleave."""

    def emit(self, event: Event) -> None: ...

    async def reload(self, new: Config) -> dict[str, list[str]]: ...

log = structlog.get_logger("gitopsd.appsets")


def is_dynamic(appset: AppSetConfig, config: Config, types: TypeRegistry) -> bool:
    """Whether ``appset`` needs a fetch to expand (its generators were validated at load)."""
    return needs_fetch(build_generators(appset, config, types))


def guard(appset: AppSetConfig, current: Mapping[str, AppConfig], new: Mapping[str, AppConfig]) -> tuple[dict[str, AppConfig], list[str]]:
    """The apps to run for ``appset`` and the removals the guard blocked (empty: none).

    Blocked when the appset had apps and now generates none, or when it would remove more
    than ``max_removals`` of them; the apps it would remove then stay.
    """
    removed = sorted(current.keys() - new.keys())
    if removed and (not new or len(removed) > appset.allowed_removals(len(current))):
        return {**new, **{name: current[name] for name in removed}}, removed
    return dict(new), []


async def expand_all(config: Config, plugins: PluginManager, *, workspace: Workspace | None = None) -> Config:
    """``config`` with the appsets that need a fetch expanded (what the CLI runs).

    Raises ConfigError or SourceError naming the appset.
    """
    dynamic = {n: a for n, a in config.appsets.items() if is_dynamic(a, config, plugins.types)}
    if not dynamic:
        return config
    workspace = workspace or Workspace.create(config, plugins)
    generated: dict[str, dict[str, AppConfig]] = {}
    for name, appset in dynamic.items():
        generators = build_generators(appset, config, plugins.types, workspace.ctx)
        try:
            for generator in generators:
                await generator.refresh()
            generated[name] = generate_apps(appset, expand(generators), config, plugins.types)
        except SourceError as exc:
            raise SourceError(f"appsets.{name}: {exc}", reason=exc.reason) from None
        finally:
            for generator in generators:
                await generator.aclose()
    return with_generated(config, generated)


class _Loop:
    """One appset that needs fetching, as the daemon runs it."""

    __slots__ = ("appset", "generators", "params", "scope", "wake")

    def __init__(self, appset: AppSetConfig, generators: list[Generator]) -> None:
        self.appset = appset
        self.generators = generators
        self.params: list[Params] | None = None
        self.wake = anyio.Event()
        self.scope = anyio.CancelScope()


class AppSetController:
    """The daemon's appsets that need a fetch: polls them and applies their app-set changes."""

    def __init__(self, daemon: AppSetHost):
        self.daemon = daemon
        self.loops: dict[str, _Loop] = {}
        self._tg: TaskGroup | None = None
        self._guarded: dict[str, tuple[str, ...]] = {}

    @property
    def types(self) -> TypeRegistry:
        return self.daemon.plugins.types

    def _emit_guard(self, appset: AppSetConfig, blocked: list[str], previous: int, generated: int) -> None:
        key = tuple(blocked)
        if self._guarded.get(appset.name) == key:
            return
        self._guarded[appset.name] = key
        if not blocked:
            return
        why = "generates no apps" if generated == 0 else f"would remove {len(blocked)} of {previous} apps (max_removals = {appset.max_removals!r})"
        log.warning("appset guard: nothing removed", appset=appset.name, removed=blocked)
        self.daemon.emit(
            ev.AppSetGuard.make(
                reason="TooManyRemovals" if generated else "NoApps",
                message=f"appset {appset.name} {why}: nothing removed ({', '.join(blocked[:10])}{' ...' if len(blocked) > 10 else ''} kept)",
                data={"appset": appset.name, "removed": blocked, "previous": previous, "generated": generated},
            )
        )

    def _failed(self, appset: str, errors: list[str], reason: str = "AppSetFailed") -> None:
        log.error("appset not expanded; its apps stay", appset=appset, errors=errors)
        self.daemon.emit(
            ev.AppSetFailed.make(
                reason=reason,
                message=f"appset {appset} not expanded; its apps stay as they were: " + "; ".join(errors[:5]),
                data={"appset": appset, "errors": errors},
            )
        )

    def guarded(self, old: Config, new: Config) -> Config:
        """``new`` with the guard applied to every appset ``old`` has too (emitting appset-guard)."""
        apps = dict(new.apps)
        for name, appset in new.appsets.items():
            if name not in old.appsets:
                continue
            current = {n: a for n, a in old.apps.items() if a.appset == name}
            generated = {n: a for n, a in new.apps.items() if a.appset == name}
            kept, blocked = guard(appset, current, generated)
            self._emit_guard(appset, blocked, len(current), len(generated))
            for app_name in blocked:
                if app_name in apps:  # a static app took the name: the config's own wins
                    continue
                apps[app_name] = kept[app_name]
        return new.model_copy(update={"apps": apps}) if apps != new.apps else new

    # -- start, reload -------------------------------------------------------------------

    async def start(self, config: Config) -> Config:
        """Build and refresh every appset that needs a fetch; ``config`` with their apps.

        An appset that fails is reported (``appset-failed``) and retried at its interval.
        """
        generated: dict[str, dict[str, AppConfig]] = {}
        for name, appset in config.appsets.items():
            loop = self._make_loop(appset, config)
            if loop is None:
                continue
            self.loops[name] = loop
            apps = await self._generate(loop, config)
            if apps is not None:
                generated[name] = apps
        try:
            return with_generated(config, generated)
        except ConfigError as exc:
            self._failed(", ".join(generated), exc.errors, "NameClash")
            return config

    def _make_loop(self, appset: AppSetConfig, config: Config) -> _Loop | None:
        generators = build_generators(appset, config, self.types, self.daemon.workspace.ctx)
        if not needs_fetch(generators):
            return None
        return _Loop(appset, generators)

    async def _generate(self, loop: _Loop, config: Config, *, force: bool = True) -> dict[str, AppConfig] | None:
        """Refresh ``loop``'s generators; its apps, or None when unchanged (unless ``force``) or failed."""
        name = loop.appset.name
        try:
            changed = False
            for generator in loop.generators:
                changed = await generator.refresh() or changed
            if not changed and not force and loop.params is not None:
                return None
            params = expand(loop.generators)
            apps = generate_apps(loop.appset, params, config, self.types)
        except ConfigError as exc:
            self._failed(name, exc.errors)
            return None
        except GitopsdError as exc:
            self._failed(name, [str(exc)], exc.reason)
            return None
        loop.params = params
        return apps

    def expand_known(self, new: Config) -> Config:
        """``new`` (just loaded from the file) with the apps of its appsets that need a fetch,
        from their last fetch (rendered with the new template), and the guard applied.

        An appset whose generators changed keeps its current apps until its next refresh.
        Raises ConfigError (the reload fails) when the new template does not render.
        """
        old = self.daemon.config
        generated: dict[str, dict[str, AppConfig]] = {}
        for name, appset in new.appsets.items():
            if not is_dynamic(appset, new, self.types):
                continue
            loop = self.loops.get(name)
            if loop is not None and loop.params is not None and loop.appset.generators == appset.generators:
                generated[name] = generate_apps(appset, loop.params, new, self.types)
            elif name in old.appsets:
                generated[name] = {n: a for n, a in old.apps.items() if a.appset == name}
        return self.guarded(old, with_generated(new, generated))

    async def reconfigure(self) -> None:
        """After a reload: stop loops of appsets gone or changed, start new ones (refreshing at once)."""
        config = self.daemon.config
        for name in list(self.loops):
            appset = config.appsets.get(name)
            if appset is None or appset.generators != self.loops[name].appset.generators:
                gone = self.loops.pop(name)
                gone.scope.cancel()
                for generator in gone.generators:
                    await generator.aclose()
            elif appset != self.loops[name].appset:
                self.loops[name].appset = appset
        for name, appset in config.appsets.items():
            if name in self.loops:
                continue
            new_loop = self._make_loop(appset, config)
            if new_loop is not None:
                self.loops[name] = new_loop
                new_loop.wake.set()  # refresh at once
                if self._tg is not None:
                    self._tg.start_soon(self._run_loop, new_loop, name=f"appset:{name}")

    # -- polling -------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll every appset that needs a fetch until cancelled."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for name, loop in self.loops.items():
                    tg.start_soon(self._run_loop, loop, name=f"appset:{name}")
                await anyio.sleep_forever()
        finally:
            self._tg = None
            with anyio.CancelScope(shield=True):
                for loop in self.loops.values():
                    for generator in loop.generators:
                        await generator.aclose()

    async def _run_loop(self, loop: _Loop) -> None:
        with loop.scope:
            while True:
                interval = loop.appset.interval or self.daemon.config.daemon.default_interval
                with anyio.move_on_after(interval):
                    await loop.wake.wait()
                loop.wake = anyio.Event()
                try:
                    await self.refresh(loop.appset.name)
                except Exception:
                    log.exception("appset refresh crashed", appset=loop.appset.name)

    async def refresh(self, name: str, *, force: bool = False) -> None:
        """Refresh one appset now and apply the change of its app set."""
        loop = self.loops.get(name)
        if loop is None:
            return
        apps = await self._generate(loop, self.daemon.config, force=force or loop.params is None)
        if apps is None:
            return
        async with self.daemon.reload_lock:
            old = self.daemon.config
            try:
                new = self.guarded(old, with_generated(old, {name: apps}))
            except ConfigError as exc:
                self._failed(name, exc.errors, "NameClash")
                return
            if new.apps == old.apps:
                return
            try:
                summary = await self.daemon.reload(new)
            except ConfigError as exc:
                self._failed(name, exc.errors)
                return
        log.info("appset expanded", appset=name, apps=len(apps), **summary)

    def push_targets(self) -> list[tuple[str, str, str]]:
        """``(appset, url, ref)`` of every repository an appset reads (for push webhooks)."""
        return [(name, url, ref) for name, loop in self.loops.items() for g in loop.generators for url, ref in g.repositories()]

    def poke(self, names: list[str]) -> None:
        """A push changed the repositories of these appsets: refresh them now."""
        now = time.monotonic()
        for name in names:
            loop = self.loops.get(name)
            if loop is not None:
                for generator in loop.generators:
                    generator.invalidate(now)
                loop.wake.set()
