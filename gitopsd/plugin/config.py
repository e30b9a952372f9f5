"""Configuration: a TOML file validated into frozen models, every error at once.

Validation has two parts that always both run, so one kind of error never hides
another. Pydantic checks the shape of the file (unknown keys, types, durations,
names). Independently, on the same parsed document, each plugin table is checked
by its plugin's ``Options`` model (``source``/``render`` by the type they name,
``[notifiers.NAME]`` likewise, ``[plugins.NAME]`` and ``[apps.X.plugins.NAME]`` by
the model the plugin declares) and references (app -> cluster, app -> notifiers)
are resolved. Errors read ``config.toml: apps.web.source.ref: expected a string,
got an integer`` and are grouped by the table they belong to.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Collection, Container, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from gitopsd.core.errors import ConfigError
from gitopsd.plugin.options import NotifierOptions, Options, Tools

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
Bool = Annotated[bool, Strict()]
"""A boolean option: TOML has real booleans, so ``"yes"`` is a mistake, not True (``gitopsd.Bool``)."""
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
    sops: str = Field("sops", description="Decrypts SOPS-encrypted manifests of apps with `decrypt`.")

    def to_tools(self) -> Tools:
        return Tools(git=self.git, helm=self.helm, kubectl=self.kubectl, kustomize=self.kustomize, sops=self.sops)


class CoordinationConfig(_Model):
    """``[daemon.coordination]``: several gitopsd members share the apps through etcd or Kubernetes Leases.

    Absent (the default), gitopsd runs every app itself, as a single bastion. See
    docs/operations.md, "Running several bastions".
    """

    backend: Literal["etcd", "kubernetes"] = Field(description='"etcd" (v3 JSON gateway) or "kubernetes" (coordination.k8s.io/v1 Leases).')
    endpoints: list[str] = Field(default_factory=list, description='etcd: client URLs, e.g. ["https://10.0.0.1:2379"]; tried in turn.')
    ca_file: Path | None = Field(None, description="etcd: CA bundle that signs the servers' certificates.")
    cert_file: Path | None = Field(None, description="etcd: client certificate (TLS client authentication).")
    key_file: Path | None = Field(None, description="etcd: the client certificate's private key.")
    username: str | None = Field(None, description="etcd: user for etcd authentication (with password_file).")
    password_file: Path | None = Field(None, description="etcd: file holding the user's password.")
    cluster: str | None = Field(None, description="kubernetes: the [clusters.*] entry whose API server holds the Leases.")
    namespace: str = Field("gitopsd-system", description="kubernetes: namespace of the Lease objects (must exist).")
    member: str = Field("", description="This member's name, unique among members; empty: the host name.")
    mode: Literal["shard", "standby"] = Field("shard", description='"shard": apps spread over live members (rendezvous hashing); "standby": one leader runs every app.')
    lease_ttl: Duration = Field(10.0, ge=1.0, description="A member that has not renewed its lease for this long is gone; its apps move.")
    advertise_url: str = Field("", description="This member's API URL (e.g. http://10.0.0.5:9420), for fan-out and `gitopsd status`.")
    weight: float = Field(1.0, gt=0, description="shard: this member's relative share of the apps.")
    prefix: str = Field("/gitopsd", description="etcd: key prefix; members of one installation share it.")

    @model_validator(mode="before")
    @classmethod
    def _default_member(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("member"):
            return {**data, "member": socket.gethostname().lower()}
        return data

    @model_validator(mode="after")
    def _backend_settings(self) -> CoordinationConfig:
        if self.backend == "etcd" and not self.endpoints:
            raise ValueError('backend "etcd" needs endpoints = ["https://HOST:2379", ...]')
        if self.backend == "kubernetes" and not self.cluster:
            raise ValueError('backend "kubernetes" needs cluster = "NAME" (a [clusters.*] entry)')
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


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
    coordination: CoordinationConfig | None = Field(None, description="Share the apps with other members (etcd or Kubernetes Leases); absent: run every app here.")

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
    labels: dict[str, str] = Field(default_factory=dict, description="Labels the `clusters` appset generator selects on, e.g. `{env = \"prod\"}`.")


class PluginTable(_Model):
    """A ``{type = "...", ...}`` table; ``options`` is validated by the type's own model."""

    type: str
    options: Any = None


