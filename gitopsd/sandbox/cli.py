"""``gitopsd sandbox``: run the API server simulator in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click

from .sandbox import Sandbox


@click.command("sandbox")
@click.option("--port", type=int, default=0, show_default=True, help="TCP port (0: pick a free one).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--kubeconfig", "kubeconfig", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write a kubeconfig here once the server accepts requests.")
@click.option("--state", "state", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Load objects from this JSON file at start and save them on exit.")
@click.option("--faults", default=None, help="Fault spec: JSON, @file, or verb:resource:key=value,...;...")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for fault injection and uids.")
@click.option("--insecure-http", is_flag=True, help="Serve plain HTTP instead of HTTPS.")
@click.option("--san", "sans", multiple=True, help="Extra DNS name or IP for the server certificate (repeatable).")
@click.option("--token", default=None, help="Bearer token (generated when omitted).")
@click.option("--rollout-delay", type=float, default=0.2, show_default=True,
              help="Seconds until simulated workloads become ready.")
@click.option("--job-duration", type=float, default=None,
              help="Seconds a Job's pod runs before it completes (default: the rollout delay).")
@click.option("--max-events", type=int, default=2000, show_default=True,
              help="Events kept; the oldest are deleted beyond it (0: record none).")
@click.option("--protos", "protos", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory of the Kubernetes protobuf descriptors (default: .tools/k8s-protos).")
def sandbox_command(
    port: int, host: str, kubeconfig: Path | None, state: Path | None, faults: str | None, seed: int,
    insecure_http: bool, sans: tuple[str, ...], token: str | None, rollout_delay: float,
    job_duration: float | None, max_events: int, protos: Path | None,
) -> None:
    """Run a Kubernetes API server simulator in the foreground (Ctrl-C stops it)."""
    try:
        _run(_serve(port, host, kubeconfig, state, faults, seed, insecure_http, sans, token, rollout_delay,
                     job_duration, max_events, protos))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except KeyboardInterrupt:
        pass


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run the server on uvloop when it is installed (its TLS and sockets are in C: less CPU per
    request and far less memory per open watch than asyncio's SSL protocol), else on asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


async def _serve(
    port: int, host: str, kubeconfig: Path | None, state: Path | None, faults: str | None, seed: int,
    insecure_http: bool, sans: tuple[str, ...], token: str | None, rollout_delay: float,
    job_duration: float | None = None, max_events: int = 2000, protos: Path | None = None,
) -> None:
    sb = Sandbox(tls=not insecure_http, port=port, token=token, extra_sans=sans, faults=faults, seed=seed,
                 state_file=state, rollout_delay=rollout_delay, host=host, job_duration=job_duration,
                 max_events=max_events, protos_dir=protos)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with sb:
        target = sb.kubeconfig
        if kubeconfig is not None:
            target = sb.write_kubeconfig(kubeconfig)
        click.echo(f"gitopsd sandbox listening on {sb.url} (kubeconfig: {target})", err=False)
        await stop.wait()
