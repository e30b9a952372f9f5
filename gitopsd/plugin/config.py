"""Configuration: a TOML file validated into frozen models, every error at once.

Validation happens in two passes. Pydantic checks the shape of the file (unknown
keys, types, durations, names); then each ``source``/``render``/``notifiers``
table is checked by the ``Options`` model of the plugin type it names, and
references (app -> cluster, app -> notifiers) are resolved. Errors read
``config.toml: apps.web.source.ref: expected a string, got an integer``.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
)

from gitopsd.core.errors import ConfigError
from gitopsd.plugin.interfaces import NotifierOptions, Options, Tools
from gitopsd.plugin.registry import TypeRegistry

DEFAULT_CONFIG_PATH = Path("/etc/gitopsd/config.toml")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def parse_duration(value: Any) -> float:
    """``"30s"``, ``"5m"``, ``"1h30m"``, ``"250ms"`` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like '30s', '5m' or '1h', got a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like '30s', '5m' or '1h', got {_type_name(value)}")
    text = value.strip()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"invalid duration {value!r}: use a number with a unit, like '30s', '5m' or '1h'")
    return total


Duration = Annotated[float, BeforeValidator(parse_duration)]
Bool = Annotated[bool, Strict()]  # TOML has real booleans: "yes" is a mistake, not True
Int = Annotated[int, Strict()]


def _check_name(value: str) -> str:
    if len(value) > 53 or not _NAME.match(value):
        raise ValueError(
            f"invalid name {value!r}: use at most 53 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebhooksConfig(_Model):
    """``[daemon.webhooks]``: secrets of the push webhook endpoints (an endpoint without one is off)."""

    github_secret_file: Path | None = None
    gitlab_token_file: Path | None = None
    gitea_secret_file: Path | None = None


class ToolsConfig(_Model):
    """``[daemon.tools]``: paths of the programs gitopsd runs (defaults: looked up on PATH)."""

    git: str = "git"
    helm: str = "helm"
    kubectl: str = "kubectl"
    kustomize: str = Field("", description="Empty: use `kubectl kustomize`.")

    def to_tools(self) -> Tools:
        return Tools(git=self.git, helm=self.helm, kubectl=self.kubectl, kustomize=self.kustomize)


class DaemonConfig(_Model):
    """``[daemon]``: process-wide settings."""

    state_dir: Path = Field(Path("/var/lib/gitopsd"), description='SQLite state, git mirrors and caches.')
    listen: str = Field("127.0.0.1:9420", description='HOST:PORT of the HTTP API, webhooks and /metrics.')
    api_token_file: Path | None = Field(None, description='File holding the bearer token for mutating API calls; without it they are refused.')
    log_format: Literal["auto", "json", "console"] = Field("auto", description='json, console, or auto (console on a TTY).')
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description='Lowest level logged.')
    default_interval: Duration = Field(180.0, description='Poll interval of apps without their own.')
    interval_jitter: float = Field(0.1, ge=0, le=1, description="Polls of different sources are spread over this fraction of the interval; apps of one source poll together.")
    shutdown_timeout: Duration = Field(30.0, description='On SIGTERM, how long in-flight work and notifier queues get.')
    render_concurrency: Int = Field(0, ge=0, description="Concurrent helm/kustomize runs; 0 = CPU count.")
    max_body_bytes: Int = Field(1 << 20, ge=1024, description="Largest accepted HTTP request body.")
    watch_config: Bool = Field(True, description="Reload when the config file changes.")
    tools: ToolsConfig = ToolsConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    strict_secret_permissions: Bool = Field(
        True, description="Refuse secret files (*_file options) that group or others can read, or that another user "
        "owns (fix: chmod 600 FILE). false relaxes it (tests only).")
    cache_dir: Path | None = Field(
        None, description="Git mirrors, extracted trees, charts and OCI layers; default: $CACHE_DIRECTORY "
        "(systemd's CacheDirectory=) or state_dir/cache.")
    cache_max_bytes: Int = Field(
        2 << 30, ge=0, description="Cache budget: above it, extracted trees and downloads no app uses are evicted, "
        "least recently used first; 0 = unlimited.")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected HOST:PORT, got {value!r}")
        return value


class SSHHop(_Model):
    """One SSH jump host."""

    host: str = Field(description='SSH server to connect to.')
    port: Int = Field(22, gt=0, lt=65536)
    user: str = Field("gitopsd", description='SSH user.')
    identity_file: Path = Field(description='Private key file.')
    known_hosts: Path = Field(description='known_hosts file; unknown host keys are refused (no trust on first use).')


