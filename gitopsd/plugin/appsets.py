"""Appsets: generators' parameter sets rendered through a template into ordinary apps.

This module is the pure part, used by config validation (static generators are expanded
when the config is loaded) and by :mod:`gitopsd.daemon.appsets` (generators that read a
repository, expanded by the daemon and the CLI after a fetch):

- :func:`build_generators` makes the generator instances of an appset, validating each
  generator table by its type's ``Options`` model (nested ones too, for ``matrix``);
- :func:`generate_apps` renders the template once per parameter set, in Jinja2's
  sandboxed environment with strict undefined, and validates each result as an app;
- :func:`merge_apps` puts generated apps next to the config's own, a name clash being an
  error naming both sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import PurePosixPath
from typing import Any

from pydantic import ValidationError

from gitopsd.core.errors import ConfigError
from gitopsd.plugin.config import (
    AppConfig,
    AppSetConfig,
    Config,
    PluginTable,
    PluginTypes,
    check_name,
)
from gitopsd.plugin.interfaces import Generator, GeneratorContext, Params, PluginContext
from gitopsd.plugin.validation import format_errors, name_list, resolve_app, shape_app


class PathParam(str):
    """A repository path as a template parameter: ``{{ path }}`` is the path itself.

    ``{{ path.basename }}`` (last segment), ``{{ path.basename_normalized }}`` (lower-case,
    ``_`` and ``.`` as ``-``: a valid app name), ``{{ path.segments[1] }}``,
    ``{{ path.dirname }}`` and, for files, ``{{ path.filename }}``.
    """

    filename: str

    def __new__(cls, value: str, filename: str = "") -> PathParam:
        self = super().__new__(cls, value)
        self.filename = filename
        return self

    @property
    def basename(self) -> str:
        return PurePosixPath(str(self)).name

    @property
    def basename_normalized(self) -> str:
        return self.basename.lower().replace("_", "-").replace(".", "-")

    @property
    def segments(self) -> list[str]:
        return [p for p in str(self).split("/") if p]

    @property
    def dirname(self) -> str:
        parent = str(PurePosixPath(str(self)).parent)
        return "" if parent == "." else parent


def cluster_params(config: Config) -> dict[str, dict[str, Any]]:
    """``{name: {"name": name, "labels": {...}}}`` of every configured cluster."""
    return {name: {"name": name, "labels": dict(c.labels)} for name, c in config.clusters.items()}


def build_generator(
    table: Any,
    where: str,
    *,
    appset: str,
    types: PluginTypes,
    clusters: dict[str, dict[str, Any]],
    plugin: PluginContext | None,
) -> Generator:
    """One generator from a ``{type = ..., ...}`` table (a dict, or a PluginTable whose
    options are validated already). Raises ConfigError naming ``where``."""

    type_name: Any
    if isinstance(table, PluginTable):
        type_name, options = table.type, table.options
    elif isinstance(table, Mapping):
        type_name, options = table.get("type"), {k: v for k, v in table.items() if k != "type"}
    else:
        raise ConfigError([f"{where}: expected a table like {{type = \"list\", ...}}"])
    if not isinstance(type_name, str):
        raise ConfigError([f"{where}.type: missing required key"])
    cls = types.generators.get(type_name)
    if cls is None:
        raise ConfigError([f"{where}.type: unknown generator type {type_name!r} (available: {name_list(types.generators)})"])
    if not isinstance(options, cls.Options):
        try:
            options = cls.Options.model_validate(options or {})
        except ValidationError as exc:
            raise ConfigError([f"{where}.{e}" for e in format_errors(exc)]) from None

    def build(child: Any, child_where: str) -> Generator:
        return build_generator(child, child_where, appset=appset, types=types, clusters=clusters, plugin=plugin)

    return cls(options, GeneratorContext(appset=appset, where=where, clusters=clusters, build=build, plugin=plugin))


def build_generators(
    appset: AppSetConfig, config: Config, types: PluginTypes, plugin: PluginContext | None = None
) -> list[Generator]:
    """The generators of ``appset``; ConfigError with every problem found."""
    clusters = cluster_params(config)
    errors: list[str] = []
    result = []
    for i, table in enumerate(appset.generators):
        try:
            result.append(
                build_generator(
                    table, f"appsets.{appset.name}.generators[{i}]", appset=appset.name, types=types,
                    clusters=clusters, plugin=plugin,
                )
            )
        except ConfigError as exc:
            errors.extend(exc.errors)
    if errors:
        raise ConfigError(errors)
    return result


@cache
def _environment() -> Any:
    """Jinja2's sandboxed environment, strict about undefined names (imported on first use)."""
    import jinja2.sandbox

    return jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


