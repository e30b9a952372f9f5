"""The ``gitopsd(1)`` man page, generated from the click command tree.

``gitopsd man > gitopsd.1`` (or ``python -m gitopsd.cli.manpage``); ``man -l gitopsd.1`` shows it.
Every command, its arguments and options come from the same definitions as ``--help``, so the
page cannot drift from the CLI.
"""

from __future__ import annotations

import datetime
import inspect

import click

from gitopsd.core.version import __version__


def _escape(text: str) -> str:
    """roff-safe text: backslashes escaped, leading dots and quotes neutralised, dashes literal."""
    lines = []
    for line in text.replace("\\", "\\e").replace("-", "\\-").splitlines():
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def _prose(text: str) -> str:
    """A docstring as roff paragraphs (blank lines start a new one)."""
    paragraphs = [p for p in inspect.cleandoc(text).split("\n\n") if p.strip()]
    return "\n.PP\n".join(_escape(" ".join(p.split())) for p in paragraphs)


def _options(ctx: click.Context, command: click.Command) -> list[str]:
    out: list[str] = []
    for param in command.get_params(ctx):
        if not isinstance(param, click.Option):
            continue  # arguments are in the usage line
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        out += [".TP", f"\\fB{_escape(names)}\\fR", _escape(help_text or "")]
    return out


def render(cli: click.Group) -> str:
    """The whole man page as roff text."""
    ctx = click.Context(cli, info_name="gitopsd")
    date = datetime.date.today().isoformat()
    doc = (cli.help or "").strip()
    summary = doc.splitlines()[0] if doc else "the GitOps daemon"
    lines = [
        f'.TH GITOPSD 1 "{date}" "gitopsd {__version__}" "User Commands"',
        ".SH NAME",
        f"gitopsd \\- {_escape(summary.rstrip('.'))}",
        ".SH SYNOPSIS",
        "\\fBgitopsd\\fR [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
        _prose("\n".join(doc.splitlines()[1:]).strip() or summary),
        ".SH OPTIONS",
        *_options(ctx, cli),
        ".SH COMMANDS",
    ]
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        sub = click.Context(command, info_name=name, parent=ctx)
        usage = " ".join(command.collect_usage_pieces(sub))
        lines += [".SS", f"\\fBgitopsd {name}\\fR {_escape(usage)}", _prose(command.help or command.short_help or "")]
        opts = _options(sub, command)
        if opts:
            lines += [".RS", *opts, ".RE"]
    lines += [
        ".SH ENVIRONMENT",
        ".TP",
        "\\fBGITOPSD_CONFIG\\fR",
        "The config file when \\fB\\-c\\fR is not given (default /etc/gitopsd/config.toml).",
        ".SH EXIT STATUS",
        "0 on success, 1 on failure or invalid input, 2 on a usage error.",
        ".SH FILES",
        ".TP",
        "/etc/gitopsd/config.toml",
        "The configuration.",
        ".TP",
        "/var/lib/gitopsd",
        "State: SQLite database, git mirrors, chart and artifact caches.",
        ".SH SEE ALSO",
        "\\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1), the docs/ directory of the gitopsd sources.",
    ]
    return "\n".join(lines) + "\n"


@click.command("man")
def man() -> None:
    """Print the gitopsd(1) man page (roff) on stdout: gitopsd man > gitopsd.1"""
    from gitopsd.cli.main import cli

    click.echo(render(cli), nl=False)


if __name__ == "__main__":
    man()
