"""The ``gitopsd`` command.

Exit codes: 0 success, 1 failure or invalid input, 2 usage error (click's own).
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from gitopsd.core.imports import collection_paused

with collection_paused():  # the heavy layers: see gitopsd/core/imports.py
    import anyio
    import click

    from gitopsd import __version__
    from gitopsd.core.errors import ConfigError, GitopsdError
    from gitopsd.core.logs import configure_logging
    from gitopsd.plugin.config import Config, default_config_path
    from gitopsd.plugin.loading import load_config
    from gitopsd.plugin.manager import PluginError, PluginManager

if TYPE_CHECKING:
    from gitopsd.core.models import Rendered, SyncResult
    from gitopsd.engine.protocols import ObjectDiff


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"gitopsd: {message}", err=True)
    sys.exit(code)


class Context:
    """What every command shares: the config path, and one plugin manager per invocation."""

    def __init__(self, config_path: Path | None):
        self.config_path = config_path or default_config_path()
        self._plugins: PluginManager | None = None

    @property
    def plugins(self) -> PluginManager:
        if self._plugins is None:
            try:
                self._plugins = PluginManager()
            except PluginError as exc:
                _fail(str(exc))
        return self._plugins

    def load(self) -> Config:
        try:
            return load_config(self.config_path, self.plugins.types)
        except ConfigError as exc:
            _fail("invalid configuration:\n  " + "\n  ".join(exc.errors))

    def expand(self, config: Config) -> Config:
        """``config`` with the apps of appsets that read a repository (fetched now)."""
        from gitopsd.daemon.appsets import expand_all

        try:
            return anyio.run(lambda: expand_all(config, self.plugins))
        except ConfigError as exc:
            _fail("invalid configuration:\n  " + "\n  ".join(exc.errors))
        except GitopsdError as exc:
            _fail(str(exc))

    def load_for(self, name: str) -> Config:
        """The config, with generated apps when ``name`` is not one of the config's own."""
        config = self.load()
        if name not in config.apps and config.appsets:
            config = self.expand(config)
        self.app(config, name)
        return config

    def app(self, config: Config, name: str):  # type: ignore[no-untyped-def]
        if name not in config.apps:
            _fail(f"{self.config_path}: no app named {name!r} (apps: {', '.join(sorted(config.apps)) or 'none'})")
        return config.apps[name]


config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="GITOPSD_CONFIG",
    help="Config file [env GITOPSD_CONFIG; default /etc/gitopsd/config.toml].",
)


class LazyGroup(click.Group):
    """A group whose commands from other modules are imported only when used.

    ``gitopsd run`` then never imports the sandbox (and its TLS tooling) or the API client.
    """

    lazy_commands: dict[str, str] = {
        "status": "gitopsd.cli.ops:status",
        "refresh": "gitopsd.cli.ops:refresh",
        "suspend": "gitopsd.cli.ops:suspend",
        "resume": "gitopsd.cli.ops:resume",
        "history": "gitopsd.cli.ops:history",
        "rollback": "gitopsd.cli.ops:rollback",
        "approve": "gitopsd.cli.ops:approve",
        "reject": "gitopsd.cli.ops:reject",
        "sandbox": "gitopsd.sandbox.cli:sandbox_command",
        "import": "gitopsd.cli.importers:import_group",
        "doctor": "gitopsd.cli.doctor:doctor",
        "completion": "gitopsd.cli.completion:completion",
        "man": "gitopsd.cli.manpage:man",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy_commands])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy_commands.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, _, attr = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gitopsd")
@config_option
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """gitopsd keeps Kubernetes clusters in the state git says they should be in.

    It runs on a bastion host, outside the clusters: fetch (git, Helm, OCI), render
    (plain YAML, Kustomize, Helm), server-side apply, self-heal, prune, notify.
    """
    ctx.obj = Context(config_path)


def _pass_config_path(func: Any) -> Any:
    """Let ``-c`` also follow the subcommand (``gitopsd check -c FILE``)."""

    @config_option
    @click.pass_obj
    def wrapper(obj: Context, config_path: Path | None, **kwargs: Any) -> Any:
        if config_path is not None:
            obj.config_path = config_path
        return func(obj, **kwargs)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