class IgnoreDifference(_Model):
    """One ``ignore_differences`` entry: fields of matching objects that are neither compared nor applied."""

    kind: str = Field(description="Kind of the objects (e.g. Deployment).")
    group: str | None = Field(None, description="API group; default: any.")
    name: str | None = Field(None, description="Object name; default: every object of the kind.")
    namespace: str | None = Field(None, description="Object namespace; default: any.")
    json_pointers: list[str] = Field(
        default_factory=list, description='RFC 6901 pointers to the fields (e.g. "/spec/replicas").'
    )
    managers: list[str] = Field(
        default_factory=list,
        description="Field managers (e.g. kube-controller-manager): the fields they own in the live object are ignored too.",
    )

    @field_validator("json_pointers")
    @classmethod
    def _pointers(cls, value: list[str]) -> list[str]:
        for pointer in value:
            if not pointer.startswith("/") or pointer == "/":
                raise ValueError(f"invalid JSON pointer {pointer!r}: it must start with '/' and name a field")
            if pointer.split("/")[1] in ("apiVersion", "kind", "metadata"):
                if not pointer.startswith(("/metadata/labels/", "/metadata/annotations/")):
                    raise ValueError(f"JSON pointer {pointer!r}: only labels and annotations of metadata can be ignored")
        return value


class DecryptConfig(_Model):
    """``decrypt``: decrypt SOPS-encrypted manifests (and kustomize input files) before apply."""

    provider: Literal["sops"] = Field(description='Only "sops".')
    age_key_file: Path | None = Field(None, description="age identities file (SOPS_AGE_KEY_FILE).")
    gpg_home: Path | None = Field(None, description="GnuPG home holding the PGP keys (GNUPGHOME).")


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
    plugins: dict[str, Any] = Field(
        default_factory=dict,
        description="`[apps.NAME.plugins.PLUGIN]`: this app's overrides of `[plugins.PLUGIN]`, merged over it "
        "key by key. Once loaded: the options every plugin's hooks see for this app.",
    )
    appset: str = Field("", description="Set by gitopsd on apps an [appsets.*] table generated: its name.")
    depends_on: list[str] = Field(
        default_factory=list,
        description="Apps that must be Synced and Healthy at their current revision before this one syncs.",
    )
    ignore_differences: list[IgnoreDifference] = Field(
        default_factory=list, description="Fields that are neither drift nor applied over (e.g. replicas an HPA sets)."
    )
    decrypt: DecryptConfig | None = Field(
        None, description='Decrypt SOPS-encrypted files: {provider = "sops", age_key_file = "..."}.'
    )

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if len(value) > 63 or not _NAME.match(value):
            raise ValueError(f"invalid namespace {value!r}: must be a DNS-1123 label")
        return value


