"""What one API request costs the daemon: the cluster client's own path, against the sandbox.

    python -m bench.request_cost [--requests 3000] [--instructions]

A :class:`~gitopsd.kube.client.KubeClient` opened on a ``gitopsd sandbox`` process (TLS, the
daemon's event loop) sends server-side apply PATCHes of ConfigMaps, 16 in flight, as a
sync step does: the limiter, headers and credentials, the transport (one write, httptools),
TLS, JSON both ways, the request observer. Prints the client's CPU microseconds per request
(noisy on a busy machine). ``--instructions`` runs the same twice under valgrind's callgrind
(``--requests`` and five times as many) and prints the instructions per request from the
difference: start-up and the warm-up requests cancel out, and the machine's load cannot
move it (issue 18: 220k -> 189k per PATCH).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procs import SandboxProc, callgrind

WARM = 200
"""ConfigMaps created before the measured requests (their first apply creates them)."""


async def _send(kubeconfig: Path, requests: int) -> float:
    """CPU seconds of ``requests`` applies, after ``WARM`` creating ones."""
    from gitopsd.kube.client import KubeClient
    from gitopsd.plugin.config import ClusterConfig

    client = KubeClient("bench", ClusterConfig(kubeconfig=kubeconfig, max_concurrent_requests=16), lambda *a: None)
    await client.open()
    query = [("fieldManager", "gitopsd"), ("force", "true")]
    in_flight = asyncio.Semaphore(16)

    async def apply(i: int) -> None:
        name = f"cm-{i % WARM}"
        body: dict[str, Any] = {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "bench"}},
            "data": {"key": "v" * 50},
        }
        async with in_flight:
            await client.request("PATCH", f"/api/v1/namespaces/default/configmaps/{name}", query=query,
                                 body=body, content_type="application/apply-patch+yaml")

    try:
        await asyncio.gather(*(apply(i) for i in range(WARM)))
        started = time.process_time()
        await asyncio.gather(*(apply(i) for i in range(requests)))
        return time.process_time() - started
    finally:
        await client.close()


def _run(kubeconfig: Path, requests: int) -> float:
    try:
        import uvloop
    except ImportError:  # the daemon's loop when installed, asyncio's otherwise
        return asyncio.run(_send(kubeconfig, requests))
    return uvloop.run(_send(kubeconfig, requests))


def _instructions(kubeconfig: Path, requests: int) -> int:
    return callgrind(
        [sys.executable, "-m", "bench.request_cost", "--requests", str(requests), "--kubeconfig", str(kubeconfig)],
        "the requests", cwd=Path(__file__).resolve().parent.parent,
    )[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.request_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--instructions", action="store_true",
                   help="Count instructions per request under callgrind (two runs, about two minutes).")
    p.add_argument("--kubeconfig", type=Path, help=argparse.SUPPRESS)  # a sandbox already running (--instructions)
    args = p.parse_args(argv)
    if args.kubeconfig is not None:
        _run(args.kubeconfig, args.requests)
        return 0
    work = Path(tempfile.mkdtemp(prefix="gitopsd-requests-"))
    sandbox = SandboxProc.start(work / "sandbox")
    try:
        cpu = _run(sandbox.kubeconfig, args.requests)
        print(f"client CPU per request: {cpu / args.requests * 1e6:.1f} us ({args.requests} PATCH requests, 16 in flight)")
        if args.instructions:
            if shutil.which("valgrind") is None:
                raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
            few, many = args.requests, args.requests * 5
            per_request = (_instructions(sandbox.kubeconfig, many) - _instructions(sandbox.kubeconfig, few)) / (many - few)
            print(f"client instructions per request: {per_request / 1e3:.1f}k (callgrind, {few} and {many} requests)")
    finally:
        sandbox.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
