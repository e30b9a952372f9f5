"""Checks shared by config loading and appset expansion: plugin options, references, error wording.

Every function appends human-readable ``dotted.key: message`` strings to an ``errors`` list
instead of raising, so one pass reports every problem.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from gitopsd.plugin.config import AppConfig, Config, PluginTable, PluginTypes, check_name, type_name
from gitopsd.plugin.options import Options


def plugin_table(table: dict[str, Any]) -> dict[str, Any]:
    shaped: dict[str, Any] = {"options": {k: v for k, v in table.items() if k != "type"}}
    if "type" in table:
        shaped["type"] = table["type"]
    return shaped


def shape_app(name: str, table: dict[str, Any], errors: list[str], where: str) -> dict[str, Any]:
    """One ``[apps.NAME]`` table for the first pass: the name in, plugin tables shaped."""
    try:
        check_name(name)
    except ValueError as exc:
        errors.append(f"{where}: {exc}")
    table = {**table, "name": name}
    for key in ("source", "render"):
        if isinstance(table.get(key), dict):
            table[key] = plugin_table(table[key])
    return table


def plugin_options(
    table: dict[str, Any], registry: Mapping[str, Any], where: str, kind: str, errors: list[str]
) -> PluginTable | None:
    """A shaped ``{type, options}`` table validated by the ``Options`` of the type it names."""
    type_name = table.get("type")
    if not isinstance(type_name, str):
        return None  # missing or not a string: the shape check reported it
    cls = registry.get(type_name)
    if cls is None:
        errors.append(f"{where}.type: unknown {kind} type {type_name!r} (available: {name_list(registry)})")
        return None
    options = validate_options(cls.Options, table.get("options") or {}, where, errors)
    return PluginTable(type=type_name, options=options) if options is not None else None


def validate_options(
    model: type[Options], values: Any, where: str, errors: list[str], only: Container[str] | None = None
) -> Options | None:
    """``values`` validated by ``model``; errors go to ``errors`` prefixed with ``where``.

    With ``only``, errors about other top-level keys are left out (they belong to another table).
    """
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        for key, message in _error_items(exc):
            if only is not None and key and re.split(r"[.\[]", key, maxsplit=1)[0] not in only:
                continue
            path = f"{where}{key}" if key.startswith("[") else f"{where}.{key}" if key else where
            errors.append(f"{path}: {message}")
        return None


def name_list(mapping: Iterable[str]) -> str:
    return ", ".join(sorted(mapping)) or "none"


_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "list_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "path_type": "a path string",
}


def format_errors(exc: ValidationError) -> list[str]:
    """Pydantic errors -> ``dotted.key: message`` lines in our wording."""
    return [f"{key}: {message}" if key else message for key, message in _error_items(exc)]


def _error_items(exc: ValidationError) -> list[tuple[str, str]]:
    """Pydantic errors -> ``(dotted.key, message)`` in our wording; the key is empty at the root."""
    items = []
    for err in exc.errors(include_url=False):
        key = ""
        for part in err["loc"]:
            if isinstance(part, int):
                key += f"[{part}]"
            elif part == "[key]" or str(part).startswith(("function-", "lax-", "json-")):
                continue  # pydantic's own steps (a dict key's validator, a validator function), not keys
            else:
                key += f".{part}" if key else str(part)
        kind = err["type"]
        value = err.get("input")
        if kind == "extra_forbidden":
            message = "unknown key"
        elif kind == "missing":
            message = "missing required key"
        elif kind in _EXPECTED:
            message = f"expected {_EXPECTED[kind]}, got {type_name(value)}"
        elif kind == "literal_error":
            message = f"{err['msg'].replace('Input should be', 'expected')}, got {value!r}"
        elif kind == "value_error":
            message = err["msg"].removeprefix("Value error, ")
        else:
            message = err["msg"]
        items.append((key, message))
    return items


def tables(value: Any) -> dict[str, dict[str, Any]]:
    """The entries of a ``{name: table}`` section that are tables (others are shape errors)."""
    if not isinstance(value, dict):
        return {}
    return {name: table for name, table in value.items() if isinstance(table, dict)}


def plugin_tables(value: Any, where: str, errors: list[str]) -> dict[str, dict[str, Any]]:
    """``[plugins.NAME]`` tables (or an app's); the shape check accepts any value, so check here."""
    if not isinstance(value, dict):
        if value is not None:
            errors.append(f"{where}: expected a table, got {type_name(value)}")
        return {}
    for name, table in value.items():
        if not isinstance(table, dict):
            errors.append(f"{where}.{name}: expected a table, got {type_name(table)}")
    return tables(value)


def grouped(errors: Iterable[str]) -> list[str]:
    """Errors grouped by the table they belong to (``apps.web``, ``daemon``), in order within one."""
    return sorted(errors, key=lambda e: e.split(":", 1)[0].split(".")[:2])


def app_plugin_options(
    tables: dict[str, dict[str, Any]],
    global_raw: dict[str, dict[str, Any]],
    global_options: dict[str, Options],
    types: PluginTypes,
    where: str,
    errors: list[str],
) -> dict[str, Options]:
    """``[apps.X.plugins.NAME]``: merged key by key over ``[plugins.NAME]``, validated by the same model.

    Only errors about keys the app table sets are reported here; the global table's own
    problems are reported once, under ``plugins.NAME``.
    """
    result = dict(global_options)
    for name, table in tables.items():
        if name not in types.plugins:
            errors.append(f"{where}.plugins.{name}: no plugin {name!r} is installed (installed: {name_list(types.plugins)})")
            continue
        model = types.plugin_options.get(name, Options)
        merged = {**global_raw.get(name, {}), **table}
        options = validate_options(model, merged, f"{where}.plugins.{name}", errors, only=table.keys())
        if options is not None and name in types.plugin_options:
            result[name] = options
    return result


def resolve_app(app: AppConfig, config: Config, types: PluginTypes, errors: list[str], where: str) -> AppConfig:
    """An app an appset generated, with its plugin options validated and its references checked."""
    source = plugin_options(app.source.model_dump(), types.sources, f"{where}.source", "source", errors)
    render = (
        plugin_options(app.render.model_dump(), types.renderers, f"{where}.render", "renderer", errors)
        if app.render is not None
        else None
    )
    if app.cluster not in config.clusters:
        errors.append(f"{where}.cluster: unknown cluster {app.cluster!r} (defined: {name_list(config.clusters)})")
    for i, notifier in enumerate(app.notify):
        if notifier not in config.notifiers:
            errors.append(f"{where}.notify[{i}]: unknown notifier {notifier!r} (defined: {name_list(config.notifiers)})")
    global_raw = {name: options.model_dump() for name, options in config.plugins.items()}
    plugins = app_plugin_options(
        plugin_tables(app.plugins, f"{where}.plugins", errors), global_raw, config.plugins, types, where, errors
    )
    if app.policy is not None and app.policy not in config.policies:
        errors.append(f"{where}.policy: unknown policy {app.policy!r} (defined: {name_list(config.policies)})")
    resolved = app.model_copy(update={"source": source, "render": render, "plugins": plugins})
    return with_effective_policy(resolved, config)


def with_effective_policy(app: AppConfig, config: Config) -> AppConfig:
    """``app`` limited by its own policy, else ``daemon.default_policy``, else unrestricted."""
    policy = app.policy or config.daemon.default_policy
    return app.with_policy(policy, config.policies.get(policy) if policy else None)


def dependency_cycle(graph: dict[str, list[str]]) -> list[str]:
    """A cycle in ``depends_on`` as ``[a, b, a]`` (first found, in name order), or ``[]``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = 1
        path.append(name)
        for dep in graph.get(name, []):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[name] = 2
        return []

    for name in sorted(graph):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return []