def _parse_max_removals(value: Any) -> int | str:
    if isinstance(value, bool):
        raise ValueError("expected a count or a percentage like '20%', got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("max_removals cannot be negative")
        return value
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?%", value.strip()) and float(value.strip()[:-1]) <= 100:
        return value.strip()
    raise ValueError(f"expected a count or a percentage like '20%', got {value!r}")


class AppSetConfig(_Model):
    """``[appsets.NAME]``: many apps from one template, one per parameter set the generators produce.

    ``template`` is an ``[apps.*]`` table (plus ``name``) whose strings may hold Jinja2
    placeholders (``{{ path.basename }}``, ``{{ cluster.name }}``, ...); see docs/appsets.md.
    """

    name: str
    generators: list[PluginTable] = Field(min_length=1, description="Generator tables `{type = ..., options}`; the apps of all of them together.")
    template: dict[str, Any] = Field(description="An app table (with `name`) whose strings may contain `{{ ... }}` placeholders.")
    prune_on_remove: Bool = Field(False, description="Delete the objects of a generated app that disappears (otherwise they stay).")
    max_removals: Annotated[int | str, BeforeValidator(_parse_max_removals)] = Field(
        "20%", description="Most apps one change may remove (a count or a percentage); more, or all, removes nothing and reports `appset-guard`."
    )
    interval: Duration | None = Field(None, description="Poll interval of the repositories its generators read; default: daemon.default_interval.")

    def allowed_removals(self, current: int) -> int:
        """How many of ``current`` generated apps one change may remove."""
        if isinstance(self.max_removals, int):
            return self.max_removals
        return int(current * float(self.max_removals[:-1]) / 100)


class Config(_Model):
    """The whole validated configuration."""

    path: Path | None = None
    daemon: DaemonConfig = DaemonConfig()
    clusters: dict[str, ClusterConfig] = Field(default_factory=dict)
    notifiers: dict[str, PluginTable] = Field(default_factory=dict)
    apps: dict[str, AppConfig] = Field(default_factory=dict)
    plugins: dict[str, Any] = Field(
        default_factory=dict,
        description="`[plugins.NAME]`: options of the installed plugin NAME (its entry-point name), validated by "
        "the model the plugin declares with the `gitopsd_plugin_options` hook and passed to its hooks. A plugin "
        "that declares none takes no keys; a table for a plugin that is not installed is an error. Apps override "
        "keys in `[apps.APP.plugins.NAME]`. Once loaded: each declaring plugin's validated options.",
    )
    appsets: dict[str, AppSetConfig] = Field(default_factory=dict)

    def interval(self, app: AppConfig) -> float:
        return app.interval if app.interval is not None else self.daemon.default_interval


class PluginTypes(Protocol):
    """The plugin types config validation looks names up in, by kind.

    :class:`gitopsd.plugin.registry.TypeRegistry` is the real one; each value is a plugin
    class whose ``Options`` model validates its table.
    """

    @property
    def sources(self) -> Mapping[str, Any]: ...

    @property
    def renderers(self) -> Mapping[str, Any]: ...

    @property
    def notifiers(self) -> Mapping[str, Any]: ...

    @property
    def plugins(self) -> Collection[str]:
        """Names of the installed plugins."""
        ...

    @property
    def plugin_options(self) -> Mapping[str, type[Options]]:
        """The options model of each plugin that declares one."""
        ...

    @property
    def generators(self) -> Mapping[str, Any]:
        """Appset generator types (``gitopsd_generator_types``)."""
        ...


def default_config_path() -> Path:
    return Path(os.environ.get("GITOPSD_CONFIG") or DEFAULT_CONFIG_PATH)


def load_config(path: Path | str, types: PluginTypes) -> Config:
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


def validate_config(raw: dict[str, Any], types: PluginTypes, *, label: str = "config", path: Path | None = None) -> Config:
    """Validate a parsed TOML document; see :func:`load_config`.

    The shape check (pydantic) and the plugin/reference check (:func:`_resolve`) both run on
    every document, so a malformed interval does not hide an unknown cluster or a bad plugin
    option: the ConfigError lists everything, grouped by table (``apps.web``, ``plugins.x``, ...).
    """
    errors: list[str] = []
    shaped = _shape(raw, errors)
    config: Config | None
    try:
        config = Config.model_validate({**shaped, "path": path})
    except ValidationError as exc:
        errors.extend(_format_errors(exc))
        config = None
    resolved = _resolve(shaped, types, errors)
    if errors:
        raise ConfigError([f"{label}: {e}" for e in _grouped(dict.fromkeys(errors))])
    assert config is not None
    apps = {name: app.model_copy(update=resolved.apps[name]) for name, app in config.apps.items()}
    config = config.model_copy(update={"apps": apps, "notifiers": resolved.notifiers, "plugins": resolved.plugins})
    if config.appsets:
        from gitopsd.plugin.appsets import expand_static, merge_apps

        apps, clashes = merge_apps(config.apps, expand_static(config, types, errors))
        errors.extend(clashes)
        if errors:
            raise ConfigError([f"{label}: {e}" for e in _grouped(dict.fromkeys(errors))])
        config = config.model_copy(update={"apps": apps})
    return _absolute_paths(config) if config.path is not None else config


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
            new_apps[name] = _shape_app(name, table, errors, f"apps.{name}") if isinstance(table, dict) else table
        shaped["apps"] = new_apps
    appsets = raw.get("appsets")
    if isinstance(appsets, dict):
        shaped["appsets"] = {
            name: {**t, "name": name, **({"generators": [_plugin_table(g) if isinstance(g, dict) else g for g in t["generators"]]} if isinstance(t.get("generators"), list) else {})}
            if isinstance(t, dict) else t
            for name, t in appsets.items()
        }
    for section in ("clusters", "notifiers", "appsets"):
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


def _shape_app(name: str, table: dict[str, Any], errors: list[str], where: str) -> dict[str, Any]:
    """One ``[apps.NAME]`` table for the first pass: the name in, plugin tables shaped."""
    try:
        _check_name(name)
    except ValueError as exc:
        errors.append(f"{where}: {exc}")
    table = {**table, "name": name}
    for key in ("source", "render"):
        if isinstance(table.get(key), dict):
            table[key] = _plugin_table(table[key])
    return table


def _plugin_table(table: dict[str, Any]) -> dict[str, Any]:
    shaped: dict[str, Any] = {"options": {k: v for k, v in table.items() if k != "type"}}
    if "type" in table:
        shaped["type"] = table["type"]
    return shaped


@dataclass
class _Resolved:
    """What the second pass produces: validated plugin options, ready to replace the raw tables."""

    plugins: dict[str, Options] = field(default_factory=dict)
    notifiers: dict[str, PluginTable] = field(default_factory=dict)
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)  # app name -> AppConfig field updates


