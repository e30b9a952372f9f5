"""``gitopsd doctor``: check what breaks a first deployment, one line per check with a fix.

Checks, in order: the config is valid; secret files are private; the programs the config
needs are there (with their versions); the state directory is writable; each cluster
answers (through its SSH hops) and lets our credentials create, patch and delete what the
apps render; each app's source answers with its auth; each notifier's host resolves.

Nothing is changed anywhere: clusters get GET /version, discovery GETs and
SelfSubjectAccessReviews; sources get their cheap poll (``ls-remote``, ``index.yaml``, tags);
notifiers get a DNS lookup and no message. Output never carries a secret: details are built
from paths, modes, hosts and versions, and every line is scrubbed by the process redactor
(which knows every secret file read) before it is printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import click
from pydantic import BaseModel

from gitopsd.core.errors import CommandFailed, ConfigError, GitopsdError
from gitopsd.core.models import Manifest
from gitopsd.core.proc import run
from gitopsd.core.secrets import REDACTOR
from gitopsd.plugin.config import AppConfig, Config
from gitopsd.plugin.loading import load_config
from gitopsd.plugin.manager import PluginError, PluginManager

OK, WARN, FAIL = "ok", "warn", "FAIL"

_SECRET_FIELD = re.compile(
    r"(secret|token|password|username|identity|url)_file$|^(ssh_key_file|identity_file|docker_config_file|kubeconfig)$"
)
"""Options naming a file whose content is a credential (known_hosts and public keys are not)."""

# Which built-in source and renderer types run which program ("kustomize": kubectl's or its own).
_SOURCE_TOOLS = {"git": ("git",)}
_RENDER_TOOLS = {"helm": ("helm",), "kustomize": ("kustomize",)}
_AUTO_RENDER = ("helm", "kustomize")
"""An app without ``render`` is auto-detected: it may need these."""
_VERSION_ARGS = {
    "git": ["--version"],
    "helm": ["version", "--short"],
    "kubectl": ["version", "--client"],
    "kustomize": ["version"],
    "sops": ["--version"],
}


@dataclass
class Check:
    """One line of the report."""

    status: str
    check: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f"  -> fix: {self.fix}" if self.fix else ""
        return f"{self.status:<4} {self.check}: {self.detail}{fix}"


class Doctor:
    """Runs the checks for one config file; :attr:`checks` holds the results in order."""

    def __init__(self, config_path: Path, plugins: PluginManager, timeout: float = 10.0):
        self.config_path = config_path
        self.plugins = plugins
        self.timeout = timeout
        self.checks: list[Check] = []

    def add(self, status: str, check: str, detail: str, fix: str = "") -> None:
        self.checks.append(Check(status, check, REDACTOR.scrub(detail), REDACTOR.scrub(fix)))

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    async def run(self) -> None:
        try:
            config = load_config(self.config_path, self.plugins.types)
        except ConfigError as exc:
            self.add(FAIL, "config", "; ".join(exc.errors), f"edit {self.config_path}, then `gitopsd check`")
            return
        self.add(
            OK,
            "config",
            f"{self.config_path} is valid ({len(config.apps)} apps, {len(config.clusters)} clusters, "
            f"{len(config.notifiers)} notifiers)",
        )
        self.check_secrets(config)
        await self.check_tools(config)
        self.check_state_dir(config)
        rendered = await self.check_sources(config)
        await self.check_clusters(config, rendered)
        await self.check_notifiers(config)

    # -- secrets --------------------------------------------------------------------------

    def check_secrets(self, config: Config) -> None:
        seen: set[Path] = set()
        uid = os.geteuid()
        for key, path in _secret_files(config):
            if path in seen:
                continue
            seen.add(path)
            name = f"secret {key}"
            try:
                st = path.stat()
            except FileNotFoundError:
                self.add(FAIL, name, f"{path} does not exist", f"create it (mode 0600, owned by the gitopsd user) or remove {key}")
                continue
            except OSError as exc:
                self.add(FAIL, name, f"{path}: {exc.strerror}", "let the gitopsd user reach it")
                continue
            mode = stat.S_IMODE(st.st_mode)
            if not os.access(path, os.R_OK):
                self.add(FAIL, name, f"{path} is not readable by uid {uid}", f"chown {uid} {path}")
            elif mode & 0o007:
                self.add(FAIL, name, f"{path} has mode {mode:04o}: other users can read it", f"chmod 600 {path}")
            elif st.st_uid not in (uid, 0):
                self.add(WARN, name, f"{path} is owned by uid {st.st_uid}, not by uid {uid} or root", f"chown {uid} {path}")
            elif mode & 0o020:
                self.add(FAIL, name, f"{path} has mode {mode:04o}: its group can change it", f"chmod g-w {path}")
            else:
                self.add(OK, name, f"{path} mode {mode:04o}, owner uid {st.st_uid}")

    # -- tools ----------------------------------------------------------------------------

    def needed_tools(self, config: Config) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """(tool -> apps that need it, tool -> apps that may need it: auto-detected renders)."""
        needs: dict[str, list[str]] = {}
        maybe: dict[str, list[str]] = {}
        kustomize = "kustomize" if config.daemon.tools.kustomize else "kubectl"
        for app in config.apps.values():
            tools = list(_SOURCE_TOOLS.get(app.source.type, ()))
            if app.render is not None:
                tools += _RENDER_TOOLS.get(app.render.type, ())
            else:
                for tool in _AUTO_RENDER:
                    maybe.setdefault(kustomize if tool == "kustomize" else tool, []).append(app.name)
            if "sops" in json.dumps([_dump(app.source), _dump(app.render)], default=str):
                tools.append("sops")
            for tool in tools:
                needs.setdefault(kustomize if tool == "kustomize" else tool, []).append(app.name)
        return needs, maybe

    async def check_tools(self, config: Config) -> None:
        tools = config.daemon.tools
        paths = {"git": tools.git, "helm": tools.helm, "kubectl": tools.kubectl, "kustomize": tools.kustomize, "sops": "sops"}
        needs, maybe = self.needed_tools(config)
        for tool in ("git", "helm", "kubectl", "kustomize", "sops"):
            if tool == "kustomize" and not tools.kustomize:
                continue  # `kubectl kustomize`
            apps, may = sorted(set(needs.get(tool, []))), sorted(set(maybe.get(tool, [])))
            if apps:
                why, missing = f"needed by {', '.join(apps)}", FAIL
            elif may:
                why, missing = f"may be needed by {', '.join(may)} (render auto-detected)", WARN
            else:
                why, missing = "not needed by this config", OK
            found = shutil.which(paths[tool]) if paths[tool] else None
            if found is None:
                fix = f"install {tool}" + ("" if tool == "sops" else f", or set daemon.tools.{tool}")
                if tool in ("helm", "kubectl"):
                    fix = f"scripts/install-tools.sh --prefix /opt/gitopsd/bin, and set daemon.tools.{tool}"
                self.add(missing, f"tool {tool}", f"{paths[tool]!r} not found ({why})", "" if missing == OK else fix)
                continue
            try:
                out = await run([found, *_VERSION_ARGS[tool]], timeout=self.timeout, what=f"{tool} version")
                version = (out.stdout or out.stderr).decode(errors="replace").strip().splitlines()[0]
            except (CommandFailed, IndexError) as exc:
                self.add(FAIL if missing == FAIL else WARN, f"tool {tool}", f"{found} does not run: {_short(exc)}", f"reinstall {tool}")
                continue
            self.add(OK, f"tool {tool}", f"{found}: {version} ({why})")

    # -- state ----------------------------------------------------------------------------

    def check_state_dir(self, config: Config) -> None:
        state = config.daemon.state_dir
        fix = f"install -d -m 750 -o gitopsd -g gitopsd {state}"
        target = state
        while not target.exists() and target != target.parent:
            target = target.parent  # the daemon creates state_dir: its nearest parent must be writable
        try:
            with tempfile.NamedTemporaryFile(dir=target, prefix=".gitopsd-doctor-"):
                pass
        except OSError as exc:
            self.add(FAIL, "state_dir", f"{state}: cannot write in {target}: {exc.strerror}", fix)
            return
        where = "" if target == state else f" (does not exist yet; {target} is writable)"
        self.add(OK, "state_dir", f"{state} is writable{where}")

    # -- sources (and the renders the access reviews need) ---------------------------------

    async def check_sources(self, config: Config) -> dict[str, list[Manifest]]:
        """Poll every app's source; render the ones that answer. Returns app -> manifests."""
        from gitopsd.engine import stages

        workspace = stages.Workspace.create(config, self.plugins)
        rendered: dict[str, list[Manifest]] = {}
        for app in config.apps.values():
            name = f"source {app.name}"
            auth = _auth(app)
            try:
                source = workspace.source_for(app)
            except Exception as exc:
                self.add(FAIL, name, f"{app.source.type}: {_short(exc)}")
                continue
            stage = name
            try:
                with anyio.fail_after(max(self.timeout, 60)):
                    revision = await source.latest_revision()
                    self.add(OK, name, f"{app.source.type} {_where(app)} answers: {revision} ({auth})")
                    stage = f"render {app.name}"  # for the access review of its cluster
                    artifact = await stages.fetch(workspace, source, revision)
                    rendered[app.name] = list((await stages.render(workspace, app, artifact)).manifests)
            except TimeoutError:
                self.add(FAIL, stage, f"{_where(app)}: no answer (timed out)", "check the network path from this host")
            except GitopsdError as exc:
                self.add(FAIL, stage, _short(exc), _source_fix(exc, auth))
            finally:
                await source.aclose()
        return rendered

    # -- clusters ---------------------------------------------------------------------------

    async def check_clusters(self, config: Config, rendered: dict[str, list[Manifest]]) -> None:
        from gitopsd.kube.probe import probe_cluster

        for cluster_name, cluster in config.clusters.items():
            apps = [a for a in config.apps.values() if a.cluster == cluster_name]
            manifests = [
                _with_namespace(m, app.namespace) for app in apps for m in rendered.get(app.name, [])
            ]
            probe = await probe_cluster(cluster_name, cluster, manifests, timeout=self.timeout)
            name = f"cluster {cluster_name}"
            via = f" via {probe.via}" if probe.via else ""
            if probe.error:
                fix = "check the kubeconfig's server and credentials"
                if probe.via:
                    fix = "check known_hosts (ssh-keyscan), identity_file and the hops' sshd logs"
                self.add(FAIL, name, f"{probe.server or cluster.kubeconfig}{via}: {probe.error}", fix)
                continue
            self.add(OK, name, f"{probe.server}{via} answers: Kubernetes {probe.version}")
            if probe.unknown_kinds:
                self.add(FAIL, f"{name} kinds", "not served: " + ", ".join(sorted(set(probe.unknown_kinds))),
                         "install the CRDs, or check the apiVersion")
            if probe.denied:
                shown = ", ".join(str(a) for a in probe.denied[:8]) + (" ..." if len(probe.denied) > 8 else "")
                self.add(FAIL, f"{name} access", f"may not {shown}", "grant these verbs to the kubeconfig's user (RBAC)")
            elif probe.access:
                targets = sorted({f"{a.resource} in {a.namespace}" if a.namespace else a.resource for a in probe.access})
                shown = ", ".join(targets[:8]) + (f" and {len(targets) - 8} more" if len(targets) > 8 else "")
                self.add(OK, f"{name} access", f"may create, patch and delete what the apps render: {shown}")
            elif apps:
                self.add(WARN, f"{name} access", "not reviewed: no app on it rendered")

    # -- notifiers --------------------------------------------------------------------------

    async def check_notifiers(self, config: Config) -> None:
        for notifier_name, table in config.notifiers.items():
            name = f"notifier {notifier_name}"
            hosts = _notifier_hosts(table.options)
            if not hosts:
                self.add(OK, name, f"{table.type}: no endpoint to resolve")
                continue
            for host, port in hosts:
                try:
                    with anyio.fail_after(self.timeout):
                        addresses = await anyio.getaddrinfo(host, port)
                except (OSError, TimeoutError) as exc:
                    self.add(FAIL, name, f"{table.type}: {host} does not resolve ({_short(exc)})", "check DNS (/etc/resolv.conf) or the URL")
                    continue
                self.add(OK, name, f"{table.type}: {host} resolves ({len({a[4][0] for a in addresses})} address(es))")