def _render_value(value: Any, params: Params, where: str, errors: list[str]) -> Any:
    if isinstance(value, str):
        if "{" not in value:
            return value
        import jinja2

        try:
            return _environment().from_string(value).render(params)
        except jinja2.UndefinedError as exc:
            errors.append(
                f"{where}: undefined placeholder in {value!r}: {exc.message} (parameters: {', '.join(sorted(params)) or 'none'})"
            )
        except jinja2.TemplateError as exc:
            errors.append(f"{where}: template error: {exc}")
        return value
    if isinstance(value, dict):
        return {k: _render_value(v, params, f"{where}.{k}", errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_value(v, params, f"{where}[{i}]", errors) for i, v in enumerate(value)]
    return value


def render_template(appset: AppSetConfig, params: Params) -> dict[str, Any]:
    """The template of ``appset`` rendered with ``params``; ConfigError naming each bad key."""
    errors: list[str] = []
    rendered = _render_value(appset.template, params, f"appsets.{appset.name}.template", errors)
    if errors:
        raise ConfigError(errors)
    return dict(rendered)


def generate_apps(
    appset: AppSetConfig, params_list: list[Params], config: Config, types: PluginTypes
) -> dict[str, AppConfig]:
    """One validated app per parameter set; ConfigError with every problem found.

    The apps carry ``appset`` (this appset's name) and its ``prune_on_remove``.
    """

    where = f"appsets.{appset.name}.template"
    errors: list[str] = []
    apps: dict[str, AppConfig] = {}
    first_seen: dict[str, int] = {}
    for index, params in enumerate(params_list):
        try:
            table = render_template(appset, params)
        except ConfigError as exc:
            errors.extend(exc.errors)
            if len(errors) > 20:
                break
            continue
        name = table.pop("name", None)
        if not isinstance(name, str):
            errors.append(f"{where}.name: missing required key: the name of each generated app, e.g. \"{{{{ path.basename }}}}\"")
            break
        label = f"{where} (app {name!r})"
        try:
            check_name(name)
        except ValueError as exc:
            errors.append(f"{where}.name: {exc}")
            continue
        if name in first_seen:
            errors.append(
                f"appsets.{appset.name}: generates app {name!r} twice (parameter sets #{first_seen[name] + 1} and #{index + 1})"
            )
            continue
        first_seen[name] = index
        for key in ("appset", "prune_on_remove"):
            if key in table:
                errors.append(f"{where}.{key}: set on the appset, not in its template" if key == "prune_on_remove" else f"{where}.{key}: set by gitopsd")
        table["appset"], table["prune_on_remove"] = appset.name, appset.prune_on_remove
        shaped = shape_app(name, table, errors, label)
        try:
            app = AppConfig.model_validate(shaped)
        except ValidationError as exc:
            errors.extend(f"{label}.{e}" for e in format_errors(exc))
            continue
        app_errors: list[str] = []
        apps[name] = resolve_app(app, config, types, app_errors, label)
        errors.extend(app_errors)
    if errors:
        raise ConfigError(list(dict.fromkeys(errors)))
    return apps


def expand(generators: list[Generator]) -> list[Params]:
    """The parameter sets of several generators, one after the other."""
    return [params for generator in generators for params in generator.generate()]


def needs_fetch(generators: list[Generator]) -> bool:
    return any(g.needs_fetch for g in generators)


def merge_apps(
    own: Mapping[str, AppConfig], generated: Mapping[str, Mapping[str, AppConfig]]
) -> tuple[dict[str, AppConfig], list[str]]:
    """The config's own apps plus every appset's; errors name both sources of a clash."""
    apps = dict(own)
    source = {name: f"[apps.{name}]" for name in own}
    errors = []
    for appset, generated_apps in generated.items():
        for name, app in generated_apps.items():
            if name in apps:
                errors.append(f"appsets.{appset}: generated app {name!r} clashes with the app of the same name from {source[name]}")
                continue
            apps[name] = app
            source[name] = f"appsets.{appset}"
    return apps, errors


def expand_static(config: Config, types: PluginTypes, errors: list[str]) -> dict[str, dict[str, AppConfig]]:
    """Build every appset's generators (validating them) and expand the ones that need no fetch."""
    generated: dict[str, dict[str, AppConfig]] = {}
    for name, appset in config.appsets.items():
        try:
            generators = build_generators(appset, config, types)
            if not needs_fetch(generators):
                generated[name] = generate_apps(appset, expand(generators), config, types)
        except ConfigError as exc:
            errors.extend(exc.errors)
    return generated


def with_generated(config: Config, generated: Mapping[str, Mapping[str, AppConfig]]) -> Config:
    """``config`` whose apps of the appsets in ``generated`` are replaced by those; ConfigError on a clash."""
    if not generated:
        return config
    own = {n: a for n, a in config.apps.items() if a.appset not in generated}
    apps, errors = merge_apps(own, generated)
    if errors:
        raise ConfigError(errors)
    return config.model_copy(update={"apps": apps})


def describe(value: Any) -> Any:
    """Parameters as plain data (for ``gitopsd check`` and events)."""
    if isinstance(value, Mapping):
        return {k: describe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [describe(v) for v in value]
    if isinstance(value, PathParam):
        return str(value)
    return value