def _resolve(shaped: dict[str, Any], types: PluginTypes, errors: list[str]) -> _Resolved:
    """Second pass, on the shaped document: plugin options by their own models, and references.

    It runs whether or not the shape check passed, so it must not trust the document's shape:
    anything of the wrong type was reported by the first pass and is skipped here.
    """
    resolved = _Resolved()
    clusters = _tables(shaped.get("clusters"))
    notifiers = _tables(shaped.get("notifiers"))
    global_raw = _plugin_tables(shaped.get("plugins"), "plugins", errors)
    resolved.plugins = _global_plugin_options(global_raw, types, errors)
    for name, table in notifiers.items():
        where = f"notifiers.{name}"
        notifier = _plugin_options(table, types.notifiers, where, "notifier", errors)
        if notifier is None:
            continue
        resolved.notifiers[name] = notifier
        opts = notifier.options
        if isinstance(opts, NotifierOptions):
            from gitopsd.core.events import EVENT_TYPES

            for i, event_name in enumerate(opts.events):
                if event_name not in EVENT_TYPES:
                    errors.append(f"{where}.events[{i}]: unknown event {event_name!r}")
    apps = _tables(shaped.get("apps"))
    for name, app in apps.items():
        where = f"apps.{name}"
        update: dict[str, Any] = {}
        if isinstance(app.get("source"), dict):
            update["source"] = _plugin_options(app["source"], types.sources, f"{where}.source", "source", errors)
        if isinstance(app.get("render"), dict):
            update["render"] = _plugin_options(app["render"], types.renderers, f"{where}.render", "renderer", errors)
        cluster = app.get("cluster")
        if isinstance(cluster, str) and cluster not in clusters:
            errors.append(f"{where}.cluster: unknown cluster {cluster!r} (defined: {_names(clusters)})")
        notify = app.get("notify")
        for i, notifier_name in enumerate(notify if isinstance(notify, list) else []):
            if isinstance(notifier_name, str) and notifier_name not in notifiers:
                errors.append(f"{where}.notify[{i}]: unknown notifier {notifier_name!r} (defined: {_names(notifiers)})")
        update["plugins"] = _app_plugin_options(
            _plugin_tables(app.get("plugins"), f"{where}.plugins", errors), global_raw, resolved.plugins, types, where, errors
        )
        depends_on = app.get("depends_on")
        for i, dependency in enumerate(depends_on if isinstance(depends_on, list) else []):
            if isinstance(dependency, str) and dependency not in apps:
                errors.append(f"{where}.depends_on[{i}]: unknown app {dependency!r} (defined: {_names(apps)})")
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