# -- helpers --------------------------------------------------------------------------------


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def _walk(value: Any, key: str) -> Iterator[tuple[str, str, Any]]:
    """(dotted key, field name, value) of every field below ``value``."""
    if isinstance(value, BaseModel):
        for field_name in type(value).model_fields:
            sub = getattr(value, field_name)
            yield f"{key}.{field_name}", field_name, sub
            yield from _walk(sub, f"{key}.{field_name}")
    elif isinstance(value, dict):
        for k, sub in value.items():
            yield from _walk(sub, f"{key}.{k}")
    elif isinstance(value, list | tuple):
        for i, sub in enumerate(value):
            yield from _walk(sub, f"{key}[{i}]")


def _secret_files(config: Config) -> Iterator[tuple[str, Path]]:
    for top in ("daemon", "clusters", "notifiers", "apps"):
        for key, field_name, value in _walk(getattr(config, top), top):
            if isinstance(value, Path) and _SECRET_FIELD.search(field_name):
                yield key, value


def _auth(app: AppConfig) -> str:
    used = [name for key, name, value in _walk(app.source.options, "") if value and _SECRET_FIELD.search(name)]
    return "auth: " + ", ".join(sorted(set(used))) if used else "anonymous"


def _where(app: AppConfig) -> str:
    options = app.source.options
    for attr in ("url", "repo", "path"):
        value = getattr(options, attr, None)
        if value:
            return _strip_userinfo(str(value))
    return app.source.type


