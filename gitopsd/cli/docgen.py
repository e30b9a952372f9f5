"""Reference docs generated from the code: the config options and the hooks.

``python -m gitopsd.cli.docgen`` rewrites docs/configuration.md and docs/hooks.md; a test
fails when the committed files differ from what the code generates.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from gitopsd.core.events import EVENT_TYPES
from gitopsd.plugin import config as cfg
from gitopsd.plugin import hookspecs
from gitopsd.plugin.interfaces import NotifierOptions
from gitopsd.plugin.manager import PluginManager

_SECTIONS: list[tuple[str, type[BaseModel], set[str]]] = [
    ("[daemon]", cfg.DaemonConfig, {"tools", "webhooks"}),
    ("[daemon.tools]", cfg.ToolsConfig, set()),
    ("[daemon.webhooks]", cfg.WebhooksConfig, set()),
    ("[daemon.coordination]", cfg.CoordinationConfig, set()),
    ("[clusters.NAME]", cfg.ClusterConfig, {"ssh"}),
    ("[clusters.NAME.ssh]", cfg.SSHConfig, set()),
    ("[apps.NAME]", cfg.AppConfig, {"name", "appset"}),
    ("[appsets.NAME]", cfg.AppSetConfig, {"name"}),
    ("ignore_differences = [{...}] (in [apps.NAME])", cfg.IgnoreDifference, set()),
    ("decrypt = {...} (in [apps.NAME])", cfg.DecryptConfig, set()),
    ("[policies.NAME]", cfg.PolicyConfig, set()),
    ("[apps.NAME] approval = { ... }", cfg.ApprovalConfig, set()),
    ("[windows.NAME]", cfg.WindowConfig, set()),
]


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "none"
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, str | Path):
        return f'`"{value}"`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value!r}`"


def _type_name(annotation: Any) -> str:
    """A reader's name for a type: ``duration``, ``list[str]``, ``Path or None``, ..."""
    metadata = getattr(annotation, "__metadata__", ())
    for item in metadata:
        func = getattr(item, "func", None)
        if func is cfg.parse_duration:
            return "duration"
        if func is not None and "range" in func.__name__:
            return "semver range"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if metadata:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _type(field: FieldInfo) -> str:
    if field.metadata:  # pydantic moves Annotated metadata (validators) onto the field
        return _type_name(typing.Annotated[(field.annotation, *field.metadata)])
    return _type_name(field.annotation)


def _table(model: type[BaseModel], skip: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    rows = ["| option | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | {_type(field)} | {_default(field)} | {description} |")
    return rows


def configuration_md(plugins: PluginManager) -> str:
    """docs/configuration.md: every option of the core and of each built-in plugin type."""
    out = [
        "# Configuration reference",
        "",
        "Generated from the config models by `python -m gitopsd.cli.docgen`; do not edit by hand.",
        "Durations are written `\"30s\"`, `\"5m\"`, `\"1h30m\"` or as seconds. Relative paths are",
        "relative to the config file. Secrets are only read from `*_file` options.",
        "",
    ]
    for title, model, skip in _SECTIONS:
        out += [f"## {title}", "", inspect.cleandoc(model.__doc__ or ""), "", *_table(model, skip), ""]
    out += ["## [plugins.NAME]", "", cfg.Config.model_fields["plugins"].description or "", ""]
    for plugin_name, options in sorted(plugins.types.plugin_options.items()):
        doc = inspect.cleandoc(options.__doc__ or "").split("\n\n")[0]
        out += [f"### `[plugins.{plugin_name}]`", "", doc, "", *_table(options), ""]
    if not plugins.types.plugin_options:
        out += ["No built-in plugin takes options; see [plugins.md](plugins.md) for declaring them.", ""]
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("Sources (`source = {type = ...}`)", plugins.types.sources),
        ("Renderers (`render = {type = ...}`)", plugins.types.renderers),
        ("Notifiers (`[notifiers.NAME]`, `type = ...`)", plugins.types.notifiers),
        ("Appset generators (`generators = [{type = ...}]`)", plugins.types.generators),
    ]
    for title, registry in kinds:
        out += [f"## {title}", ""]
        for type_name, type_cls in sorted(registry.items()):
            doc = inspect.cleandoc(type_cls.__doc__ or "").split("\n\n")[0]
            out += [f"### `{type_name}`", "", doc, ""]
            skip = set(NotifierOptions.model_fields) if issubclass(type_cls.Options, NotifierOptions) else set()
            out += [*_table(type_cls.Options, skip), ""]
    out += ["### Options every notifier accepts", "", *_table(NotifierOptions), ""]
    out += ["## Event names (for `events = [...]`)", ""]
    for name, event_cls in sorted(EVENT_TYPES.items()):
        out.append(f"- `{name}` ({event_cls.default_severity}): {inspect.cleandoc(event_cls.__doc__ or '')}")
    return "\n".join(out) + "\n"


def hooks_md() -> str:
    """docs/hooks.md: every hook with its signature and full docstring."""
    out = [
        "# Hook reference",
        "",
        "Generated from `gitopsd/plugin/hookspecs.py` by `python -m gitopsd.cli.docgen`; do not edit by hand.",
        "",
        inspect.cleandoc(hookspecs.__doc__ or ""),
        "",
    ]
    for name, func in inspect.getmembers(hookspecs, inspect.isfunction):
        if not name.startswith("gitopsd_"):
            continue
        signature = str(inspect.signature(func)).replace("'", "")
        out += [f"## `{name}{signature}`", "", inspect.cleandoc(func.__doc__ or ""), ""]
    return "\n".join(out) + "\n"


def generate(root: Path) -> dict[Path, str]:
    """The generated files under ``root`` and their content."""
    plugins = PluginManager(builtins_only=True)
    return {root / "docs" / "configuration.md": configuration_md(plugins), root / "docs" / "hooks.md": hooks_md()}


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    for path, text in generate(root).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
