"""The configuration's models: ``[daemon]``, ``[clusters.*]``, ``[apps.*]``, ``[appsets.*]``, ...

Frozen pydantic models; :mod:`gitopsd.plugin.loading` reads a TOML file into them and
:mod:`gitopsd.plugin.validation` holds the checks it shares with appset expansion.

No ``from __future__ import annotations`` here: with it, pydantic compiles and evaluates
every field's annotation from its text when the models are defined, a few milliseconds of
every start (docs/operations.md, "Start-up and readiness").
"""

import os
import re
import socket
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)

from gitopsd.plugin.options import Options, Tools, empty_list

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
        raise ValueError(f"expected a duration like '30s', '5m' or '1h', got {type_name(value)}")
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


def type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def check_name(value: str) -> str:
    if len(value) > 53 or not _NAME.match(value):
        raise ValueError(
            f"invalid name {value!r}: use at most 53 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


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
    endpoints: list[str] = Field(default_factory=empty_list, description='etcd: client URLs, e.g. ["https://10.0.0.1:2379"]; tried in turn.')
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
    def _backend_settings(self) -> "CoordinationConfig":
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
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    read_token_file: Path | None = Field(None, description="File holding a bearer token for read-only access: the app status API and the web page. The API token reads too; with neither, they are refused.")
    metrics_require_token: Bool = Field(False, description="Require the read (or API) token for /metrics too. /healthz and /readyz stay open.")
    ui: Bool = Field(True, description="Serve the status web page at /ui/ (login with the read or the API token).")
    instance: str = Field(
        "gitopsd",
        description="Names this installation in the owner annotation `gitopsd.dev/owner: INSTANCE/APP` "
        "and in inventory records, so two installations on one cluster never touch each other's objects. "
        "Read at start; changing it makes every object look foreign.",
    )
    inventory_namespace: str = Field(
        "gitopsd-system",
        description="Namespace (in each target cluster) of the inventory records "
        "`gitopsd-inventory.INSTANCE.APP`; created on first use, written with the daemon's own credentials.",
    )
    default_policy: str | None = Field(
        None, description="Name of the [policies.*] table applied to apps without `policy`; none: unrestricted."
    )
    coordination: CoordinationConfig | None = Field(None, description="Share the apps with other members (etcd or Kubernetes Leases); absent: run every app here.")

    @field_validator("instance")
    @classmethod
    def _instance(cls, value: str) -> str:
        if len(value) > 63 or not _NAME.match(value):
            raise ValueError(
                f"invalid instance {value!r}: use at most 63 lower-case letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
        return value

    @field_validator("inventory_namespace")
    @classmethod
    def _inventory_namespace(cls, value: str) -> str:
        if len(value) > 63 or not _NAME.match(value):
            raise ValueError(f"invalid namespace {value!r}: must be a DNS-1123 label")
        return value
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

    jump: list[SSHHop] = Field(default_factory=empty_list, max_length=2, description="Jump hosts, first hop first (at most 2).")


class ClusterConfig(_Model):
    """``[clusters.NAME]``: how to reach one cluster."""

    kubeconfig: Path = Field(description='kubeconfig file (tokens, client certificates, exec plugins).')
    context: str | None = Field(None, description="Context to use; default: the kubeconfig's current-context.")
    ssh: SSHConfig | None = Field(None, description='Reach the API server through an SSH tunnel.')
    max_concurrent_requests: Int = Field(32, ge=1, description="API requests in flight to this cluster at most.")
    request_timeout: Duration = Field(30.0, description='Timeout of one API request.')
    labels: dict[str, str] = Field(default_factory=dict, description="Labels the `clusters` appset generator selects on, e.g. `{env = \"prod\"}`.")
    max_concurrent_syncs: Int = Field(
        0,
        ge=0,
        description="Apps of this cluster in their apply phase at once; the others wait their turn, in "
        "arrival order, holding only their render (an app waiting for health gives its turn away). "
        "0: twice `max_concurrent_requests`.",
    )


class PolicyConfig(_Model):
    """``[policies.NAME]``: what the apps that use it may change, and as whom (see docs/operations.md).

    Checked on every render before any write: a render that breaks it fails, naming each
    offending object and the rule.
    """

    namespaces: list[str] = Field(
        default_factory=empty_list,
        description='Globs of the namespaces namespaced objects may target, e.g. ["team-a", "team-a-*"]; empty: none.',
    )
    cluster_kinds: list[str] = Field(
        default_factory=empty_list,
        description='Cluster-scoped kinds allowed, as "Kind" (any group) or "group/Kind"; default none. '
        "The app's own Namespace (create_namespace) is allowed when it matches `namespaces`.",
    )
    deny_kinds: list[str] = Field(
        default_factory=empty_list,
        description='Kinds refused anywhere, as "Kind" (any group) or "group/Kind", '
        'e.g. ["rbac.authorization.k8s.io/ClusterRoleBinding"].',
    )
    impersonate_user: str | None = Field(
        None,
        description="Every request for the app's objects carries `Impersonate-User: USER`, so the "
        "cluster's RBAC decides (the daemon's credentials need the `impersonate` verb).",
    )
    impersonate_groups: list[str] = Field(
        default_factory=empty_list, description="`Impersonate-Group` headers sent with `impersonate_user`."
    )

    @field_validator("cluster_kinds", "deny_kinds")
    @classmethod
    def _kinds(cls, value: list[str]) -> list[str]:
        for kind in value:
            name = kind.rpartition("/")[2]
            if not name or not name[0].isupper() or " " in kind:
                raise ValueError(f'invalid kind {kind!r}: use "Kind" or "group/Kind", e.g. "rbac.authorization.k8s.io/ClusterRole"')
        return value


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
        default_factory=empty_list, description='RFC 6901 pointers to the fields (e.g. "/spec/replicas").'
    )
    managers: list[str] = Field(
        default_factory=empty_list,
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


class ApprovalConfig(_Model):
    """``approval = { notifier = "ops", ... }`` of an app: a new revision waits for a person's yes.

    The request goes to the named notifier (a Slack notifier with a bot token, for the
    Approve / Reject buttons); ``gitopsd approve APP REVISION`` and ``gitopsd reject APP
    REVISION`` decide it without Slack.
    """

    notifier: str = Field(description="Notifier that posts the approval request (a Slack notifier with token_file).")
    approvers: list[str] = Field(
        default_factory=empty_list,
        description="Who may approve from Slack: user IDs (U...), user-group IDs (S...) or group handles (@oncall). "
        "Empty: the notifier's `allowed` list; if that is empty too, only the API and CLI can decide.",
    )
    timeout: Duration = Field(14400.0, description="An undecided request is rejected after this long (the app stays at its revision).")


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
    notify: list[str] = Field(default_factory=empty_list, description="Notifier names that receive this app's events.")
    plugins: dict[str, Any] = Field(
        default_factory=dict,
        description="`[apps.NAME.plugins.PLUGIN]`: this app's overrides of `[plugins.PLUGIN]`, merged over it "
        "key by key. Once loaded: the options every plugin's hooks see for this app.",
    )
    appset: str = Field("", description="Set by gitopsd on apps an [appsets.*] table generated: its name.")
    depends_on: list[str] = Field(
        default_factory=empty_list,
        description="Apps that must be Synced and Healthy at their current revision before this one syncs.",
    )
    ignore_differences: list[IgnoreDifference] = Field(
        default_factory=empty_list, description="Fields that are neither drift nor applied over (e.g. replicas an HPA sets)."
    )
    decrypt: DecryptConfig | None = Field(
        None, description='Decrypt SOPS-encrypted files: {provider = "sops", age_key_file = "..."}.'
    )
    adopt: Bool = Field(
        False,
        description="Take over objects that already exist without a gitopsd owner annotation "
        '(per object: annotate the manifest `gitopsd.dev/adopt: "true"`). Off: such objects are refused.',
    )
    prune_namespaces: Bool = Field(False, description="Let prune delete Namespaces that left the render (and everything in them).")
    policy: str | None = Field(None, description="Name of the [policies.*] table that limits this app; default: daemon.default_policy.")

    approval: ApprovalConfig | None = Field(
        None, description="Hold each new revision until a person approves it (Slack buttons, `gitopsd approve`)."
    )

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if len(value) > 63 or not _NAME.match(value):
            raise ValueError(f"invalid namespace {value!r}: must be a DNS-1123 label")
        return value

    # The policy resolved from [policies.*] and daemon.default_policy when the config is loaded
    # (with_policy) is kept in pydantic's private-attribute dict, ``__pydantic_private__``
    # (None: unrestricted), which model_copy, == and pickling carry like any private attribute.
    # It is not declared with PrivateAttr: a declared private attribute makes pydantic call
    # back into Python to set its default on every AppConfig it validates (about 19 M
    # instructions of the start at 1000 apps, most apps having no policy at all).

    def with_policy(self, name: str | None, rules: PolicyConfig | None) -> "AppConfig":
        """A copy limited by the policy ``name`` (``rules``), or unrestricted with None."""
        private = self.__pydantic_private__ or {}
        if name == private.get("_policy_name") and rules is private.get("_policy_rules"):
            return self  # frozen: nothing to copy
        copy = self.model_copy()
        limited = {"_policy_name": name, "_policy_rules": rules} if name is not None or rules is not None else None
        object.__setattr__(copy, "__pydantic_private__", limited)
        return copy

    @property
    def effective_policy(self) -> tuple[str, PolicyConfig] | None:
        """(name, rules) of the policy that limits the app (its own or the default), or None."""
        private = self.__pydantic_private__ or {}
        name, rules = private.get("_policy_name"), private.get("_policy_rules")
        if name is None or rules is None:
            return None
        return name, rules


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


class WindowConfig(_Model):
    """``[windows.NAME]``: a sync window (a freeze, or the only hours syncs may run).

    A window opens at each time ``schedule`` fires (in ``timezone``) and stays open for
    ``duration``. While a ``deny`` window is open, automatic syncs of the matching apps
    wait; when ``allow`` windows match an app, its automatic syncs run only while one of
    them is open. Deny wins over allow.
    """

    schedule: str = Field(description='When the window opens: a cron expression, e.g. "0 22 * * 5" (Fridays 22:00).')
    duration: Duration = Field(description='How long it stays open, e.g. "60h".')
    timezone: str = Field("UTC", description='IANA time zone of the schedule, e.g. "Europe/Berlin".')
    kind: Literal["deny", "allow"] = Field("deny", description="deny: syncs wait while open; allow: syncs run only while open.")
    apps: list[str] = Field(default_factory=lambda: ["*"], description="Glob patterns of the app names it applies to.")
    manual_sync: Bool = Field(
        False, description="Let manual syncs (`gitopsd refresh`, the API, Slack `sync`) run while the window blocks syncs."
    )
    self_heal: Bool = Field(
        True, description="Let self-heal restore the applied revision while the window blocks syncs (false: it waits too)."
    )

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"invalid cron expression {value!r} (five fields: minute hour day month weekday)")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name like 'Europe/Berlin')") from None
        return value

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("a window needs a positive duration")
        return value


class Config(_Model):
    """The whole validated configuration."""

    path: Path | None = None
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
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
    policies: dict[str, PolicyConfig] = Field(default_factory=dict)

    windows: dict[str, WindowConfig] = Field(
        default_factory=dict, description="`[windows.NAME]`: sync windows (freezes, or allowed hours) by name."
    )

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