def _strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return parts._replace(netloc=host).geturl()
    return url


def _source_fix(exc: GitopsdError, auth: str) -> str:
    reason = getattr(exc, "reason", "")
    return {
        "AuthFailed": f"check the credentials ({auth})",
        "HostKeyVerificationFailed": "add the server's host key to known_hosts_file (ssh-keyscan HOST)",
        "RepositoryNotFound": "check the URL (and that the credentials may read it)",
        "NetworkError": "check DNS, proxy and firewall from this host",
        "RefNotFound": "check ref / version / semver",
    }.get(reason, "")


def _notifier_hosts(options: Any) -> list[tuple[str, int]]:
    """(host, port) of the URLs a notifier sends to: URLs set explicitly or read from files;
    a default URL (say Slack's API) only when nothing else is set."""
    found = _urls(options, explicit=True)
    return found or _urls(options, explicit=False)


def _urls(options: Any, *, explicit: bool) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    set_fields: set[str] = getattr(options, "model_fields_set", set())
    for _key, name, value in _walk(options, ""):
        url = ""
        if isinstance(value, str) and (name == "url" or name.endswith("_url")):
            if explicit and name not in set_fields:
                continue
            url = value
        elif isinstance(value, Path) and name.endswith("url_file"):
            try:
                url = value.read_text(encoding="utf-8").strip()
            except OSError:
                continue  # reported by the secret-file check
            REDACTOR.add(url)  # a webhook URL is a credential: only its host is ever shown
        parts = urlsplit(url)
        if parts.hostname:
            found.append((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)))
    return sorted(set(found))


