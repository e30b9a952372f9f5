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
import types
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import Distribution, entry_points
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import pluggy
import structlog
from pluggy import HookImpl

from gitopsd.core.errors import GitopsdError
from gitopsd.core.events import Event
from gitopsd.core.models import HealthStatus, Manifest
from gitopsd.plugin import hookspecs
from gitopsd.plugin.interfaces import Generator, Notifier, Options, Renderer, Source
from gitopsd.plugin.registry import TypeRegistry

if TYPE_CHECKING:
    from gitopsd.plugin.config import Config

ENTRY_POINT_GROUP = "gitopsd"
BUILTIN_DISTRIBUTION = "gitopsd"
log = structlog.get_logger("gitopsd.plugin.manager")


class PluginError(GitopsdError):
    """A plugin could not be loaded, implements an unknown hook, or registers a duplicate type."""

    reason = "PluginError"


class PluginInfo(NamedTuple):
    """What ``gitopsd plugins`` shows about one plugin."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]
    types: dict[str, tuple[str, ...]]
    options: tuple[str, ...] = ()  # keys of its [plugins.NAME] table, if it declares options


class Hooks:
    """Typed wrappers around ``pm.hook``: the only way the core calls hooks.

    ``gitopsd_post_render``, ``gitopsd_health`` and ``gitopsd_event`` are called one
    implementation at a time, so that each receives its own plugin's ``options`` and only
    the arguments it declares. Global and per-app options come from the config last passed
    to :meth:`configure` (until then, each model's defaults).
    """

    def __init__(self, pm: pluggy.PluginManager, *, trace: bool = False):
        self._hook = pm.hook
        self._trace = trace
        self._options: Mapping[str, Options] = {}
        self._app_options: Mapping[str, Mapping[str, Options]] = {}

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

    def plugin_options(self) -> dict[str, type[Options]]:
        """Each plugin's options model, by plugin name (plugins that declare one)."""
        models: dict[str, type[Options]] = {}
        for impl in self._hook.gitopsd_plugin_options.get_hookimpls():
            model = impl.function()
            if model is None:
                continue
            if not (isinstance(model, type) and issubclass(model, Options)):
                raise PluginError(
                    f"plugin {impl.plugin_name!r}: gitopsd_plugin_options must return a subclass of "
                    f"gitopsd.Options, not {model!r}"
                )
            models[impl.plugin_name] = model
        return models

    def configure(self, config: Config) -> None:
        """Use ``config``'s plugin options from now on (the daemon calls it on every (re)load)."""
        self._options = config.plugins
        self._app_options = {name: app.plugins for name, app in config.apps.items()}

    def set_default_options(self, models: Mapping[str, type[Options]]) -> None:
        """Options used before :meth:`configure`: each model's defaults, where it has them all."""
        defaults: dict[str, Options] = {}
        for name, model in models.items():
            try:
                defaults[name] = model()
            except ValueError:  # a required field: such a plugin needs a config
                continue
        self._options = defaults

    @staticmethod
    def _impls(caller: Any) -> list[HookImpl]:
        """Implementations in pluggy's call order (last registered first, tryfirst/trylast honoured)."""
        return [i for i in reversed(caller.get_hookimpls()) if not (i.hookwrapper or i.wrapper)]

    def _options_for(self, plugin: str, app_options: Mapping[str, Options]) -> Options | None:
        """The app's options of ``plugin`` if it has them, else the global ones (None: it declares none)."""
        options = app_options.get(plugin)
        return options if options is not None else self._options.get(plugin)

    @staticmethod
    def _call(impl: HookImpl, **kwargs: Any) -> Any:
        return impl.function(**{name: kwargs[name] for name in impl.argnames})

    @contextmanager
    def _traced(self, hook: str, impls: list[HookImpl]) -> Iterator[None]:
        """Log the call like pluggy's monitor does for the other hooks (``GITOPSD_TRACE_PLUGINS``)."""
        if not self._trace:
            yield
            return
        started = time.perf_counter()
        try:
            yield
        finally:
            ms = round((time.perf_counter() - started) * 1000, 3)
            log.info("hook call", hook=hook, plugins=[i.plugin_name for i in impls], ms=ms)

    def generator_types(self) -> dict[str, type[Generator]]:
        return self._merge("generator", self._hook.gitopsd_generator_types())

    @property
    def has_post_render(self) -> bool:
        """Whether any plugin transforms rendered manifests."""
        return bool(self._hook.gitopsd_post_render.get_hookimpls())

    def post_render(self, app: Any, manifests: list[Manifest]) -> list[Manifest]:
        # Chain the implementations: each one sees the previous one's output.
        app_options: Mapping[str, Options] = getattr(app, "plugins", None) or {}
        impls = self._impls(self._hook.gitopsd_post_render)
        with self._traced("gitopsd_post_render", impls):
            for impl in impls:
                options = self._options_for(impl.plugin_name, app_options)
                result = cast("list[Manifest] | None", self._call(impl, app=app, manifests=manifests, options=options))
                if result is not None:
                    manifests = list(result)
        return manifests

    def health(self, obj: Manifest) -> HealthStatus | None:
        impls = self._impls(self._hook.gitopsd_health)
        with self._traced("gitopsd_health", impls):
            for impl in impls:
                result: HealthStatus | None = self._call(impl, obj=obj, options=self._options.get(impl.plugin_name))
                if result is not None:
                    return result
        return None

    def event(self, event: Event) -> None:
        impls = self._impls(self._hook.gitopsd_event)
        if not impls and not self._trace:
            return  # every event comes here: no context manager when no plugin listens
        app_options = self._app_options.get(event.app or "", {})
        with self._traced("gitopsd_event", impls):
            for impl in impls:
                try:
                    self._call(impl, event=event, options=self._options_for(impl.plugin_name, app_options))
                except Exception as exc:  # an observer must never break the engine
                    log.warning("event hook failed", plugin=impl.plugin_name, error=str(exc))


_HOOKABLE = (types.FunctionType, types.MethodType, staticmethod, classmethod)


class _Pluggy(pluggy.PluginManager):
    """pluggy's plugin manager, quicker at finding a module plugin's hook implementations.

    pluggy looks each name of a plugin up with ``inspect.getattr_static`` to see whether it is
    a hook implementation: for the built-in plugins' modules, 354 names (their imports too),
    about 1 % of the start. In a module only a function, method, staticmethod or classmethod
    can be one (what pluggy itself accepts), and the module's namespace says which names are:
    the others are skipped before that lookup. Hook implementations are found as before.
    """

    def parse_hookimpl_opts(self, plugin: object, name: str) -> Any:
        if isinstance(plugin, types.ModuleType) and not isinstance(vars(plugin).get(name), _HOOKABLE):
            return None
        return super().parse_hookimpl_opts(plugin, name)


def _dist_name(dist: Distribution | None) -> str:
    return dist.name if dist is not None else "?"


def _code_name(plugin: object) -> str:
    return getattr(plugin, "__name__", None) or type(plugin).__name__


class PluginManager:
    """gitopsd's plugin manager.

    Args:
        load_entry_points: Load the ``gitopsd`` entry-point group (built-ins and installed
            third-party plugins).
        builtins_only: With entry points, load only those of the ``gitopsd`` distribution
            itself: for tests that must not see whatever else is installed.
        plugins: Extra plugin objects (modules or instances) to register, after entry points:
            an iterable (each named by its ``__name__`` or class name) or a mapping of plugin
            name to object (the name its ``[plugins.NAME]`` table uses).
        disable: Entry-point names to block; defaults to ``$GITOPSD_DISABLE_PLUGINS``.
    """

    def __init__(
        self,
        *,
        load_entry_points: bool = True,
        builtins_only: bool = False,
        plugins: Iterable[object] | Mapping[str, object] = (),
        disable: Iterable[str] | None = None,
    ):
        self.pm = _Pluggy(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        # Where each plugin comes from: (distribution, version), or the entry point's Distribution,
        # read only by info(): parsing a distribution's METADATA costs more than loading the plugin.
        self._dists: dict[str, tuple[str, str] | Distribution | None] = {}
        if disable is None:
            disable = [n.strip() for n in os.environ.get("GITOPSD_DISABLE_PLUGINS", "").split(",") if n.strip()]
        for name in disable:
            self.pm.set_blocked(name)
        if load_entry_points:
            self._load_entry_points(builtins_only)
        named = plugins.items() if isinstance(plugins, Mapping) else ((_code_name(p), p) for p in plugins)
        for name, plugin in named:
            self.pm.register(plugin, name=name)
            self._dists[name] = ("(in code)", "")
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {exc.plugin!r}: {exc}") from None
        trace = os.environ.get("GITOPSD_TRACE_PLUGINS") == "1"
        if trace:
            self._trace()
        self.hooks = Hooks(self.pm, trace=trace)
        self.types = TypeRegistry(
            sources=self.hooks.source_types(),
            renderers=self.hooks.renderer_types(),
            notifiers=self.hooks.notifier_types(),
            plugins=tuple(sorted(name for name, plugin in self.pm.list_name_plugin() if plugin is not None)),
            plugin_options=self.hooks.plugin_options(),
            generator_types=self.hooks.generator_types,
        )
        self.hooks.set_default_options(self.types.plugin_options)

    def configure(self, config: Config) -> None:
        """Give hooks the plugin options of ``config`` (validated with :attr:`types`)."""
        self.hooks.configure(config)

    def _load_entry_points(self, builtins_only: bool) -> None:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if builtins_only and _dist_name(ep.dist) != BUILTIN_DISTRIBUTION:
                continue
            if self.pm.is_blocked(ep.name) or self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
                self.pm.register(plugin, name=ep.name)
            except pluggy.PluginValidationError as exc:
                raise PluginError(f"plugin {ep.name!r} from {_dist_name(ep.dist)}: {exc}") from None
            except Exception as exc:
                raise PluginError(f"plugin {ep.name!r} from {_dist_name(ep.dist)} failed to load: {exc}") from exc
            self._dists[ep.name] = ep.dist

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
            source = self._dists.get(name)
            dist, version = source if isinstance(source, tuple) else (_dist_name(source), source.version if source else "")
            options = tuple(self.types.plugin_options[name].model_fields) if name in self.types.plugin_options else ()
            result.append(PluginInfo(name, dist, version, hooks, types, options))
        return sorted(result, key=lambda p: p.name)