class SSHConfig(SSHHop):
    """``[clusters.NAME.ssh]``: reach the API server through an SSH tunnel (optionally via jumps)."""

    jump: list[SSHHop] = Field(default_factory=list, max_length=2, description="Jump hosts, first hop first (at most 2).")


class ClusterConfig(_Model):
    """``[clusters.NAME]``: how to reach one cluster."""

    kubeconfig: Path = Field(description='kubeconfig file (tokens, client certificates, exec plugins).')
    context: str | None = Field(None, description="Context to use; default: the kubeconfig's current-context.")
    ssh: SSHConfig | None = Field(None, description='Reach the API server through an SSH tunnel.')
    max_concurrent_requests: Int = Field(32, ge=1, description="API requests in flight to this cluster at most.")
    request_timeout: Duration = Field(30.0, description='Timeout of one API request.')


class PluginTable(_Model):
    """A ``{type = "...", ...}`` table; ``options`` is validated by the type's own model."""

    type: str
    options: Any = None


class AppConfig(_Model):
    """``[apps.NAME]``: one application. This is also the ``app`` plugins receive."""

    name: str
    cluster: str = Field(description='Name of a [clusters.*] table.')
    namespace: str = Field("default", description='Set on namespaced objects that have none.')
    source: PluginTable = Field(description='Where desired state comes from: {type = ..., options of that type}.')
    render: PluginTable | None = Field(None, description='How to render it; default: auto-detect (kustomization.yaml, Chart.yaml, else plain).')
    interval: Duration | None = Field(None, description='Poll interval; default: daemon.default_interval.')
    timeout: Duration = Field(300.0, description='A sync not healthy within this fails, naming the objects.')
    prune: Bool = Field(False, description='Delete objects that left the desired state (only ones this app created).')
    self_heal: Bool = Field(True, description='Re-apply at once when the live state drifts.')
    allow_empty: Bool = Field(False, description='Allow an empty render to prune everything.')
    force_conflicts: Bool = Field(True, description='Take ownership of fields other field managers set (git wins).')
    replace_on_immutable: Bool = Field(False, description='Recreate objects whose immutable fields changed.')
    prune_on_remove: Bool = Field(False, description='When the app leaves the config, delete its objects too.')
    suspended: Bool = Field(False, description='Start suspended.')
    create_namespace: Bool = Field(
        True, description="Create the app's namespace if the manifests do not define it (never pruned)."
    )
    notify: list[str] = Field(default_factory=list, description="Notifier names that receive this app's events.")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if len(value) > 63 or not _NAME.match(value):
            raise ValueError(f"invalid namespace {value!r}: must be a DNS-1123 label")
        return value


class Config(_Model):
    """The whole validated configuration."""

    path: Path | None = None
    daemon: DaemonConfig = DaemonConfig()
    clusters: dict[str, ClusterConfig] = Field(default_factory=dict)
    notifiers: dict[str, PluginTable] = Field(default_factory=dict)
    apps: dict[str, AppConfig] = Field(default_factory=dict)

    def interval(self, app: AppConfig) -> float:
        return app.interval if app.interval is not None else self.daemon.default_interval


def default_config_path() -> Path:
    return Path(os.environ.get("GITOPSD_CONFIG") or DEFAULT_CONFIG_PATH)


def load_config(path: Path | str, types: TypeRegistry) -> Config:
    """Read and validate ``path``. Raise ConfigError with every problem found."""
    path = Path(path)
    label = path.name
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file does not exist"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{label}: invalid TOML: {exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{label}: not UTF-8 text"]) from None
    return validate_config(raw, types, label=label, path=path.resolve())


def validate_config(raw: dict[str, Any], types: TypeRegistry, *, label: str = "config", path: Path | None = None) -> Config:
    """Validate a parsed TOML document; see :func:`load_config`."""
    errors: list[str] = []
    shaped = _shape(raw, errors)
    try:
        config = Config.model_validate({**shaped, "path": path})
    except ValidationError as exc:
        errors.extend(_format_errors(exc))
        config = None
    if config is not None:
        config = _resolve(config, raw, types, errors)
    if errors:
        raise ConfigError([f"{label}: {e}" for e in dict.fromkeys(errors)])
    assert config is not None
    return config