@cli.command()
@click.option("--no-fetch", is_flag=True, help="Do not fetch the repositories appset generators read.")
@_pass_config_path
def check(obj: Context, no_fetch: bool) -> None:
    """Validate the config file and every plugin's options; print a summary.

    Appsets are expanded (their repositories fetched, unless --no-fetch) and every app
    they generate is validated; the number of apps of each is printed. Exits 1 and lists
    every error (file and dotted key) when the config is invalid. Warns (exit 0) about apps
    without a policy and apps that render the same objects.
    """
    from gitopsd.engine.policy import config_warnings

    config = obj.load()
    if config.appsets and not no_fetch:
        config = obj.expand(config)
    for warning in config_warnings(config):
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"{obj.config_path}: ok ({len(config.apps)} apps, {len(config.clusters)} clusters, "
        f"{len(config.notifiers)} notifiers)"
    )
    if config.appsets:
        from gitopsd.daemon.appsets import is_dynamic

        for name, appset in sorted(config.appsets.items()):
            count = sum(1 for app in config.apps.values() if app.appset == name)
            fetched = not (no_fetch and is_dynamic(appset, config, obj.plugins.types))
            click.echo(f"  appsets.{name}: " + (f"{count} apps" if fetched else "not expanded (--no-fetch)"))


@cli.command()
@click.argument("app_name", metavar="APP")
@click.option("--show-secrets", is_flag=True, help="Print Secret data as is (masked as *** by default).")
@_pass_config_path
def render(obj: Context, app_name: str, show_secrets: bool) -> None:
    """Fetch and render APP; print the final manifests (after post-render hooks) as YAML.

    Talks to no cluster. Exits 1 with the source or render error. Secret values are
    printed as ``***`` unless ``--show-secrets`` is given.
    """
    from gitopsd.core.yamlio import dump_all
    from gitopsd.daemon.wiring import one_app
    from gitopsd.engine.decrypt import mask_secrets

    config = obj.load_for(app_name)
    configure_logging("console", "warning")

    async def render() -> Rendered:
        async with one_app(config, app_name, obj.plugins, clusters=False, state=False) as reconciler:
            return await reconciler.render()

    try:
        rendered = anyio.run(render)
    except GitopsdError as exc:
        _fail(str(exc))
    manifests = list(rendered.manifests)
    click.echo(dump_all(manifests if show_secrets else mask_secrets(manifests)), nl=False)


@cli.command()
@click.argument("app_name", metavar="APP")
@click.option("--dry-run", is_flag=True, help="Ask the API server to validate without persisting anything.")
@_pass_config_path
def sync(obj: Context, app_name: str, dry_run: bool) -> None:
    """Run one reconcile of APP in-process (no daemon needed) and print what it did.

    Lists each object created, changed, pruned or failed with its health. Exits 1 when
    the sync failed.
    """
    from gitopsd.daemon.wiring import one_app

    config = obj.load_for(app_name)
    configure_logging("console", "warning")

    async def sync() -> SyncResult | None:
        async with one_app(config, app_name, obj.plugins) as reconciler:
            return await reconciler.reconcile(["manual"], force=True, dry_run=dry_run)

    try:
        result = anyio.run(sync)
    except GitopsdError as exc:
        _fail(str(exc))
    if result is None:
        _fail(f"{app_name} is suspended: nothing synced (gitopsd resume {app_name})")
    for item in result.objects:
        if item.action != "unchanged":
            note = f"  ({item.message})" if item.message else ""
            click.echo(f"{item.action:<9} {item.ref}  [{item.health}]{note}")
    counts = ", ".join(f"{n} {a}" for a, n in result.counts.items() if n)
    status = "dry run" if dry_run else ("synced" if result.ok else "FAILED")
    click.echo(f"{app_name}: {status} {result.revision} ({counts or 'nothing to do'}); health {result.health}")
    if result.message and not result.ok:
        click.echo(result.message, err=True)
    sys.exit(0 if result.ok else 1)


