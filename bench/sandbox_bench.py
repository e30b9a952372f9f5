"""Benchmark of the sandbox: 10,000 objects and 100 concurrent watches (not a timed test).

Runs ``python -m gitopsd.sandbox`` as a separate process (so its memory and CPU
are its own), loads it over HTTPS with aiohttp from this process, and reports
p50/p99 latency per operation, the server's RSS, and a baseline in the same run
(``/healthz``: the HTTPS + aiohttp floor, no API work).

    .venv/bin/python bench/sandbox_bench.py [--objects 10000] [--watches 100] [--concurrency 16]

Writes bench/results/sandbox.md and bench/results/sandbox.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
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


async def watcher(client: Client, path: str, counts: list[int], idx: int, stop: asyncio.Event) -> None:
    async with client.session.get(client.url + path, headers=client.headers,
                                  params={"watch": "true", "allowWatchBookmarks": "true"}) as r:
        while not stop.is_set():
            try:
                line = await asyncio.wait_for(r.content.readline(), 0.5)
            except TimeoutError:
                continue
            if not line:
                return
            if b'"BOOKMARK"' not in line[:30]:
                counts[idx] += 1


async def run(args: argparse.Namespace, proc: subprocess.Popen[bytes], cfg: dict[str, Any]) -> dict[str, Any]:
    cluster = cfg["clusters"][0]["cluster"]
    ctx = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    connector = aiohttp.TCPConnector(ssl=ctx, limit=args.concurrency + args.watches + 8)
    async with aiohttp.ClientSession(connector=connector) as session:
        c = Client(session, cluster["server"], cfg["users"][0]["user"]["token"])
        results: dict[str, Any] = {"objects": args.objects, "watches": args.watches,
                                   "concurrency": args.concurrency, "cpus": os.cpu_count()}
        results["latency_concurrency"] = args.latency_concurrency
        results["rss_idle_mib"] = round(rss_mib(proc.pid), 1)
        results["baseline_healthz"] = summary(await bounded(
            2000, args.latency_concurrency, lambda i: c.timed("GET", "/healthz")))
        for n in range(NAMESPACES):
            await c.timed("POST", "/api/v1/namespaces", {"metadata": {"name": f"bench-{n}"}})
        stop = asyncio.Event()
        counts = [0] * args.watches
        paths = ["/api/v1/configmaps"] + [f"/api/v1/namespaces/bench-{i % NAMESPACES}/configmaps"
                                          for i in range(args.watches - 1)]
        tasks = [asyncio.create_task(watcher(c, p, counts, i, stop)) for i, p in enumerate(paths)]
        await asyncio.sleep(1.0)

        async def create(i: int) -> tuple[float, int]:
            path, body = manifest(i)
            return await c.timed("POST", path, body)

        t0 = time.perf_counter()
        results["create"] = summary(await bounded(args.objects, args.concurrency, create))
        results["create_throughput_per_s"] = round(args.objects / (time.perf_counter() - t0), 1)
        results["rss_loaded_mib"] = round(rss_mib(proc.pid), 1)

        def path_of(i: int) -> str:
            path, body = manifest(i)
            return f"{path}/{body['metadata']['name']}"

        lat = args.latency_concurrency
        results["get"] = summary(await bounded(3000, lat, lambda i: c.timed("GET", path_of(i * 3 % args.objects))))
        results["list_ns_limit_100"] = summary(await bounded(
            300, lat, lambda i: c.timed("GET", f"/api/v1/namespaces/bench-{i % NAMESPACES}/configmaps", limit="100")))

        async def apply(i: int) -> tuple[float, int]:
            j = (i * 10 + 2) % args.objects  # configmaps
            path, body = manifest(j)
            body["data"]["applied"] = str(i)
            return await c.timed("PATCH", f"{path}/{body['metadata']['name']}", body,
                                 "application/apply-patch+yaml", fieldManager="bench", force="true")

        results["apply_ssa"] = summary(await bounded(2000, lat, apply))

        async def noop_dry_run(i: int) -> tuple[float, int]:
            j = (i * 10 + 2) % args.objects
            path, body = manifest(j)
            body["data"]["applied"] = str(i)
            return await c.timed("PATCH", f"{path}/{body['metadata']['name']}", body,
                                 "application/apply-patch+yaml", fieldManager="bench", dryRun="All")

        results["apply_ssa_dry_run_noop"] = summary(await bounded(1000, lat, noop_dry_run))
        results["rss_final_mib"] = round(rss_mib(proc.pid), 1)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        cm_events = sum(1 for i in range(args.objects) if i % 10 >= 2)
        results["watch_events_all_namespaces"] = counts[0]
        results["watch_events_expected_all_namespaces"] = cm_events + 2000
        results["watch_events_total"] = sum(counts)
        async with session.get(c.url + "/sandbox/stats", headers=c.headers) as r:
            results["server_stats"] = await r.json()
        return results


def write(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sandbox.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Sandbox benchmark",
        "",
        f"`.venv/bin/python bench/sandbox_bench.py` — {results['objects']} objects (80% ConfigMaps, 10% Deployments, "
        f"10% Services in {NAMESPACES} namespaces), {results['watches']} concurrent watches open throughout, "
        f"{results['concurrency']} requests in flight while creating, {results['latency_concurrency']} in the "
        f"latency phases (baseline, get, list, apply), HTTPS, server in its own process, {results['cpus']} CPUs "
        "shared with other work. Latencies are client-observed round trips.",
        "",
        "| operation | n | p50 ms | p99 ms | mean ms |",
        "|---|---|---|---|---|",
    ]
    for key in ("baseline_healthz", "create", "get", "list_ns_limit_100", "apply_ssa", "apply_ssa_dry_run_noop"):
        s = results[key]
        lines.append(f"| {key} | {s['n']} | {s['p50_ms']} | {s['p99_ms']} | {s['mean_ms']} |")
    lines += [
        "",
        f"- create throughput: {results['create_throughput_per_s']} objects/s",
        f"- server RSS: idle {results['rss_idle_mib']} MiB, after load {results['rss_loaded_mib']} MiB, "
        f"final {results['rss_final_mib']} MiB",
        f"- all-namespaces watch received {results['watch_events_all_namespaces']} events "
        f"(expected {results['watch_events_expected_all_namespaces']}); all watches: {results['watch_events_total']}",
        f"- server stats at the end: {results['server_stats']}",
        "",
        "The baseline (`/healthz`) is the HTTPS + aiohttp floor on this machine in the same run; "
        "API latencies above it are the sandbox's own work.",
    ]
    (RESULTS / "sandbox.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--watches", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16, help="in-flight requests while creating")
    parser.add_argument("--latency-concurrency", type=int, default=1,
                        help="in-flight requests in the latency phases (get, list, apply)")
    args = parser.parse_args()
    kubeconfig = Path(tempfile.mkdtemp(prefix="sandbox-bench-")) / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitopsd.sandbox", "--kubeconfig", str(kubeconfig), "--rollout-delay", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "listening on ..." once the kubeconfig is written
        results = asyncio.run(run(args, proc, yaml.safe_load(kubeconfig.read_text())))
    finally:
        proc.terminate()
        proc.wait(10)
    write(results)
    print((RESULTS / "sandbox.md").read_text())


if __name__ == "__main__":
    main()
