"""Configuration loading: a TOML file validated into :class:`~gitopsd.plugin.config.Config`, every error at once.

Validation has two parts that always both run, so one kind of error never hides
another. Pydantic checks the shape of the file (unknown keys, types, durations,
names). Independently, on the same parsed document, each plugin table is checked
by its plugin's ``Options`` model (``source``/``render`` by the type they name,
``[notifiers.NAME]`` likewise, ``[plugins.NAME]`` and ``[apps.X.plugins.NAME]`` by
the model the plugin declares) and references (app -> cluster, app -> notifiers,
``depends_on``) are resolved. Errors read ``config.toml: apps.web.source.ref: expected a
string, got an integer`` and are grouped by the table they belong to. Appsets that need
no fetch are expanded here too (:mod:`gitopsd.plugin.appsets`).
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gitopsd.core.errors import ConfigError
from gitopsd.core.events import Severity
from gitopsd.plugin import tomlread
from gitopsd.plugin.appsets import expand_static, merge_apps
from gitopsd.plugin.config import Config, PluginTable, PluginTypes, check_name
from gitopsd.plugin.options import NotifierOptions, Options
from gitopsd.plugin.validation import (
    app_plugin_options,
    dependency_cycle,
    format_errors,
    grouped,
    name_list,
    plugin_options,
    plugin_table,
    plugin_tables,
    shape_app,
    tables,
    validate_options,
    with_effective_policy,
)


def load_config(path: Path | str, types: PluginTypes) -> Config:
    """Read and validate ``path``. Raise ConfigError with every problem found."""
    path = Path(path)
    label = path.name
    try:
        raw = tomlread.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file does not exist"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from None
    except tomlread.TOMLDecodeError as exc:
        raise ConfigError([f"{label}: invalid TOML: {exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{label}: not UTF-8 text"]) from None
    return validate_config(raw, types, label=label, path=path.resolve())


def validate_config(raw: dict[str, Any], types: PluginTypes, *, label: str = "config", path: Path | None = None) -> Config:
    """Validate a parsed TOML document; see :func:`load_config`.

    The shape check (pydantic) and the plugin/reference check (:func:`_resolve`) both run on
    every document, so a malformed interval does not hide an unknown cluster or a bad plugin
    option: the ConfigError lists everything, grouped by table (``apps.web``, ``plugins.x``, ...).
    """
    errors: list[str] = []
    shaped = _shape(raw, errors)
    resolve_errors: list[str] = []
    resolved = _resolve(shaped, types, resolve_errors)
    config: Config | None
    try:
        # The validated plugin options go in where the shape check would accept the raw table
        # anyway: one validation of every app, no copy of each afterwards.
        config = Config.model_validate({**_with_resolved(shaped, resolved), "path": path})
    except ValidationError as exc:
        errors.extend(format_errors(exc))
        config = None
    errors.extend(resolve_errors)
    if config is not None:
        _check_policies(config, errors)
    if errors:
        raise ConfigError([f"{label}: {e}" for e in grouped(dict.fromkeys(errors))])
    assert config is not None
    if config.policies or config.daemon.default_policy is not None:  # without policies every app is unrestricted
        config = config.model_copy(
            update={"apps": {name: with_effective_policy(app, config) for name, app in config.apps.items()}}
        )
    if config.appsets:
        apps, clashes = merge_apps(config.apps, expand_static(config, types, errors))
        errors.extend(clashes)
        if errors:
            raise ConfigError([f"{label}: {e}" for e in grouped(dict.fromkeys(errors))])
        config = config.model_copy(update={"apps": apps})
    return _absolute_paths(config) if config.path is not None else config


def _with_resolved(shaped: dict[str, Any], resolved: _Resolved) -> dict[str, Any]:
    """``shaped`` with the plugin tables :func:`_resolve` validated in place of the raw ones.

    Only where the raw value has the shape the models accept (a table, or absent), so the
    shape check still reports every malformed one.
    """
    out = dict(shaped)
    if isinstance(shaped.get("plugins", {}), dict):
        out["plugins"] = resolved.plugins
    notifiers = shaped.get("notifiers")
    if isinstance(notifiers, dict):
        out["notifiers"] = {name: resolved.notifiers.get(name, table) for name, table in notifiers.items()}
    apps = shaped.get("apps")
    if isinstance(apps, dict):
        out["apps"] = {name: _app_with_resolved(table, resolved.apps.get(name)) for name, table in apps.items()}
    return out


def _app_with_resolved(table: Any, update: dict[str, Any] | None) -> Any:
    if not isinstance(table, dict) or not update:
        return table
    table = dict(table)
    for key, value in update.items():
        if value is not None and (key != "plugins" or isinstance(table.get(key, {}), dict)):
            table[key] = value
    return table


def _check_policies(config: Config, errors: list[str]) -> None:
    """References to ``[policies.*]`` and what a policy needs to be usable."""
    for name, app in config.apps.items():
        if app.policy is not None and app.policy not in config.policies:
            errors.append(f"apps.{name}.policy: unknown policy {app.policy!r} (defined: {name_list(config.policies)})")
    default = config.daemon.default_policy
    if default is not None and default not in config.policies:
        errors.append(f"daemon.default_policy: unknown policy {default!r} (defined: {name_list(config.policies)})")
    for name, rules in config.policies.items():
        if rules.impersonate_groups and not rules.impersonate_user:
            errors.append(
                f"policies.{name}.impersonate_groups: needs impersonate_user "
                "(Kubernetes impersonates groups only with a user)"
            )


def _shape(raw: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    """Move plugin tables' extra keys under ``options`` and put app names in, for the first pass."""
    shaped = dict(raw)
    apps = raw.get("apps")
    if isinstance(apps, dict):
        new_apps: dict[str, Any] = {}
        for name, table in apps.items():
            if isinstance(table, dict) and "appset" in table:
                errors.append(f"apps.{name}.appset: unknown key (gitopsd sets it on apps an appset generates)")
                table = {k: v for k, v in table.items() if k != "appset"}
            new_apps[name] = shape_app(name, table, errors, f"apps.{name}") if isinstance(table, dict) else table
        shaped["apps"] = new_apps
    appsets = raw.get("appsets")
    if isinstance(appsets, dict):
        shaped["appsets"] = {
            name: {**t, "name": name, **({"generators": [plugin_table(g) if isinstance(g, dict) else g for g in t["generators"]]} if isinstance(t.get("generators"), list) else {})}
            if isinstance(t, dict) else t
            for name, t in appsets.items()
        }
    for section in ("clusters", "notifiers", "appsets", "policies", "windows"):
        tables = raw.get(section)
        if isinstance(tables, dict):
            for name in tables:
                try:
                    check_name(name)
                except ValueError as exc:
                    errors.append(f"{section}.{name}: {exc}")
    notifiers = raw.get("notifiers")
    if isinstance(notifiers, dict):
        shaped["notifiers"] = {n: plugin_table(t) if isinstance(t, dict) else t for n, t in notifiers.items()}
    return shaped