@cli.command()
@click.argument("app_name", metavar="APP")
@_pass_config_path
def diff(obj: Context, app_name: str) -> None:
    """Show desired vs live for APP as a unified YAML diff per object (managed fields only).

    Exits 0 when there is no difference, 1 when there are differences, 2 on error,
    like ``kubectl diff``.
    """
    from gitopsd.daemon.wiring import one_app

    config = obj.load_for(app_name)
    configure_logging("console", "warning")

    async def diff() -> list[ObjectDiff]:
        async with one_app(config, app_name, obj.plugins, state=False) as reconciler:
            return await reconciler.diff()

    try:
        diffs = anyio.run(diff)
    except GitopsdError as exc:
        _fail(str(exc), code=2)
    for item in diffs:
        click.echo(item.diff, nl=not item.diff.endswith("\n"))
    sys.exit(1 if diffs else 0)


@cli.command()
@_pass_config_path
def plugins(obj: Context) -> None:
    """List every plugin: distribution, version, hooks and the types it provides."""
    for info in obj.plugins.info():
        click.echo(f"{info.name}  ({info.distribution} {info.version})")
        click.echo(f"    hooks: {', '.join(info.hooks) or '-'}")
        for kind, names in sorted(info.types.items()):
            click.echo(f"    {kind}: {', '.join(names)}")
        if info.options:
            click.echo(f"    options: [plugins.{info.name}] {', '.join(info.options)}")


@cli.command()
@_pass_config_path
def run(obj: Context) -> None:
    """Run the daemon in the foreground until SIGTERM (systemd runs this)."""
    # What the start allocates (config, modules, one runner per app) lives as long as the
    # daemon: collecting garbage while building it finds none and costs a tenth of the start
    # at 10,000 apps. At ready, collection resumes and skips these objects (gc.freeze).
    gc.disable()
    try:
        from gitopsd.daemon.supervisor import Daemon

        config = obj.load()
        configure_logging(config.daemon.log_format, config.daemon.log_level)

        async def main() -> None:
            await Daemon(config, obj.plugins, on_ready=_collect_from_now_on, on_settled=_freeze_the_converge).run()

        anyio.run(main, backend_options=event_loop_options())
    except GitopsdError as exc:
        _fail(str(exc))
    finally:
        gc.enable()


def event_loop_options() -> dict[str, object]:
    """The daemon's anyio backend options: uvloop when it is installed.

    uvloop does sockets and TLS in C: about 5 MiB less memory at 100 apps (asyncio keeps a
    256 KiB buffer per TLS connection); CPU was the same within noise (bench 100x10, A/B).
    ``GITOPSD_EVENT_LOOP=asyncio`` keeps the standard loop.
    """
    choice = os.environ.get("GITOPSD_EVENT_LOOP", "uvloop")
    if choice not in ("uvloop", "asyncio"):
        _fail(f"GITOPSD_EVENT_LOOP={choice!r}: expected 'uvloop' or 'asyncio'", code=2)
    if choice == "asyncio" or importlib.util.find_spec("uvloop") is None:
        return {}
    return {"use_uvloop": True}


YOUNG_COLLECTION_EVERY = 10_000
"""Container objects allocated (net of those freed) between two collections of the young
generation once the daemon is ready; Python's default is 700."""


def _collect_from_now_on(daemon: object) -> None:
    gc.freeze()
    # A converge keeps most of what it allocates (renders, live objects, inventories): at 700
    # the collector walked it again and again and found almost no garbage (reference counting
    # frees the rest; tests/cycles.py keeps the hot paths free of cycles). Bench 1000x5
    # (gc.callbacks): 390 young collections and 3 full ones took 0.9-1.1 s of a 7-8 s
    # converge; at 10,000, 17 and none took 0.25 s, with the same peak RSS.
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])
    gc.enable()


def _freeze_the_converge(daemon: object) -> None:
    # What the cold start's converge built (live cache, renders, inventories) lives as long
    # as its apps; left in the collector's oldest generation, every full collection walks it
    # all: at 10,000 apps one such collection ran every poll interval and cost about a
    # second, half the idle daemon's CPU (bench 10000x5, gc.callbacks). Frozen, those
    # objects are still freed by reference counting; only a cycle among them would stay.
    gc.freeze()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="gitopsd")
