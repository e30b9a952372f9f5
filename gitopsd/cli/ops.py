"""Operator commands that talk to the running daemon through its API.

``gitopsd status [-o json]``, ``refresh APP``, ``suspend APP``, ``resume APP``,
``history APP``, ``rollback APP REVISION``, ``approve APP REVISION``, ``reject APP REVISION``. The address and token come from the config
(``daemon.listen``, ``daemon.api_token_file``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from gitopsd.cli.daemon_client import ClientError, DaemonClient


def _client(ctx: click.Context) -> DaemonClient:
    from gitopsd.cli.main import Context

    obj: Context = ctx.find_object(Context)  # type: ignore[assignment]
    return DaemonClient.from_config(obj.load())


def _call(func: Callable[[], Any]) -> Any:
    try:
        return func()
    except ClientError as exc:
        click.echo(f"gitopsd: {exc}", err=True)
        raise SystemExit(1) from None


def age(iso: str | None, now: datetime | None = None) -> str:
    """``42s``, ``5m``, ``3h``, ``2d`` since ``iso``; ``-`` when never."""
    if not iso:
        return "-"
    seconds = max(0, int(((now or datetime.now(UTC)) - datetime.fromisoformat(iso)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def short_revision(revision: str) -> str:
    head, sep, digest = revision.rpartition(":")
    return f"{head}{sep}{digest[:12]}" if sep else revision[:24]


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


config_opt = click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), default=None, help="Config file.")


def _with_config(ctx: click.Context, config_path: str | None) -> None:
    if config_path is not None:
        from pathlib import Path

        from gitopsd.cli.main import Context

        obj = ctx.find_object(Context)
        if obj is not None:
            obj.config_path = Path(config_path)


@click.command()
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@config_opt
@click.pass_context
def status(ctx: click.Context, output: str, config_path: str | None) -> None:
    """Every app: cluster, revision, sync, health, last sync age, message."""
    _with_config(ctx, config_path)
    client = _client(ctx)
    windows = _call(client.windows)
    members = _call(client.members)
    coordinated = bool(members.get("coordination"))
    everywhere = _call(client.all_apps) if coordinated else {}
    apps = everywhere["apps"] if coordinated else _call(client.apps)
    if output == "json":
        click.echo(json.dumps(apps, indent=2))
        return
    rows = [["APP", *(["MEMBER"] if coordinated else []), "CLUSTER", "REVISION", "SYNC", "HEALTH", "LAST SYNC", "MESSAGE"]]
    for app in apps:
        sync = app["sync"] + (" (suspended)" if app["suspended"] else "") + (" (pinned)" if app["pinned_revision"] else "")
        message = app["last_sync"]["message"].splitlines()[0] if app["last_sync"]["message"] else ""
        hold = app.get("hold") or {}
        if app.get("waiting"):  # held by depends_on
            sync += " (waiting)"
            message = app["waiting"]
        elif hold.get("state"):
            sync += f" ({hold['state']})"
            revision = hold.get("revision") or ""
            message = (hold.get("message") or message).replace(revision, short_revision(revision)) if revision else hold.get("message") or message
        rows.append(
            [app["name"], *([app.get("member") or "-"] if coordinated else []), app["cluster"],
             short_revision(app["revision"]) or "-", sync, app["health"], age(app["last_sync"]["time"]), message[:80]]
        )
    click.echo(table(rows))
    if windows:
        click.echo("")
        rows = [["WINDOW", "KIND", "OPEN SINCE", "UNTIL"]]
        rows += [[w["name"], w["kind"], w["start"][:16].replace("T", " "), w["end"][:16].replace("T", " ")] for w in windows]
        click.echo(table(rows))
    if coordinated:
        _print_members(members, everywhere)


def _print_members(members: dict[str, Any], everywhere: dict[str, Any]) -> None:
    """The member list under ``gitopsd status`` (with coordination)."""
    click.echo("")
    rows = [["MEMBER", "URL", "APPS", "LEASE AGE"]]
    for m in members["members"]:
        lease = "-" if m["lease_age"] is None else f"{m['lease_age']:.0f}s"
        rows.append([m["name"] + (" (this)" if m["self"] else ""), m["advertise_url"] or "-", str(len(m["apps"])), lease])
    click.echo(table(rows))
    for error in everywhere.get("errors", []):
        click.echo(f"member {error['member']} did not answer ({error['url'] or 'no advertise_url'}): {error['error']}", err=True)
    if everywhere.get("unowned"):
        click.echo(f"apps no member holds right now: {', '.join(everywhere['unowned'])}", err=True)


def _action(name: str, doc: str) -> click.Command:
    @click.command(name=name, help=doc)
    @click.argument("app")
    @config_opt
    @click.pass_context
    def command(ctx: click.Context, app: str, config_path: str | None) -> None:
        _with_config(ctx, config_path)
        client = _client(ctx)
        _call(lambda: client.action(app, name))
        click.echo(f"{app}: " + {"refresh": "refresh requested", "suspend": "suspended", "resume": "resumed"}[name])

    return command


refresh = _action("refresh", "Reconcile APP now, even if nothing seems to have changed.")
suspend = _action("suspend", "Stop reconciling APP (persisted across restarts) until resumed.")
resume = _action("resume", "Resume APP: clears a suspension and a rollback pin, then reconciles.")


@click.command()
@click.argument("app")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@config_opt
@click.pass_context
def history(ctx: click.Context, app: str, output: str, config_path: str | None) -> None:
    """APP's last 20 syncs: time, revision, result, counts, message."""
    _with_config(ctx, config_path)
    client = _client(ctx)
    entries = _call(lambda: client.app(app))["history"]
    if output == "json":
        click.echo(json.dumps(entries, indent=2))
        return
    rows = [["TIME", "REVISION", "RESULT", "CHANGES", "MESSAGE"]]
    for e in entries:
        counts = ", ".join(f"{k} {v}" for k, v in e["counts"].items() if v and k != "unchanged") or "-"
        rows.append([e["time"][:19].replace("T", " "), e["revision"], e["result"], counts, e["message"].splitlines()[0][:60] if e["message"] else ""])
    click.echo(table(rows))


@click.command()
@click.argument("app")
@click.argument("revision")
@config_opt
@click.pass_context
def rollback(ctx: click.Context, app: str, revision: str, config_path: str | None) -> None:
    """Pin APP to REVISION from its history (a unique prefix will do) until `gitopsd resume APP`."""
    _with_config(ctx, config_path)
    client = _client(ctx)
    result = _call(lambda: client.action(app, "rollback", revision=revision))
    click.echo(f"{app}: rolling back to {result['revision']} (pinned until `gitopsd resume {app}`)")


def _decision(name: str, doc: str) -> click.Command:
    @click.command(name=name, help=doc)
    @click.argument("app")
    @click.argument("revision")
    @config_opt
    @click.pass_context
    def command(ctx: click.Context, app: str, revision: str, config_path: str | None) -> None:
        _with_config(ctx, config_path)
        client = _client(ctx)
        result = _call(lambda: client.decide(app, revision, name))
        click.echo(result["message"])

    return command


approve = _decision("approve", "Approve APP's pending REVISION (a unique prefix will do): it is applied next.")
reject = _decision("reject", "Reject APP's pending REVISION: the app stays at the revision it has.")
