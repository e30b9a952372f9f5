"""The ``gitopsd`` command.

Exit codes: 0 success, 1 failure or invalid input, 2 usage error (click's own).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import anyio
import click

from gitopsd import __version__
from gitopsd.config import Config, default_config_path, load_config
from gitopsd.errors import ConfigError, GitopsdError
from gitopsd.logs import configure_logging
from gitopsd.plugins import PluginError, PluginManager


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@_pass_config_path
def check(obj: Context) -> None:
    """Validate the config file and every plugin's options; print a summary.

    Exits 1 and lists every error (file and dotted key) when the config is invalid.
    """
    config = obj.load()
    click.echo(
        f"{obj.config_path}: ok ({len(config.apps)} apps, {len(config.clusters)} clusters, "
        f"{len(config.notifiers)} notifiers)"
    )


@cli.command()
@click.argument("app_name", metavar="APP")
@_pass_config_path
def render(obj: Context, app_name: str) -> None:
    """Fetch and render APP; print the final manifests (after post-render hooks) as YAML.

    Talks to no cluster. Exits 1 with the source or render error.
    """
    from gitopsd.engine import stages
    from gitopsd.yamlio import dump_all

    config = obj.load()
    app = obj.app(config, app_name)
    configure_logging("console", "warning")

    async def main() -> list[Any]:
        workspace = stages.Workspace.create(config, obj.plugins)
        source = workspace.source_for(app)
        revision = await source.latest_revision()
        artifact = await stages.fetch(workspace, source, revision)
        return await stages.render(workspace, app, artifact)

    try:
        manifests = anyio.run(main)
    except GitopsdError as exc:
        _fail(str(exc))
    click.echo(dump_all(manifests), nl=False)


@cli.command()
@_pass_config_path
def plugins(obj: Context) -> None:
    """List every plugin: distribution, version, hooks and the types it provides."""
    for info in obj.plugins.info():
        click.echo(f"{info.name}  ({info.distribution} {info.version})")
        click.echo(f"    hooks: {', '.join(info.hooks) or '-'}")
        for kind, names in sorted(info.types.items()):
            click.echo(f"    {kind}: {', '.join(names)}")


@cli.command()
@_pass_config_path
def run(obj: Context) -> None:
    """Run the daemon in the foreground until SIGTERM (systemd runs this)."""
    from gitopsd.engine.daemon import Daemon

    config = obj.load()
    configure_logging(config.daemon.log_format, config.daemon.log_level)
    daemon = Daemon(config, obj.plugins)
    try:
        anyio.run(daemon.run)
    except GitopsdError as exc:
        _fail(str(exc))


def _attach_optional_commands() -> None:
    """Commands that live in their own modules."""
    from gitopsd.sandbox.cli import sandbox_command

    cli.add_command(sandbox_command, "sandbox")


def main() -> None:
    """Console-script entry point."""
    try:
        _attach_optional_commands()
    except ImportError:
        pass
    cli(prog_name="gitopsd")