class _Resolved:
    """What the second pass produces: validated plugin options, ready to replace the raw tables."""

    def __init__(self) -> None:
        self.plugins: dict[str, Options] = {}
        self.notifiers: dict[str, PluginTable] = {}
        self.apps: dict[str, dict[str, Any]] = {}  # app name -> AppConfig field updates


def _resolve(shaped: dict[str, Any], types: PluginTypes, errors: list[str]) -> _Resolved:
    """Second pass, on the shaped document: plugin options by their own models, and references.

    It runs whether or not the shape check passed, so it must not trust the document's shape:
    anything of the wrong type was reported by the first pass and is skipped here.
    """
    resolved = _Resolved()
    clusters = tables(shaped.get("clusters"))
    notifiers = tables(shaped.get("notifiers"))
    global_raw = plugin_tables(shaped.get("plugins"), "plugins", errors)
    resolved.plugins = _global_plugin_options(global_raw, types, errors)
    for name, table in notifiers.items():
        where = f"notifiers.{name}"
        notifier = plugin_options(table, types.notifiers, where, "notifier", errors)
        if notifier is None:
            continue
        resolved.notifiers[name] = notifier
        opts = notifier.options
        if isinstance(opts, NotifierOptions):
            from gitopsd.core.events import EVENT_TYPES

            for i, event_name in enumerate(opts.events):
                if event_name not in EVENT_TYPES:
                    errors.append(f"{where}.events[{i}]: unknown event {event_name!r}")
    apps = tables(shaped.get("apps"))
    for name, app in apps.items():
        where = f"apps.{name}"
        update: dict[str, Any] = {}
        if isinstance(app.get("source"), dict):
            update["source"] = plugin_options(app["source"], types.sources, f"{where}.source", "source", errors)
        if isinstance(app.get("render"), dict):
            update["render"] = plugin_options(app["render"], types.renderers, f"{where}.render", "renderer", errors)
        cluster = app.get("cluster")
        if isinstance(cluster, str) and cluster not in clusters:
            errors.append(f"{where}.cluster: unknown cluster {cluster!r} (defined: {name_list(clusters)})")
        notify = app.get("notify")
        for i, notifier_name in enumerate(notify if isinstance(notify, list) else []):
            if isinstance(notifier_name, str) and notifier_name not in notifiers:
                errors.append(f"{where}.notify[{i}]: unknown notifier {notifier_name!r} (defined: {name_list(notifiers)})")
        update["plugins"] = app_plugin_options(
            plugin_tables(app.get("plugins"), f"{where}.plugins", errors), global_raw, resolved.plugins, types, where, errors
        )
        approval = app.get("approval")
        if isinstance(approval, dict) and isinstance(approval.get("notifier"), str):
            _check_approval_notifier(approval["notifier"], name, notifiers, resolved, f"{where}.approval.notifier", errors)
        depends_on = app.get("depends_on")
        for i, dependency in enumerate(depends_on if isinstance(depends_on, list) else []):
            if isinstance(dependency, str) and dependency not in apps:
                errors.append(f"{where}.depends_on[{i}]: unknown app {dependency!r} (defined: {name_list(apps)})")
        resolved.apps[name] = update
    graph = {
        name: [d for d in app.get("depends_on") or [] if isinstance(d, str)]
        for name, app in apps.items()
        if isinstance(app.get("depends_on"), list)
    }
    cycle = dependency_cycle(graph)
    if cycle:
        errors.append(f"apps.{cycle[0]}.depends_on: dependency cycle: {' -> '.join(cycle)}")
    return resolved


