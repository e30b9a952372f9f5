"""The high-availability benchmark: 3 gitopsd members sharing N apps over a 3-node etcd.

    python -m bench.ha --apps 1000 --objects 5      (make bench-ha)

Every process is real: ``gitopsd sandbox``, three etcd nodes (Debian's etcd-server) and the
members (``python -m gitopsd run``), talked to over HTTP only. Phases:

1. cold converge: the 3 members start together; time until every app is Synced and Healthy
   (each member's /metrics gauges, summed) and each member's share;
2. join: one member stops (SIGTERM; its apps move to the two others), then starts again:
   the share of all apps that moved when it joined (target <= 40 %, ideal 33 %);
3. failover, 5 times: kill -9 the busiest member; time until every one of its apps is held
   by a survivor (``/api/v1/members``), and until a drift made in one of them at the kill is
   healed; the member is restarted and the group settles before the next kill.

Apps are the same as ``make bench-full``'s (bench/gen.py: plain, Kustomize and Helm apps in
one git repository served as file://). Results: ``bench/results/ha-<N>x<M>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import gen
from bench.procs import DaemonProc, SandboxProc, free_port, toml_str
from tests.coord.harness import EtcdCluster

RESULTS = Path(__file__).resolve().parent / "results"
READ_TOKEN = "bench-ha-read-token"


def log(message: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {message}", flush=True)


def wait(what: str, check: Callable[[], bool], timeout: float, every: float = 0.1) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(every)
    return time.monotonic() - started


class Member:
    """One member process and its config."""

    def __init__(self, work: Path, name: str, kubeconfig: Path, repo: gen.Repo, endpoints: list[str], ttl: float):
        self.name = name
        self.dir = work / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = self.dir / "config.toml"
        lines = [
            "[daemon]",
            f"state_dir = {toml_str(self.dir / 'state')}",
            f'listen = "127.0.0.1:{self.port}"',
            'default_interval = "1h"',
            "watch_config = false",
            'log_format = "json"',
            'log_level = "warning"',
            f"read_token_file = {toml_str(work / 'read-token')}",
            "",
            "[daemon.coordination]",
            'backend = "etcd"',
            f"endpoints = {json.dumps(endpoints)}",
            f'member = "{name}"',
            f'advertise_url = "http://127.0.0.1:{self.port}"',
            f'lease_ttl = "{ttl:g}s"',
            "",
            "[clusters.sandbox]",
            f"kubeconfig = {toml_str(kubeconfig)}",
        ]
        for spec in repo.specs:
            lines += ["", f"[apps.{spec.name}]", 'cluster = "sandbox"', f'namespace = "{spec.namespace}"',
                      f'source = {{ type = "git", url = {toml_str(repo.url)}, ref = "main", path = "{spec.path}" }}']
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: DaemonProc | None = None

    def start(self) -> None:
        self.proc = DaemonProc.start(self.config, self.port, "", self.dir / "gitopsd.log")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def get(self, path: str) -> Any:
        try:
            r = httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=30, headers={"Authorization": f"Bearer {READ_TOKEN}"})
            return r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def converged(self) -> int:
        try:
            return self.proc.converged()[0] if self.proc is not None and self.alive() else 0
        except (httpx.HTTPError, ValueError):
            return 0


def holders(members: list[Member]) -> dict[str, str]:
    for m in members:
        if m.alive():
            report = m.get("/api/v1/members")
            if report and report.get("joined"):
                return {app: e["name"] for e in report["members"] for app in e["apps"]}
    return {}


def settled(members: list[Member], apps: list[str], live: set[str]) -> bool:
    held = holders(members)
    return set(apps) <= set(held) and set(held.values()) == live


def run(apps_n: int, objects: int, ttl: float, kills: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="gitopsd-bench-ha-"))
    log(f"work directory {work}")
    repo = gen.generate(work / "repo", apps_n, objects)
    (work / "read-token").write_text(READ_TOKEN)
    (work / "read-token").chmod(0o600)
    names = sorted(s.name for s in repo.specs)
    sandbox = SandboxProc.start(work / "sandbox", rollout_delay=0.05)
    etcd = EtcdCluster(work / "etcd")
    etcd.start_all()
    members = [Member(work, f"m{i + 1}", sandbox.kubeconfig, repo, etcd.endpoints, ttl) for i in range(3)]
    result: dict[str, Any] = {
        "apps": apps_n, "objects": objects, "lease_ttl": ttl, "members": 3,
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        # 1. cold converge
        started = time.monotonic()
        for m in members:
            m.start()
        result["cold_converge_s"] = round(
            wait("cold converge", lambda: sum(m.converged() for m in members) >= apps_n, timeout=3600, every=2), 1
        )
        held = holders(members)
        result["shares"] = {m.name: sum(1 for v in held.values() if v == m.name) for m in members}
        log(f"cold converge {result['cold_converge_s']} s, shares {result['shares']} ({time.monotonic() - started:.0f}s)")

        # 2. a join: m3 leaves (SIGTERM), the group settles on two, m3 joins again
        leaver = members[2]
        assert leaver.proc is not None
        leaver.proc.stop()
        wait("two members", lambda: settled(members, names, {"m1", "m2"}), timeout=600, every=0.5)
        before = holders(members)
        leaver.start()
        join_s = wait("join", lambda: settled(members, names, {"m1", "m2", "m3"}), timeout=600, every=0.5)
        after = holders(members)
        moved = sum(1 for a in names if before.get(a) != after.get(a))
        result["join"] = {"moved": moved, "moved_pct": round(100 * moved / apps_n, 1), "settled_s": round(join_s, 1)}
        log(f"join: {moved} apps moved ({result['join']['moved_pct']} %), settled in {join_s:.1f} s")

        # 3. failover
        times: list[dict[str, float]] = []
        for k in range(kills):
            held = holders(members)
            busiest = max(members, key=lambda m: sum(1 for v in held.values() if v == m.name))
            theirs = sorted(a for a, v in held.items() if v == busiest.name)
            assert busiest.proc is not None
            busiest.proc.kill()
            drifted = theirs[0]
            sandbox.client.patch(
                f"/api/v1/namespaces/{drifted}/configmaps/configmap-2",
                json={"data": {"revision": "drifted"}}, headers={"Content-Type": "application/merge-patch+json"},
            ).raise_for_status()
            others = {m.name for m in members if m is not busiest}

            def moved_all(theirs: list[str] = theirs, others: set[str] = others) -> bool:
                h = holders(members)
                return all(h.get(a) in others for a in theirs)

            def healed(drifted: str = drifted) -> bool:
                r = sandbox.client.get(f"/api/v1/namespaces/{drifted}/configmaps/configmap-2")
                return r.status_code == 200 and (r.json().get("data") or {}).get("revision") == "1"

            held_s = wait("failover", moved_all, timeout=300)
            heal_s = held_s + wait("heal", healed, timeout=300)
            times.append({"apps": len(theirs), "held_s": round(held_s, 2), "healed_s": round(heal_s, 2)})
            log(f"kill {k + 1}: {len(theirs)} apps held elsewhere after {held_s:.1f} s, drift healed after {heal_s:.1f} s")
            busiest.start()
            wait("rejoin", lambda: settled(members, names, {"m1", "m2", "m3"}), timeout=600, every=0.5)
        held_all = [t["held_s"] for t in times]
        healed_all = [t["healed_s"] for t in times]
        result["failover"] = {
            "kills": times,
            "held_p50_s": round(statistics.median(held_all), 2), "held_max_s": max(held_all),
            "healed_p50_s": round(statistics.median(healed_all), 2), "healed_max_s": max(healed_all),
            "target_s": ttl + 5,
        }
    finally:
        for m in members:
            if m.proc is not None and m.alive():
                m.proc.kill()
        etcd.stop_all()
        sandbox.stop()
        shutil.rmtree(work, ignore_errors=True)
    return result


def markdown(r: dict[str, Any]) -> str:
    f = r.get("failover", {})
    j = r.get("join", {})
    return "\n".join([
        f"# gitopsd HA benchmark: 3 members x {r['apps']} apps x {r['objects']} objects",
        "",
        f"Generated by `python -m bench.ha` on {r['date']} ({r['machine']['cpus']} CPUs, shared; lease_ttl {r['lease_ttl']:g} s, etcd 3-node on loopback).",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| cold converge, every app Synced and Healthy | {r.get('cold_converge_s', '-')} s | |",
        f"| shares after the cold start | {', '.join(f'{k}: {v}' for k, v in r.get('shares', {}).items())} | even |",
        f"| apps moved when the third member joins | {j.get('moved', '-')} ({j.get('moved_pct', '-')} %) | <= 40 % (ideal 33 %) |",
        f"| failover, apps held elsewhere after kill -9 (p50 / max of {len(f.get('kills', []))}) | {f.get('held_p50_s', '-')} s / {f.get('held_max_s', '-')} s | <= lease_ttl + 5 s = {f.get('target_s', '-')} s |",
        f"| failover, drift in a moved app healed (p50 / max) | {f.get('healed_p50_s', '-')} s / {f.get('healed_max_s', '-')} s | |",
        "",
    ])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--apps", type=int, default=1000)
    p.add_argument("--objects", type=int, default=5)
    p.add_argument("--ttl", type=float, default=5.0, help="lease_ttl of the members (seconds)")
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    result = run(args.apps, args.objects, args.ttl, args.kills)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"ha-{args.apps}x{args.objects}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
