"""The plugin manager: one per daemon or CLI invocation, never a module global.

Load order: every module of the ``gitopsd`` entry-point group (the built-ins are
registered there too, exactly like third-party plugins), then plugins passed in
code (tests), then ``check_pending()`` so a misspelled hookimpl is an error.
``GITOPSD_DISABLE_PLUGINS=name,...`` blocks entry points by name.
``GITOPSD_TRACE_PLUGINS=1`` logs every hook call with its duration.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, cast

import pluggy
import structlog

from gitopsd.core.errors import GitopsdError
from gitopsd.core.events import Event
from gitopsd.core.models import HealthStatus, Manifest
from gitopsd.plugin import hookspecs
from gitopsd.plugin.interfaces import Generator, Notifier, Renderer, Source
from gitopsd.plugin.registry import TypeRegistry

ENTRY_POINT_GROUP = "gitopsd"
BUILTIN_DISTRIBUTION = "gitopsd"
log = structlog.get_logger("gitopsd.plugin.manager")


class PluginError(GitopsdError):
    """A plugin could not be loaded, implements an unknown hook, or registers a duplicate type."""

    reason = "PluginError"


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """What ``gitopsd plugins`` shows about one plugin."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]
    types: dict[str, tuple[str, ...]] = field(default_factory=dict)


class Hooks:
    """Typed wrappers around ``pm.hook``: the only way the core calls hooks."""

    def __init__(self, pm: pluggy.PluginManager):
        self._hook = pm.hook

    def _merge(self, kind: str, results: list[dict[str, Any] | None]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for result in results:
            for name, cls in (result or {}).items():
                if name in merged and merged[name] is not cls:
                    raise PluginError(
                        f"{kind} type {name!r} is registered twice: by {merged[name].__module__} "
                        f"and by {cls.__module__}"
                    )
                merged[name] = cls
        return merged

    def source_types(self) -> dict[str, type[Source]]:
        return self._merge("source", self._hook.gitopsd_source_types())

    def renderer_types(self) -> dict[str, type[Renderer]]:
        return self._merge("renderer", self._hook.gitopsd_renderer_types())

    def notifier_types(self) -> dict[str, type[Notifier]]:
        return self._merge("notifier", self._hook.gitopsd_notifier_types())

    def generator_types(self) -> dict[str, type[Generator]]:
        return self._merge("generator", self._hook.gitopsd_generator_types())

    @property
    def has_post_render(self) -> bool:
        """Whether any plugin transforms rendered manifests."""
        return bool(self._hook.gitopsd_post_render.get_hookimpls())

    def post_render(self, app: Any, manifests: list[Manifest]) -> list[Manifest]:
        # Chain the implementations: each one sees the previous one's output.
        for impl in reversed(self._hook.gitopsd_post_render.get_hookimpls()):
            result = cast("list[Manifest] | None", impl.function(app=app, manifests=manifests))
            if result is not None:
                manifests = list(result)
        return manifests

    def health(self, obj: Manifest) -> HealthStatus | None:
        result: HealthStatus | None = self._hook.gitopsd_health(obj=obj)
        return result

    def event(self, event: Event) -> None:
        for impl in self._hook.gitopsd_event.get_hookimpls():
            try:
                impl.function(event=event)
            except Exception as exc:  # an observer must never break the engine
                log.warning("event hook failed", plugin=impl.plugin_name, error=str(exc))


class PluginManager:
    """gitopsd's plugin manager.

    Args:
        load_entry_points: Load the ``gitopsd`` entry-point group (built-ins and installed
            third-party plugins).
        builtins_only: With entry points, load only those of the ``gitopsd`` distribution
            itself: for tests that must not see whatever else is installed.
        plugins: Extra plugin objects (modules or instances) to register, after entry points.
        disable: Entry-point names to block; defaults to ``$GITOPSD_DISABLE_PLUGINS``.
    """

    def __init__(
        self,
        *,
        load_entry_points: bool = True,
        builtins_only: bool = False,
        plugins: Iterable[object] = (),
        disable: Iterable[str] | None = None,
    ):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self._dists: dict[str, tuple[str, str]] = {}
        if disable is None:
            disable = [n.strip() for n in os.environ.get("GITOPSD_DISABLE_PLUGINS", "").split(",") if n.strip()]
        for name in disable:
            self.pm.set_blocked(name)
        if load_entry_points:
            self._load_entry_points(builtins_only)
        for plugin in plugins:
            name = getattr(plugin, "__name__", None) or type(plugin).__name__
            self.pm.register(plugin, name=name)
            self._dists[name] = ("(in code)", "")
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {exc.plugin!r}: {exc}") from None
        if os.environ.get("GITOPSD_TRACE_PLUGINS") == "1":
            self._trace()
        self.hooks = Hooks(self.pm)
        self.types = TypeRegistry(
            sources=self.hooks.source_types(),
            renderers=self.hooks.renderer_types(),
            notifiers=self.hooks.notifier_types(),
            generators=self.hooks.generator_types(),
        )

    def _load_entry_points(self, builtins_only: bool) -> None:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else ""
            if builtins_only and dist != BUILTIN_DISTRIBUTION:
                continue
            if self.pm.is_blocked(ep.name) or self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
                self.pm.register(plugin, name=ep.name)
            except pluggy.PluginValidationError as exc:
                raise PluginError(f"plugin {ep.name!r} from {dist}: {exc}") from None
            except Exception as exc:
                raise PluginError(f"plugin {ep.name!r} from {dist} failed to load: {exc}") from exc
            self._dists[ep.name] = (dist, version)

    def _trace(self) -> None:
        started: list[float] = []  # a stack: hook calls nest

        def before(hook_name: str, impls: Any, kwargs: Any) -> None:
            started.append(time.perf_counter())

        def after(outcome: Any, hook_name: str, impls: Any, kwargs: Any) -> None:
            duration_ms = (time.perf_counter() - started.pop()) * 1000
            log.info("hook call", hook=hook_name, plugins=[i.plugin_name for i in impls], ms=round(duration_ms, 3))

        self.pm.add_hookcall_monitoring(before, after)

    def info(self) -> list[PluginInfo]:
        """Every registered plugin with its distribution, version, hooks and the types it provides."""
        result = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or []))
            types: dict[str, tuple[str, ...]] = {}
            for hook_name, kind in (
                ("gitopsd_source_types", "sources"),
                ("gitopsd_renderer_types", "renderers"),
                ("gitopsd_notifier_types", "notifiers"),
                ("gitopsd_generator_types", "generators"),
            ):
                func = getattr(plugin, hook_name, None)
                if func is not None and hook_name in hooks:
                    types[kind] = tuple(sorted((func() or {}).keys()))
            dist, version = self._dists.get(name, ("?", ""))
            result.append(PluginInfo(name, dist, version, hooks, types))
        return sorted(result, key=lambda p: p.name)
