"""``gitopsd completion bash|zsh|fish``: print the shell completion script (click's own).

Install (docs/install.md)::

    gitopsd completion bash > /etc/bash_completion.d/gitopsd
    gitopsd completion zsh  > /usr/local/share/zsh/site-functions/_gitopsd
    gitopsd completion fish > /etc/fish/completions/gitopsd.fish
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish) on stdout."""
    from gitopsd.cli.main import cli

    cls = get_completion_class(shell)
    assert cls is not None  # click ships these three
    script = cls(cli, {}, "gitopsd", "_GITOPSD_COMPLETE").source()
    click.echo(script)
