"""Benchmark of the sandbox: 10,000 objects and 100 concurrent watches (not a timed test).

Runs ``python -m gitopsd.sandbox`` as a separate process (so its memory and CPU
are its own), loads it over HTTPS with aiohttp from this process, and reports
p50/p99 latency per operation, the server's CPU per request and RSS, and a baseline in
the same run (``/healthz``: the HTTPS + aiohttp floor, no API work). The watches live
in a third process (see :func:`watch_worker`): the timed requests come from a process
that does nothing else.

    .venv/bin/python bench/sandbox_bench.py [--objects 10000] [--watches 100] [--concurrency 16]
        [--no-write] [--json FILE] [--profile DIR]

Writes bench/results/sandbox.md and bench/results/sandbox.json (not with ``--no-write``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
NAMESPACES = 10


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": round(pct(values, 50), 3), "p99_ms": round(pct(values, 99), 3),
            "mean_ms": round(statistics.fmean(values) * 1000, 3)}


def manifest(i: int) -> tuple[str, dict[str, Any]]:
    ns = f"bench-{i % NAMESPACES}"
    name = f"obj-{i}"
    kind = i % 10
    if kind == 0:
        return f"/apis/apps/v1/namespaces/{ns}/deployments", {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": "nginx:1.27",
                                                           "ports": [{"containerPort": 80}]}]}}}}
    if kind == 1:
        return f"/api/v1/namespaces/{ns}/services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}}
    return f"/api/v1/namespaces/{ns}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"bench": "yes"}},
        "data": {"key": "x" * 200, "index": str(i)}}


class Client:
    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self.session, self.url = session, url
        self.headers = {"Authorization": f"Bearer {token}"}

    async def timed(self, method: str, path: str, body: Any = None, ctype: str = "application/json",
                    **params: str) -> tuple[float, int]:
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = ctype
        t0 = time.perf_counter()
        async with self.session.request(method, self.url + path, data=data, headers=headers, params=params) as r:
            await r.read()
            return time.perf_counter() - t0, r.status


async def bounded(n: int, concurrency: int, fn: Any) -> list[float]:
    times: list[float] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            elapsed, code = await fn(i)
            if code >= 300:
                raise RuntimeError(f"request {i} failed with {code}")
            times.append(elapsed)

    await asyncio.gather(*(one(i) for i in range(n)))
    return times


async def phase(results: dict[str, Any], key: str, pid: int, n: int, concurrency: int, fn: Any) -> None:
    """One timed phase: latencies, and the server's CPU per request (a figure the client
    cannot inflate: it is the sandbox process's own user + system time)."""
    cpu0 = cpu_s(pid)
    results[key] = summary(await bounded(n, concurrency, fn))
    results[key]["server_cpu_ms_per_request"] = round((cpu_s(pid) - cpu0) * 1000 / n, 3)


async def watch_worker(spec: dict[str, Any]) -> None:
    """The 100 watches, in a process of their own (``--watch-worker``).

    The timed requests must not share an event loop with 100 streams being read: a client
    that is busy reading watch events delays its own timed round trips, and the bench would
    measure itself. Here every watch still receives every event (the server still fans each
    change out to all of them), but the reading costs this process, not the timed one. It
    reads its spec (URL, token, CA, paths) as the first line of stdin, prints ``ready`` once
    every stream has its response headers, and its counts as JSON when stdin closes.
    """
    ctx = ssl.create_default_context(cadata=spec["cadata"])
    headers = {"Authorization": f"Bearer {spec['token']}"}
    counts = [0] * len(spec["paths"])
    ready = asyncio.Event()
    opened = [0]

    async def one(session: aiohttp.ClientSession, idx: int, path: str) -> None:
        async with session.get(spec["url"] + path, headers=headers,
                               params={"watch": "true", "allowWatchBookmarks": "true"}) as r:
            opened[0] += 1
            if opened[0] == len(counts):
                ready.set()
            tail = b""
            async for chunk in r.content.iter_any():
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                counts[idx] += sum(1 for line in lines if not line.startswith(b'{"type":"BOOKMARK"'))

    connector = aiohttp.TCPConnector(ssl=ctx, limit=len(counts) + 1)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        tasks = [asyncio.create_task(one(session, i, p)) for i, p in enumerate(spec["paths"])]
        await asyncio.wait_for(ready.wait(), 120)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it
        await asyncio.sleep(1.0)  # the last events in flight
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(counts), flush=True)