def _global_plugin_options(
    tables: dict[str, dict[str, Any]], types: PluginTypes, errors: list[str]
) -> dict[str, Options]:
    """``[plugins.NAME]``: every installed plugin that declares options gets them (its defaults
    when there is no table); a table for a plugin that is not installed is an error."""
    result: dict[str, Options] = {}
    for name in tables:
        if name not in types.plugins:
            errors.append(f"plugins.{name}: no plugin {name!r} is installed (installed: {_names(types.plugins)})")
    for name in types.plugins:
        options = _validate_options(types.plugin_options.get(name, Options), tables.get(name, {}), f"plugins.{name}", errors)
        if options is not None and name in types.plugin_options:
            result[name] = options
    return result


def _app_plugin_options(
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
            errors.append(f"{where}.plugins.{name}: no plugin {name!r} is installed (installed: {_names(types.plugins)})")
            continue
        model = types.plugin_options.get(name, Options)
        merged = {**global_raw.get(name, {}), **table}
        options = _validate_options(model, merged, f"{where}.plugins.{name}", errors, only=table.keys())
        if options is not None and name in types.plugin_options:
            result[name] = options
    return result


def _tables(value: Any) -> dict[str, dict[str, Any]]:
    """The entries of a ``{name: table}`` section that are tables (others are shape errors)."""
    if not isinstance(value, dict):
        return {}
    return {name: table for name, table in value.items() if isinstance(table, dict)}


def _plugin_tables(value: Any, where: str, errors: list[str]) -> dict[str, dict[str, Any]]:
    """``[plugins.NAME]`` tables (or an app's); the shape check accepts any value, so check here."""
    if not isinstance(value, dict):
        if value is not None:
            errors.append(f"{where}: expected a table, got {_type_name(value)}")
        return {}
    for name, table in value.items():
        if not isinstance(table, dict):
            errors.append(f"{where}.{name}: expected a table, got {_type_name(table)}")
    return _tables(value)


def _grouped(errors: Iterable[str]) -> list[str]:
    """Errors grouped by the table they belong to (``apps.web``, ``daemon``), in order within one."""
    return sorted(errors, key=lambda e: e.split(":", 1)[0].split(".")[:2])


def _resolve_app(app: AppConfig, config: Config, types: PluginTypes, errors: list[str], where: str) -> AppConfig:
    """An app an appset generated, with its plugin options validated and its references checked."""
    source = _plugin_options(app.source.model_dump(), types.sources, f"{where}.source", "source", errors)
    render = (
        _plugin_options(app.render.model_dump(), types.renderers, f"{where}.render", "renderer", errors)
        if app.render is not None
        else None
    )
    if app.cluster not in config.clusters:
        errors.append(f"{where}.cluster: unknown cluster {app.cluster!r} (defined: {_names(config.clusters)})")
    for i, notifier in enumerate(app.notify):
        if notifier not in config.notifiers:
            errors.append(f"{where}.notify[{i}]: unknown notifier {notifier!r} (defined: {_names(config.notifiers)})")
    global_raw = {name: options.model_dump() for name, options in config.plugins.items()}
    plugins = _app_plugin_options(
        _plugin_tables(app.plugins, f"{where}.plugins", errors), global_raw, config.plugins, types, where, errors
    )
    return app.model_copy(update={"source": source, "render": render, "plugins": plugins})


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


def _plugin_options(
    table: dict[str, Any], registry: Mapping[str, Any], where: str, kind: str, errors: list[str]
) -> PluginTable | None:
    """A shaped ``{type, options}`` table validated by the ``Options`` of the type it names."""
    type_name = table.get("type")
    if not isinstance(type_name, str):
        return None  # missing or not a string: the shape check reported it
    cls = registry.get(type_name)
    if cls is None:
        errors.append(f"{where}.type: unknown {kind} type {type_name!r} (available: {_names(registry)})")
        return None
    options = _validate_options(cls.Options, table.get("options") or {}, where, errors)
    return PluginTable(type=type_name, options=options) if options is not None else None


def _validate_options(
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


def _names(mapping: Iterable[str]) -> str:
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
            message = f"expected {_EXPECTED[kind]}, got {_type_name(value)}"
        elif kind == "literal_error":
            message = f"{err['msg'].replace('Input should be', 'expected')}, got {value!r}"
        elif kind == "value_error":
            message = err["msg"].removeprefix("Value error, ")
        else:
            message = err["msg"]
        items.append((key, message))
    return items