def _with_namespace(manifest: Manifest, namespace: str) -> Manifest:
    meta = manifest.get("metadata") or {}
    if meta.get("namespace"):
        return manifest
    return {**manifest, "metadata": {**meta, "namespace": namespace}}


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


@click.command("doctor")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              envvar="GITOPSD_CONFIG", help="Config file [env GITOPSD_CONFIG; default /etc/gitopsd/config.toml].")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as one JSON document.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per network check.")
@click.pass_context
def doctor(ctx: click.Context, config_path: Path | None, as_json: bool, timeout: float) -> None:
    """Check what breaks a first deployment; one line per check, with a fix.

    Config, secret file permissions, tools and versions, state_dir, each cluster (through
    its SSH hops; server version; may the credentials create/patch/delete what the apps
    render), each source with its auth, each notifier's host. Changes nothing and sends no
    message. Exits 0 when every check passes, 1 otherwise.
    """
    from gitopsd.core.logs import configure_logging
    from gitopsd.plugin.config import default_config_path

    path = config_path or getattr(ctx.obj, "config_path", None) or default_config_path()
    configure_logging("console", "error")
    try:
        plugins = PluginManager()
    except PluginError as exc:
        click.echo(f"gitopsd: {exc}", err=True)
        sys.exit(1)
    report = Doctor(path, plugins, timeout=timeout)
    anyio.run(report.run)
    if as_json:
        click.echo(json.dumps({"ok": report.ok, "checks": [asdict(c) for c in report.checks]}, indent=2))
    else:
        for check in report.checks:
            click.echo(check.line())
        failed = sum(c.status == FAIL for c in report.checks)
        click.echo(f"{len(report.checks)} checks, {failed} failed" if failed else f"{len(report.checks)} checks passed")
    sys.exit(0 if report.ok else 1)