def start_watches(spec: dict[str, Any]) -> subprocess.Popen[str]:
    """Start the watch process; return once all its watches are open."""
    proc = subprocess.Popen([sys.executable, __file__, "--watch-worker"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(spec) + "\n")  # on stdin: the token stays out of argv and files
    proc.stdin.flush()
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        raise RuntimeError(f"the watch process did not open its watches (said {line!r})")
    return proc


def stop_watches(proc: subprocess.Popen[str]) -> list[int]:
    """Close the watch process's stdin; it reports its per-watch event counts."""
    out, _ = proc.communicate(timeout=60)
    return [int(n) for n in json.loads(out.strip().splitlines()[-1])]


@contextlib.contextmanager
def profiled(args: argparse.Namespace, pid: int, phase: str) -> Iterator[None]:
    """With ``--profile DIR``: sample the sandbox with py-spy during one phase (raw stacks in
    ``DIR/<phase>.txt``, for ``flamegraph.pl`` or a grep)."""
    if not args.profile:
        yield
        return
    args.profile.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen([args.py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "250",
                            "--output", str(args.profile / f"{phase}.txt")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)


async def settle(c: Client, timeout: float = 300.0) -> dict[str, Any]:
    """Wait until the controllers have nothing scheduled and the resourceVersion stands still.

    After the create phase the controllers still create ReplicaSets and Pods and mark them
    ready (``--rollout-delay``): the latency phases measure the server at rest, not its
    backlog. Returns the seconds waited and the server's stats then.
    """
    t0 = time.perf_counter()
    last_rv = -1
    while True:
        async with c.session.get(c.url + "/sandbox/stats", headers=c.headers) as r:
            stats = await r.json()
        if stats["pending_controller_actions"] == 0 and stats["resourceVersion"] == last_rv:
            return {"seconds": round(time.perf_counter() - t0, 1), "stats": stats}
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"the controllers did not settle in {timeout} s: {stats}")
        last_rv = stats["resourceVersion"]
        await asyncio.sleep(1.0)


async def count_of(c: Client, path: str) -> int:
    """How many objects a list has (one item asked for, plus remainingItemCount)."""
    async with c.session.get(c.url + path, headers=c.headers, params={"limit": "1"}) as r:
        body = await r.json()
    return len(body["items"]) + int(body["metadata"].get("remainingItemCount") or 0)


async def run(args: argparse.Namespace, proc: subprocess.Popen[bytes], cfg: dict[str, Any]) -> dict[str, Any]:
    cluster = cfg["clusters"][0]["cluster"]
    cadata = base64.b64decode(cluster["certificate-authority-data"]).decode()
    ctx = ssl.create_default_context(cadata=cadata)
    connector = aiohttp.TCPConnector(ssl=ctx, limit=args.concurrency + 8)
    async with aiohttp.ClientSession(connector=connector) as session:
        token = cfg["users"][0]["user"]["token"]
        c = Client(session, cluster["server"], token)
        results: dict[str, Any] = {"objects": args.objects, "watches": args.watches,
                                   "concurrency": args.concurrency, "cpus": os.cpu_count(),
                                   "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                                   "watch_process": "separate"}
        results["latency_concurrency"] = args.latency_concurrency
        results["rss_idle_mib"] = round(rss_mib(proc.pid), 1)
        await phase(results, "baseline_healthz", proc.pid, 2000, args.latency_concurrency,
                    lambda i: c.timed("GET", "/healthz"))
        for n in range(NAMESPACES):
            await c.timed("POST", "/api/v1/namespaces", {"metadata": {"name": f"bench-{n}"}})
        paths = ["/api/v1/configmaps"] + [f"/api/v1/namespaces/bench-{i % NAMESPACES}/configmaps"
                                          for i in range(args.watches - 1)]
        watches = start_watches({"url": cluster["server"], "token": token, "cadata": cadata, "paths": paths})
        watch_cpu0 = cpu_s(watches.pid)
        try:
            async def create(i: int) -> tuple[float, int]:
                path, body = manifest(i)
                return await c.timed("POST", path, body)

            t0 = time.perf_counter()
            results["create"] = summary(await bounded(args.objects, args.concurrency, create))
            results["create_throughput_per_s"] = round(args.objects / (time.perf_counter() - t0), 1)
            results["rss_loaded_mib"] = round(rss_mib(proc.pid), 1)
            results["settle"] = await settle(c)
            results["rss_settled_mib"] = round(rss_mib(proc.pid), 1)
            results["object_counts"] = {
                kind: await count_of(c, path) for kind, path in (
                    ("configmaps", "/api/v1/configmaps"), ("services", "/api/v1/services"),
                    ("deployments", "/apis/apps/v1/deployments"), ("replicasets", "/apis/apps/v1/replicasets"),
                    ("pods", "/api/v1/pods"), ("events", "/api/v1/events"))}
            await phase(results, "baseline_healthz_loaded", proc.pid, 2000, args.latency_concurrency,
                        lambda i: c.timed("GET", "/healthz"))

            def path_of(i: int) -> str:
                path, body = manifest(i)
                return f"{path}/{body['metadata']['name']}"

            lat = args.latency_concurrency
            with profiled(args, proc.pid, "get"):
                await phase(results, "get", proc.pid, 3000, lat, lambda i: c.timed("GET", path_of(i * 3 % args.objects)))
            await phase(results, "list_ns_limit_100", proc.pid, 300, lat,
                        lambda i: c.timed("GET", f"/api/v1/namespaces/bench-{i % NAMESPACES}/configmaps", limit="100"))

            async def apply(i: int) -> tuple[float, int]:
                j = (i * 10 + 2) % args.objects  # configmaps
                path, body = manifest(j)
                body["data"]["applied"] = str(i)
                return await c.timed("PATCH", f"{path}/{body['metadata']['name']}", body,
                                     "application/apply-patch+yaml", fieldManager="bench", force="true")

            with profiled(args, proc.pid, "apply_ssa"):
                await phase(results, "apply_ssa", proc.pid, 2000, lat, apply)

            async def noop_dry_run(i: int) -> tuple[float, int]:
                j = (i * 10 + 2) % args.objects
                path, body = manifest(j)
                body["data"]["applied"] = str(i)
                return await c.timed("PATCH", f"{path}/{body['metadata']['name']}", body,
                                     "application/apply-patch+yaml", fieldManager="bench", dryRun="All")

            await phase(results, "apply_ssa_dry_run_noop", proc.pid, 1000, lat, noop_dry_run)
            results["rss_final_mib"] = round(rss_mib(proc.pid), 1)
            async with session.get(c.url + "/sandbox/stats", headers=c.headers) as r:
                results["server_stats"] = await r.json()
            results["watch_process_cpu_s"] = round(cpu_s(watches.pid) - watch_cpu0, 2)
        finally:
            counts = stop_watches(watches)
        cm_events = sum(1 for i in range(args.objects) if i % 10 >= 2)
        results["watch_events_all_namespaces"] = counts[0]
        results["watch_events_expected_all_namespaces"] = cm_events + 2000
        results["watch_events_total"] = sum(counts)
        return results


def write(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sandbox.json").write_text(json.dumps(results, indent=2) + "\n")
    counts = results["object_counts"]
    lines = [
        "# Sandbox benchmark",
        "",
        f"`.venv/bin/python bench/sandbox_bench.py` — {results['objects']} objects (80% ConfigMaps, 10% Deployments, "
        f"10% Services in {NAMESPACES} namespaces), {results['watches']} concurrent watches open throughout, "
        f"{results['concurrency']} requests in flight while creating, {results['latency_concurrency']} in the "
        f"latency phases (baseline, get, list, apply), HTTPS, server in its own process, {results['cpus']} CPUs "
        f"shared with other work (load average at the start: {results['load_average_at_start']}). Latencies are "
        "client-observed round trips; server CPU is the sandbox process's user + system time per request.",
        "",
        "Method: the watches run in a client process of their own and receive every event (the server fans "
        "each change out to all of them); the timed requests come from a process that does nothing else. The "
        "latency phases start once the controllers have settled (the Deployments' ReplicaSets and Pods exist).",
        "",
        "| operation | n | p50 ms | p99 ms | mean ms | server CPU ms/request |",
        "|---|---|---|---|---|---|",
    ]
    for key in ("baseline_healthz", "create", "baseline_healthz_loaded", "get", "list_ns_limit_100", "apply_ssa",
                "apply_ssa_dry_run_noop"):
        s = results[key]
        lines.append(f"| {key} | {s['n']} | {s['p50_ms']} | {s['p99_ms']} | {s['mean_ms']} | "
                     f"{s.get('server_cpu_ms_per_request', '')} |")
    lines += [
        "",
        f"- create throughput: {results['create_throughput_per_s']} objects/s; the controllers settled "
        f"{results['settle']['seconds']} s after the last create",
        f"- objects (pods included): {results['server_stats']['objects']} in all: "
        + ", ".join(f"{n} {kind}" for kind, n in counts.items()) + ", plus namespaces and the sandbox's own",
        f"- server RSS: idle {results['rss_idle_mib']} MiB, after load {results['rss_loaded_mib']} MiB, "
        f"settled {results['rss_settled_mib']} MiB, final {results['rss_final_mib']} MiB",
        f"- all-namespaces watch received {results['watch_events_all_namespaces']} events "
        f"(expected {results['watch_events_expected_all_namespaces']}); all watches: {results['watch_events_total']}; "
        f"the watch process used {results['watch_process_cpu_s']} s of CPU",
        f"- server stats at the end: {results['server_stats']}",
        "",
        "The baseline (`/healthz`) is the HTTPS + aiohttp floor on this machine in the same run (before the load, "
        "and again once it settled); API latencies above it are the sandbox's own work.",
    ]
    (RESULTS / "sandbox.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--watches", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16, help="in-flight requests while creating")
    parser.add_argument("--latency-concurrency", type=int, default=1,
                        help="in-flight requests in the latency phases (get, list, apply)")
    parser.add_argument("--no-write", action="store_true", help="print the results, leave bench/results alone")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="sample the sandbox with py-spy during the get and apply phases (raw stacks in DIR)")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy", help="the py-spy to use with --profile")
    parser.add_argument("--watch-worker", action="store_true", help=argparse.SUPPRESS)  # the watch process
    args = parser.parse_args()
    if args.watch_worker:
        asyncio.run(watch_worker(json.loads(sys.stdin.readline())))
        return
    kubeconfig = Path(tempfile.mkdtemp(prefix="sandbox-bench-")) / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitopsd.sandbox", "--kubeconfig", str(kubeconfig), "--rollout-delay", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "listening on ..." once the kubeconfig is written
        print(f"sandbox pid {proc.pid}", file=sys.stderr, flush=True)
        results = asyncio.run(run(args, proc, yaml.safe_load(kubeconfig.read_text())))
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(kubeconfig.parent, ignore_errors=True)  # it holds the token
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.no_write:
        print(json.dumps(results, indent=2))
        return
    write(results)
    print((RESULTS / "sandbox.md").read_text())


if __name__ == "__main__":
    main()