def _check_approval_notifier(
    notifier: str, app: str, notifiers: dict[str, Any], resolved: _Resolved, where: str, errors: list[str]
) -> None:
    """The approval notifier must exist and its filters must let approval requests through."""
    if notifier not in notifiers:
        errors.append(f"{where}: unknown notifier {notifier!r} (defined: {name_list(notifiers)})")
        return
    table = resolved.notifiers.get(notifier)
    options = table.options if table is not None else None
    if not isinstance(options, NotifierOptions):
        return
    if options.events and "approval-requested" not in options.events:
        errors.append(f"{where}: notifiers.{notifier}.events does not include approval-requested")
    if Severity(options.min_severity).rank > Severity.INFO.rank:
        errors.append(f"{where}: notifiers.{notifier}.min_severity drops approval requests (they are info)")
    if not any(fnmatch.fnmatchcase(app, pattern) for pattern in options.apps):
        errors.append(f"{where}: notifiers.{notifier}.apps does not match {app!r}")


def _global_plugin_options(
    tables: dict[str, dict[str, Any]], types: PluginTypes, errors: list[str]
) -> dict[str, Options]:
    """``[plugins.NAME]``: every installed plugin that declares options gets them (its defaults
    when there is no table); a table for a plugin that is not installed is an error."""
    result: dict[str, Options] = {}
    for name in tables:
        if name not in types.plugins:
            errors.append(f"plugins.{name}: no plugin {name!r} is installed (installed: {name_list(types.plugins)})")
    for name in types.plugins:
        options = validate_options(types.plugin_options.get(name, Options), tables.get(name, {}), f"plugins.{name}", errors)
        if options is not None and name in types.plugin_options:
            result[name] = options
    return result


def _absolute_paths(config: Config) -> Config:
    """Make relative paths in core sections relative to the config file's directory.

    Plugins resolve their own path options against ``PluginContext.config_dir`` the same way.
    """
    assert config.path is not None
    base = config.path.parent

    def fix(model: BaseModel) -> BaseModel:
        update: dict[str, Any] = {}
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, Path) and not value.is_absolute():
                update[name] = base / value
            elif isinstance(value, BaseModel) and not isinstance(value, Options):
                update[name] = fix(value)
            elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
                update[name] = [fix(v) for v in value]
        return model.model_copy(update=update) if update else model

    return config.model_copy(
        update={
            "daemon": fix(config.daemon),
            "clusters": {name: fix(cluster) for name, cluster in config.clusters.items()},
            "apps": {
                name: app.model_copy(update={"decrypt": fix(app.decrypt)}) if app.decrypt is not None else app
                for name, app in config.apps.items()
            },
        }
    )