def _shape(raw: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    """Move plugin tables' extra keys under ``options`` and put app names in, for the first pass."""
    shaped = dict(raw)
    apps = raw.get("apps")
    if isinstance(apps, dict):
        new_apps: dict[str, Any] = {}
        for name, table in apps.items():
            if not isinstance(table, dict):
                new_apps[name] = table
                continue
            try:
                _check_name(name)
            except ValueError as exc:
                errors.append(f"apps.{name}: {exc}")
            table = {**table, "name": name}
            for key in ("source", "render"):
                if isinstance(table.get(key), dict):
                    table[key] = _plugin_table(table[key])
            new_apps[name] = table
        shaped["apps"] = new_apps
    for section in ("clusters", "notifiers"):
        tables = raw.get(section)
        if isinstance(tables, dict):
            for name in tables:
                try:
                    _check_name(name)
                except ValueError as exc:
                    errors.append(f"{section}.{name}: {exc}")
    notifiers = raw.get("notifiers")
    if isinstance(notifiers, dict):
        shaped["notifiers"] = {n: _plugin_table(t) if isinstance(t, dict) else t for n, t in notifiers.items()}
    return shaped


def _plugin_table(table: dict[str, Any]) -> dict[str, Any]:
    shaped: dict[str, Any] = {"options": {k: v for k, v in table.items() if k != "type"}}
    if "type" in table:
        shaped["type"] = table["type"]
    return shaped


def _resolve(config: Config, raw: dict[str, Any], types: TypeRegistry, errors: list[str]) -> Config | None:
    """Second pass: plugin options by their own models, and references between sections."""
    apps: dict[str, AppConfig] = {}
    for name, app in config.apps.items():
        where = f"apps.{name}"
        source = _plugin_options(app.source, types.sources, f"{where}.source", "source", errors)
        render = (
            _plugin_options(app.render, types.renderers, f"{where}.render", "renderer", errors)
            if app.render is not None
            else None
        )
        if app.cluster not in config.clusters:
            errors.append(f"{where}.cluster: unknown cluster {app.cluster!r} (defined: {_names(config.clusters)})")
        for i, notifier in enumerate(app.notify):
            if notifier not in config.notifiers:
                errors.append(f"{where}.notify[{i}]: unknown notifier {notifier!r} (defined: {_names(config.notifiers)})")
        apps[name] = app.model_copy(update={"source": source, "render": render})
    notifiers = {
        name: _plugin_options(table, types.notifiers, f"notifiers.{name}", "notifier", errors)
        for name, table in config.notifiers.items()
    }
    for name, table in notifiers.items():
        opts = table.options
        if isinstance(opts, NotifierOptions):
            from gitopsd.core.events import EVENT_TYPES

            for i, event_name in enumerate(opts.events):
                if event_name not in EVENT_TYPES:
                    errors.append(f"notifiers.{name}.events[{i}]: unknown event {event_name!r}")
    if errors:
        return None
    config = config.model_copy(update={"apps": apps, "notifiers": notifiers})
    return _absolute_paths(config) if config.path is not None else config


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
        }
    )


def _plugin_options(
    table: PluginTable, registry: dict[str, Any], where: str, kind: str, errors: list[str]
) -> PluginTable:
    cls = registry.get(table.type)
    if cls is None:
        errors.append(f"{where}.type: unknown {kind} type {table.type!r} (available: {_names(registry)})")
        return table
    options_model: type[Options] = cls.Options
    try:
        options = options_model.model_validate(table.options or {})
    except ValidationError as exc:
        errors.extend(f"{where}.{e}" if not e.startswith(":") else f"{where}{e}" for e in _format_errors(exc))
        return table
    return PluginTable(type=table.type, options=options)


def _names(mapping: dict[str, Any]) -> str:
    return ", ".join(sorted(mapping)) or "none"


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


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


def _format_errors(exc: ValidationError) -> list[str]:
    """Pydantic errors -> ``dotted.key: message`` lines in our wording."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if p != "options"]
        key = ""
        for part in loc:
            if isinstance(part, int):
                key += f"[{part}]"
            elif part in ("function-after", "function-before") or str(part).startswith(("function-", "lax-", "json-")):
                continue
            else:
                key += f".{part}" if key else str(part)
        kind = err["type"]
        value = err.get("input")
        if kind == "extra_forbidden":
            message = "unknown key"
        elif kind == "missing":
            message = "missing required key"
        elif kind in _EXPECTED:
            message = f"expected {_EXPECTED[kind]}, got {_type_name(value)}"
        elif kind == "literal_error":
            message = f"{err['msg'].replace('Input should be', 'expected')}, got {value!r}"
        elif kind == "value_error":
            message = err["msg"].removeprefix("Value error, ")
        else:
            message = err["msg"]
        lines.append(f"{key}: {message}" if key else message)
    return lines
