"""``make demo``: a sandbox API server, the example apps synced into it, self-healing until Ctrl-C.

Runs ``examples/demo.toml`` against an in-process Kubernetes API sandbox whose
kubeconfig is written to ``.demo/sandbox.kubeconfig``, prints the apps' status as it
changes, and tells you how to cause drift with kubectl to watch gitopsd repair it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path

import anyio

from gitopsd.core.events import Event
from gitopsd.core.logs import configure_logging
from gitopsd.daemon.supervisor import Daemon
from gitopsd.plugin.hookspecs import hookimpl
from gitopsd.plugin.loading import load_config
from gitopsd.plugin.manager import PluginManager
from gitopsd.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "demo.toml"
DEMO_DIR = ROOT / ".demo"


class _PrintEvents:
    """The demo's own plugin, registered like any other: one readable line per event."""

    @hookimpl
    def gitopsd_event(self, event: Event) -> None:
        if event.name in ("revision-detected", "sync-started"):
            return
        where = event.app or "gitopsd"
        print(f"{event.time:%H:%M:%S} {event.severity:<7} {where}: {event.name}: {event.message}", flush=True)


def _table(daemon: Daemon) -> str:
    rows = [("APP", "CLUSTER", "REVISION", "SYNC", "HEALTH", "MESSAGE")]
    for name in sorted(daemon.apps):
        status = daemon.apps[name].runner.status
        revision = status.revision.removeprefix("sha256:")[:12]
        rows.append((name, status.cluster, revision, str(status.sync), str(status.health), status.last_message[:60]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def hints(kubeconfig: Path) -> str:
    """What to try once everything is synced: every command works against the sandbox."""
    kubectl = shutil.which("kubectl", path=str(ROOT / ".tools")) or "kubectl"
    k = f"{kubectl} --kubeconfig {kubeconfig}"
    return (
        "\nAll apps are synced. Look around as on a real cluster:\n"
        f"  {k} -n guestbook get pods\n"
        f"  {k} -n guestbook describe deploy guestbook-ui\n"
        f"  {k} create namespace scratch\n"
        f"  {k} -n scratch create deployment hello --image=nginx:1.27 --replicas=2\n"
        "Cause some drift and watch gitopsd put it back:\n"
        f"  {k} -n guestbook scale deploy/guestbook-ui --replicas=5\n"
        f"  {k} -n guestbook get deploy guestbook-ui\n"
        "Edit examples/apps/*/ and gitopsd applies the change at once. Ctrl-C to stop."
    )


async def _show_status(daemon: Daemon, kubeconfig: Path) -> None:
    await daemon.ready.wait()
    shown = ""
    hint_given = False
    while True:
        table = _table(daemon)
        if table != shown:
            print("\n" + table, flush=True)
            shown = table
        synced = daemon.apps and all(str(r.runner.status.sync) == "Synced" for r in daemon.apps.values())
        if synced and not hint_given:
            hint_given = True
            print(hints(kubeconfig), flush=True)
        await anyio.sleep(0.5)


async def main() -> None:
    DEMO_DIR.mkdir(exist_ok=True)
    kubeconfig = DEMO_DIR / "sandbox.kubeconfig"
    plugins = PluginManager(plugins=[_PrintEvents()])
    config = load_config(CONFIG, plugins.types)
    # The web page needs a token: a fresh one per demo, readable only by you.
    token_file = DEMO_DIR / "api-token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(16) + "\n")
    config = config.model_copy(update={"daemon": config.daemon.model_copy(update={"api_token_file": token_file})})
    configure_logging("console", "critical")  # events are printed by _PrintEvents
    async with Sandbox(tls=True, rollout_delay=1.0) as sandbox:
        sandbox.write_kubeconfig(kubeconfig)
        print(f"Kubernetes API sandbox at {sandbox.url} (kubeconfig: {kubeconfig})", flush=True)
        print(
            f"Web page: http://{config.daemon.listen}/ui/ (log in with the token in {token_file})", flush=True
        )

        daemon = Daemon(config, plugins)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_show_status, daemon, kubeconfig, name="demo-status")
            await daemon.run()
            tg.cancel_scope.cancel()


if __name__ == "__main__":
    try:
        anyio.run(main)
    except KeyboardInterrupt:
        sys.exit(0)
