"""The sandbox's work per request in CPU instructions (callgrind): a figure machine load cannot move.

On a shared machine the latency and even the CPU time per request of
``bench/sandbox_bench.py`` vary by a factor of two with the other work; the number of
instructions the server executes per request does not (a few % of noise: timers, GC). This
runs ``python -m gitopsd.sandbox`` from a source tree under ``valgrind --tool=callgrind``
with instrumentation off, loads it as the benchmark does (namespaces, objects, 100 watches in
their own process, controllers settled), then counts instructions during each phase only.
Run it against two trees to compare them (an older commit: ``git worktree add DIR COMMIT``):

    .venv/bin/python bench/sandbox_instructions.py [--tree DIR] [--objects 300] [--requests 200]

Prints thousands of instructions per request for /healthz, get, list (limit 100), SSA apply
(with the fan-out to the watches) and SSA dry-run. valgrind is slow: small scales (the defaults) take a minute or two.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox_bench as bench
from procs import CallgrindCounter


class Callgrind:
    """The sandbox of ``tree`` under callgrind, with instrumentation switched on for phases only."""

    def __init__(self, tree: Path, kubeconfig: Path, out: Path) -> None:
        self.proc = subprocess.Popen(
            [*CallgrindCounter.wrapper(out / "cg.out"),
             sys.executable, "-m", "gitopsd.sandbox", "--kubeconfig", str(kubeconfig), "--rollout-delay", "0.2"],
            cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # listening
        self.counter = CallgrindCounter(self.proc.pid, out / "cg.out")


async def measure(cg: Callgrind, cfg: dict[str, Any], objects: int, n: int) -> dict[str, float]:
    cluster = cfg["clusters"][0]["cluster"]
    cadata = base64.b64decode(cluster["certificate-authority-data"]).decode()
    token = cfg["users"][0]["user"]["token"]
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cadata=cadata))
    async with aiohttp.ClientSession(connector=connector) as session:
        c = bench.Client(session, cluster["server"], token)
        for i in range(bench.NAMESPACES):
            await c.timed("POST", "/api/v1/namespaces", {"metadata": {"name": f"bench-{i}"}})
        paths = ["/api/v1/configmaps"] + [f"/api/v1/namespaces/bench-{i % bench.NAMESPACES}/configmaps"
                                          for i in range(99)]
        watches = bench.start_watches({"url": cluster["server"], "token": token, "cadata": cadata, "paths": paths})
        try:
            await bench.bounded(objects, 8, lambda i: c.timed("POST", *bench.manifest(i)))
            await bench.settle(c, 600)

            def object_path(i: int) -> str:
                path, body = bench.manifest(i)
                return f"{path}/{body['metadata']['name']}"

            async def apply(i: int, dry: bool = False) -> tuple[float, int]:
                j = (i * 10 + 2) % objects  # configmaps
                path, body = bench.manifest(j)
                body["data"]["applied"] = str(i)
                extra = {"dryRun": "All"} if dry else {"force": "true"}
                return await c.timed("PATCH", f"{path}/{body['metadata']['name']}", body,
                                     "application/apply-patch+yaml", fieldManager="bench", **extra)

            phases: list[tuple[str, Any]] = [
                ("healthz", lambda i: c.timed("GET", "/healthz")),
                ("get", lambda i: c.timed("GET", object_path(i * 3 % objects))),
                ("list_ns_limit_100", lambda i: c.timed(
                    "GET", f"/api/v1/namespaces/bench-{i % bench.NAMESPACES}/configmaps", limit="100")),
                ("apply_ssa", apply),
                ("apply_ssa_dry_run", lambda i: apply(i, True)),
            ]
            out: dict[str, float] = {}
            for name, fn in phases:
                cg.counter.start()
                await bench.bounded(n, 1, fn)
                await asyncio.sleep(2.0)  # the fan-out of the last events
                out[name] = round(cg.counter.stop(name) / n / 1000, 1)
            return out
        finally:
            bench.stop_watches(watches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tree", type=Path, default=bench.ROOT, help="the source tree whose sandbox to measure")
    parser.add_argument("--objects", type=int, default=300)
    parser.add_argument("--requests", type=int, default=200, help="requests per phase")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install valgrind)")
    work = Path(tempfile.mkdtemp(prefix="sandbox-instructions-"))
    kubeconfig = work / "kubeconfig"
    cg = Callgrind(args.tree.resolve(), kubeconfig, work)
    try:
        result = asyncio.run(measure(cg, yaml.safe_load(kubeconfig.read_text()), args.objects, args.requests))
    finally:
        cg.proc.terminate()
        cg.proc.wait(60)
    print(json.dumps({"tree": str(args.tree), "objects": args.objects, "requests_per_phase": args.requests,
                      "kinstructions_per_request": result}, indent=2))


if __name__ == "__main__":
    main()
