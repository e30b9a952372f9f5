"""The benchmark: gitopsd against the baseline loop, same sandbox, same repository, one run.

    python -m bench.run --apps 100 --objects 10      (make bench)
    python -m bench.run --apps 1000 --objects 5      (make bench-full)

Phases (every process is real: ``gitopsd sandbox``, ``python -m gitopsd run``, git, kubectl, helm):

1. generate a git repository (bench/gen.py) with N apps of M objects, served as file://;
2. start the sandbox, then gitopsd with one git source per app (all sharing the repository);
3. cold converge: until every app is Synced and Healthy (/metrics gauges), daemon CPU and peak RSS;
4. no-op round: two intervals with nothing changed: API requests by verb (sandbox counters),
   git commands (a counting git wrapper on PATH, plus the daemon's own metrics), daemon CPU;
5. drift: scale a Deployment through the API as ``kubectl scale`` does; time until it is back;
6. push -> applied: commit, send a signed GitHub push webhook, time until the change is live;
7. stop gitopsd, delete the apps' namespaces, then run the baseline (bench/baseline.sh) from
   cold, then again with nothing changed: wall time, CPU (git + kubectl + helm) and requests.

Results: ``bench/results/<N>x<M>.json`` and ``.md``, then ``latest.json`` / ``latest.md``
combine every size measured. Targets are reported, never asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import gen
from bench.procs import (
    ROOT,
    TOOLS,
    CpuTimes,
    DaemonProc,
    SandboxProc,
    bytecode_env,
    compiled_since,
    cpu_times,
    file_create_cost,
    free_port,
    git_subcommands,
    line_count,
    memory_kib,
    metric_sum,
    third_party_plugins,
    toml_str,
    tool_env,
    wait_idle,
    warm_bytecode,
    write_git_wrapper,
)

RESULTS = Path(__file__).resolve().parent / "results"
BASELINE_SCRIPT = Path(__file__).resolve().parent / "baseline.sh"

TARGETS = {
    "cold_converge_s_at_1000x5": 60.0,
    "noop_writes": 0,
    "noop_fetches": 0,
    "noop_ls_remote_per_repo_per_interval": 1,
    "drift_p50_s": 1.0,
    "push_p50_s": 1.0,
    "rss_mib_at_1000": 150.0,
    "rss_mib_at_10000": 600.0,
    "cold_converge_speedup": 3.0,
    "noop_cpu_ratio": 10.0,
    "client_cost_ratio": 1.0,
    "noop_cpu_per_interval_per_1000_apps_s": 0.1,
    "push_p50_s_at_10000": 2.0,
    "api_ready_s": 0.5,
}


def log(message: str) -> None:
    """Progress on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# -- set-up ----------------------------------------------------------------------------------


def write_config(
    path: Path,
    *,
    repo_url: str | dict[str, str],
    specs: list[gen.AppSpec],
    kubeconfig: Path,
    state_dir: Path,
    port: int,
    token_file: Path,
    hook_secret_file: Path,
    git: Path | str,
    interval: float,
    log_level: str = "info",
    extra: str = "",
) -> Path:
    """A gitopsd config: one git source per app; ``repo_url`` is one URL, or a URL per app name."""
    def url_of(name: str) -> str:
        return repo_url if isinstance(repo_url, str) else repo_url[name]

    lines = [
        "[daemon]",
        f"state_dir = {toml_str(state_dir)}",
        f'listen = "127.0.0.1:{port}"',
        f"api_token_file = {toml_str(token_file)}",
        'log_format = "json"',
        f'log_level = "{log_level}"',
        f'default_interval = "{interval:g}s"',
        "watch_config = false",
        "",
        "[daemon.tools]",
        f"git = {toml_str(git)}",
        f"helm = {toml_str(TOOLS / 'helm')}",
        f"kubectl = {toml_str(TOOLS / 'kubectl')}",
        "",
        "[daemon.webhooks]",
        f"github_secret_file = {toml_str(hook_secret_file)}",
        "",
        "[clusters.sandbox]",
        f"kubeconfig = {toml_str(kubeconfig)}",
        "",
    ]
    for spec in specs:
        lines += [
            f"[apps.{spec.name}]",
            'cluster = "sandbox"',
            f'namespace = "{spec.namespace}"',
            f'source = {{ type = "git", url = {toml_str(url_of(spec.name))}, ref = "main", path = "{spec.path}" }}',
            "prune = true",
            "self_heal = true",
            "",
        ]
    path.write_text("\n".join(lines) + extra)
    return path


# -- phases ----------------------------------------------------------------------------------


class EventTail:
    """Follows the daemon's log file for its events (no load on the daemon, unlike scraping /metrics)."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.buffer = b""

    def new_events(self) -> list[dict[str, Any]]:
        """Events logged since the last call."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        lines = (self.buffer + data).split(b"\n")
        self.buffer = lines.pop()
        out = []
        for line in lines:
            # Events, and the runner's "reconcile failed" warnings (some failures, such as a
            # missing tool, emit no event).
            if b'"gitopsd.core.events"' not in line and b'"reconcile failed"' not in line:
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def _event_time(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["time"]).timestamp()


FAILURE_EVENTS = ("fetch-failed", "render-failed", "sync-failed")


def cold_converge(daemon: DaemonProc, sandbox: SandboxProc, apps: int, timeout: float,
                  sandbox_cpu_before: CpuTimes = CpuTimes(0.0, 0.0), stall: float = 120.0) -> dict[str, Any]:
    """Wait until every app is Synced and Healthy; time, CPU, RSS, requests.

    The daemon's own events (sync-succeeded, health-recovered in its log) say when each app
    got there; /metrics is scraped only to confirm, so the measurement costs the daemon
    almost nothing. The wait is bounded: it stops at ``timeout``, and earlier when every app
    not yet converged has reported a failure (fetch, render or sync) and no app has made
    progress for ``stall`` seconds (progress: an app reaching a step it had not reached,
    such as ``sync-started``); the failures are printed.
    """
    ready = daemon.wait_ready()
    readyz = daemon.wait_readyz()
    cpu_at_ready = cpu_times(daemon.pid).own  # start-up (imports, config) is not per-object work
    sandbox_at_ready = cpu_times(sandbox.pid).own
    log(f"daemon answers after {ready:.2f} s, ready (/readyz) after {readyz} s")
    tail = EventTail(daemon.log)
    ok_at: dict[str, float] = {}
    failed: dict[str, str] = {}
    seen: set[tuple[str, Any]] = set()
    deadline = time.monotonic() + timeout
    done, last_check, last_report = 0, 0.0, 0.0
    last_progress = time.monotonic()
    stopped_on_failures = False
    while time.monotonic() < deadline:
        if not daemon.alive():
            raise RuntimeError(f"gitopsd exited during the cold converge: see {daemon.log}")
        for event in tail.new_events():
            app = event.get("app")
            if not app:
                continue
            step = (app, event.get("name") or event.get("event"))
            if step not in seen:  # an app reached a new step (sync-started, ...): progress
                seen.add(step)
                last_progress = time.monotonic()
            if event.get("name") in ("sync-succeeded", "health-recovered"):
                ok_at[app] = max(ok_at.get(app, 0.0), _event_time(event))
                failed.pop(app, None)
                last_progress = time.monotonic()
            elif event.get("event") == "reconcile failed" and not event.get("name"):
                # Progress is a new app failing; the same app retrying is not.
                if app not in failed:
                    last_progress = time.monotonic()
                failed[app] = f"{event.get('reason')}: {str(event.get('error'))[:300]}"
            elif event.get("name") in FAILURE_EVENTS:
                if app not in failed:
                    last_progress = time.monotonic()
                failed[app] = f"{event.get('name')} {event.get('reason')}: {str(event.get('message'))[:300]}"
        now = time.monotonic()
        if failed and len(ok_at) + len(failed) >= apps and now - last_progress > min(stall, 15.0):
            stopped_on_failures = True
        elif now - last_progress > stall:
            stopped_on_failures = bool(failed)
            log(f"  no app made progress for {stall:g} s: stopping the wait")
            break
        if stopped_on_failures:
            log(f"  {len(failed)} apps report failures and none progresses: stopping the wait")
            break
        # /metrics carries a few series per app: scraping it is not free at 10,000 apps.
        if (len(ok_at) >= apps and now - last_check > 0.5) or now - last_check > max(10.0, apps / 100):
            last_check = now
            try:
                done, _ = daemon.converged()
            except Exception:  # the API may be busy: try again
                pass
            if done >= apps:
                break
        if now - last_report > 10:
            last_report = now
            log(f"  {len(ok_at)}/{apps} apps synced after {now - daemon.started:.1f} s")
        time.sleep(0.1)
    converged_at = max(ok_at.values()) - daemon.started_wall if ok_at else None
    elapsed = time.monotonic() - daemon.started
    cpu = cpu_times(daemon.pid)
    sandbox_times = cpu_times(sandbox.pid) - sandbox_cpu_before
    sandbox_cpu = sandbox_times.own
    mem = memory_kib(daemon.pid)
    counters = sandbox.counters()
    if failed:
        log(f"  {len(failed)} apps failing, for example:")
        for app, message in sorted(failed.items())[:10]:
            log(f"    {app}: {message}")
    out = {
        "seconds": round(converged_at, 2) if done >= apps and converged_at else None,
        "seen_by_harness_s": round(elapsed, 2),
        "converged_apps": done,
        "api_ready_s": round(ready, 2),
        "readyz_s": round(readyz, 2) if readyz is not None else None,
        "daemon_cpu_s": round(cpu.own, 2),
        "daemon_children_cpu_s": round(cpu.children, 2),
        "daemon_system_cpu_s": round(cpu.own_system, 2),
        "rss_peak_mib": round(mem.get("VmHWM", 0) / 1024, 1),
        "sandbox_cpu_s": round(sandbox_cpu, 2),
        "sandbox_system_cpu_s": round(sandbox_times.own_system, 2),
        "client_cost_ratio": round(cpu.own / sandbox_cpu, 2) if sandbox_cpu > 0 else None,
        "client_cost_ratio_with_children": round(cpu.total / sandbox_cpu, 2) if sandbox_cpu > 0 else None,
        "daemon_cpu_until_ready_s": round(cpu_at_ready, 2),
        "client_cost_ratio_after_ready": round((cpu.own - cpu_at_ready) / (cpu_times(sandbox.pid).own - sandbox_at_ready), 2)
        if cpu_times(sandbox.pid).own > sandbox_at_ready else None,
        "requests_by_verb": counters["by_verb"],
        "writes": counters["writes"],
        "failed_apps": len(failed),
        "failures": dict(sorted(failed.items())[:20]),
        "stopped_on_failures": stopped_on_failures,
    }
    if done < apps:
        try:
            states = daemon.apps()
        except Exception:
            states = []
        not_done = [a["name"] for a in states if not (a["sync"] == "Synced" and a["health"] == "Healthy")]
        out["not_converged"] = not_done[:20]
        out["not_converged_messages"] = {
            a["name"]: a["last_sync"]["message"][:300] for a in states if a["name"] in not_done[:5]
        }
    return out


def _to_quiet_middle(interval: float, jitter: float = 0.1) -> float:
    """Seconds until the wall clock is mid-way through the part of the poll cycle with no poll."""
    middle = (jitter * interval + interval) / 2
    return (middle - time.time() % interval) % interval


def noop_round(
    daemon: DaemonProc, sandbox: SandboxProc, git_log: Path, interval: float, profile: Path | None = None,
    settle: float = 0.0,
) -> dict[str, Any]:
    """Two intervals with nothing changed (sampled by py-spy into ``profile`` when given).

    ``settle``: seconds to wait once the daemon is idle, so that every app's first interval
    check after its sync (which compares each object once) falls before the window.
    """
    idle = wait_idle(daemon.pid, timeout=60)
    if settle:
        time.sleep(settle)
    # Polls fall on wall-clock instants k * interval + phase, every phase within the first
    # `interval_jitter` (default 0.1) of the interval (gitopsd.engine.triggers.aligned). A window
    # that starts mid-way through the quiet rest of the cycle holds exactly two poll instants of
    # every repository; one starting near an instant counted a late poll on both edges.
    offset = _to_quiet_middle(interval)
    time.sleep(offset)
    log(f"daemon idle after {idle:.1f} s (+{settle:g} s, +{offset:.1f} s to the middle of the poll cycle); "
        f"no-op round of {2 * interval:g} s")
    sandbox.reset_counters()
    # The harness's own /metrics scrapes stay outside the CPU window: at 1000 apps one
    # scrape costs the daemon about as much as a whole no-op interval of its apps.
    before_metrics = daemon.metrics()
    before_cpu = cpu_times(daemon.pid)
    before_lines = line_count(git_log)
    profiler = start_profiler(daemon.pid, profile) if profile is not None else None
    time.sleep(2 * interval)
    stop_profiler(profiler)
    counters = sandbox.counters()
    after_cpu = cpu_times(daemon.pid)
    after_metrics = daemon.metrics()
    used = after_cpu - before_cpu
    git_cmds = git_subcommands(git_log, before_lines)

    def delta(name: str, **labels: str) -> float:
        return metric_sum(after_metrics, name, **labels) - metric_sum(before_metrics, name, **labels)

    return {
        "seconds": 2 * interval,
        "intervals": 2,
        "requests_by_verb": counters["by_verb"],
        "requests_total": sum(counters["by_verb"].values()),
        "writes": counters["writes"],
        "discovery": counters["discovery"],
        "git_commands": git_cmds,
        "git_ls_remote_metric": delta("gitopsd_plugin_operations_total", operation="git_ls_remote"),
        "source_fetch_metric": delta("gitopsd_source_fetch_total"),
        "reconciles_metric": {r: delta("gitopsd_reconcile_total", result=r)
                              for r in ("succeeded", "failed", "unchanged", "skipped")},
        "daemon_cpu_s": round(used.own, 3),
        "daemon_children_cpu_s": round(used.children, 3),
        "daemon_cpu_per_interval_s": round(used.total / 2, 3),
    }


def plain_apps(specs: list[gen.AppSpec]) -> list[gen.AppSpec]:
    """The plain-YAML apps (drift and push targets)."""
    return [s for s in specs if s.kind == "plain"]


def _seconds_until(
    sandbox: SandboxProc, path: str, done: Callable[[dict[str, Any]], bool], start: float, timeout: float
) -> float | None:
    """Poll ``path`` every 10 ms until ``done(object)``; seconds since ``start``, or None on timeout."""
    while time.monotonic() - start < timeout:
        if done(sandbox.get(path).json()):
            return time.monotonic() - start
        time.sleep(0.01)
    return None


def drift_samples(daemon: DaemonProc, sandbox: SandboxProc, specs: list[gen.AppSpec], count: int,
                  timeout: float = 60.0) -> dict[str, Any]:
    """Scale deployment-0 of an app to 5 replicas (as ``kubectl scale`` does); time until it is 2 again."""
    targets = plain_apps(specs)
    times: list[float] = []
    failures = 0
    for k in range(count):
        spec = targets[(k * 7) % len(targets)]
        path = f"/apis/apps/v1/namespaces/{spec.namespace}/deployments/deployment-0"
        wait_idle(daemon.pid, threshold=0.1, window=0.3, timeout=30)
        start = time.monotonic()
        r = sandbox.client.patch(f"{path}/scale", content=json.dumps({"spec": {"replicas": 5}}),
                                 headers={"Content-Type": "application/merge-patch+json"},
                                 params={"fieldManager": "kubectl-scale"})
        r.raise_for_status()
        corrected = _seconds_until(sandbox, path, lambda o: o.get("spec", {}).get("replicas") == 2, start, timeout)
        if corrected is None:
            failures += 1
        else:
            times.append(corrected)
    return _summary(times, failures, count)


def push_samples(daemon: DaemonProc, sandbox: SandboxProc, repos: list[gen.Repo], secret: str, count: int,
                 timeout: float = 120.0) -> dict[str, Any]:
    """Commit a ConfigMap change, send a signed GitHub push webhook; time until the new value is live."""
    repo_of = {s.name: r for r in repos for s in r.specs}
    targets = plain_apps([s for r in repos for s in r.specs])
    times: list[float] = []
    failures = 0
    settle: list[float] = []
    for k in range(count):
        spec = targets[(k * 3 + 1) % len(targets)]
        repo = repo_of[spec.name]
        value = f"push-{k}-{uuid.uuid4().hex[:6]}"
        settle.append(wait_idle(daemon.pid, threshold=0.1, window=0.3, timeout=120))
        before = repo.head()
        gen.write_app(repo.work, spec, {2: value})
        after = repo.commit_and_push(f"push sample {k}: {spec.name}")
        body = json.dumps({
            "ref": "refs/heads/main",
            "before": before,
            "after": after,
            "repository": {"clone_url": repo.url, "html_url": repo.url, "default_branch": "main",
                           "full_name": "bench/apps"},
            "commits": [{"id": after, "added": [], "removed": [],
                         "modified": [f"{spec.path}/03-configmap-2.yaml"]}],
        }).encode()
        signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        start = time.monotonic()
        r = daemon.post("/hooks/github", body, headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={signature}",
            "Content-Type": "application/json",
        }, token="")
        if r.status_code != 202:
            log(f"  webhook answered {r.status_code}: {r.text[:200]}")
        path = f"/api/v1/namespaces/{spec.namespace}/configmaps/configmap-2"
        live = _seconds_until(sandbox, path, lambda o, value=value: (o.get("data") or {}).get("revision") == value, start, timeout)
        if live is None:
            failures += 1
        else:
            times.append(live)
    out = _summary(times, failures, count)
    out["apps_refreshed_per_push"] = max(len(r.specs) for r in repos)
    out["settle_before_each_s"] = round(statistics.mean(settle), 2) if settle else None
    return out


def _summary(times: list[float], failures: int, count: int) -> dict[str, Any]:
    def r(x: float | None) -> float | None:
        return round(x, 3) if x is not None else None

    return {
        "samples": count,
        "failures": failures,
        "p50_s": r(percentile(times, 0.5)),
        "p95_s": r(percentile(times, 0.95)),
        "max_s": r(max(times) if times else None),
        "all_s": [round(t, 3) for t in times],
    }


def delete_app_namespaces(sandbox: SandboxProc, specs: list[gen.AppSpec], timeout: float = 300.0) -> float:
    """Delete every app namespace (and so its objects); wait until they are gone."""
    start = time.monotonic()
    for spec in specs:
        sandbox.client.delete(f"/api/v1/namespaces/{spec.namespace}")
    names = {s.namespace for s in specs}
    while time.monotonic() - start < timeout:
        items = sandbox.get("/api/v1/namespaces").json().get("items") or []
        if not names & {i["metadata"]["name"] for i in items}:
            break
        time.sleep(0.2)
    return time.monotonic() - start


def baseline_round(checkout: Path, env: dict[str, str], sandbox: SandboxProc, timeout: float) -> dict[str, Any]:
    """One round of bench/baseline.sh: wall time, CPU of it and every child, API requests."""
    sandbox.reset_counters()
    start = time.monotonic()
    proc = subprocess.Popen(["bash", str(BASELINE_SCRIPT), str(checkout)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # wait4 gives the rusage of the script and of every process it waited for.
    deadline = start + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.02)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    counters = sandbox.counters()
    return {
        "seconds": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "failed_apps": proc.returncode,
        "stderr_tail": stderr[-500:],
        "requests_by_verb": counters["by_verb"],
        "requests_total": sum(counters["by_verb"].values()),
        "writes": counters["writes"],
    }


def verify_live(sandbox: SandboxProc, specs: list[gen.AppSpec]) -> dict[str, int]:
    """Counts of live objects per kind in the app namespaces (a sanity check)."""
    names = {s.namespace for s in specs}
    counts = {}
    for kind, path in (("deployments", "/apis/apps/v1/deployments"), ("services", "/api/v1/services"),
                       ("configmaps", "/api/v1/configmaps")):
        items = sandbox.get(path).json().get("items") or []
        counts[kind] = sum(1 for i in items if i["metadata"].get("namespace") in names
                           and i["metadata"]["name"] != "kube-root-ca.crt")
    return counts


# -- profiling ---------------------------------------------------------------------------------


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy (from the venv or PATH) sampling ``pid`` into ``out`` (collapsed stacks), or None."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        log("py-spy is not installed (pip install py-spy): not profiling")
        return None
    # BENCH_PYSPY_GIL=1: only the thread holding the GIL, so a sample is CPU spent in Python,
    # not a worker thread waiting for the GIL (which the default mode counts as active).
    gil = ["--gil"] if os.environ.get("BENCH_PYSPY_GIL") == "1" else []
    return subprocess.Popen([py_spy, "record", "--pid", str(pid), "--rate", os.environ.get("BENCH_PYSPY_RATE", "100"), "--format", "raw",
                             *gil, "--nonblocking", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop py-spy (SIGINT makes it write its output)."""
    if proc is None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def hot_spots(raw: Path, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Top frames of a py-spy raw profile: by self time and by inclusive time (share of samples)."""
    if not raw.exists():
        return {}
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            inclusive[f] = inclusive.get(f, 0) + n

    def ranked(d: dict[str, int]) -> list[tuple[str, float]]:
        return [(f, round(100 * c / total, 1)) for f, c in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    return {"samples": [("total", total)], "self_pct": ranked(own), "inclusive_pct": ranked(inclusive)}  # type: ignore[dict-item]


# -- report ----------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """Cores, Python, platform, date, load, tool versions, the commit measured."""
    def out(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            return ""

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "git": out(["git", "--version"]),
        "kubectl": out([str(TOOLS / "kubectl"), "version", "--client"]).splitlines()[0:1],
        "helm": out([str(TOOLS / "helm"), "version", "--short"]),
        "commit": out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
    }


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    """Daemon vs baseline: cold converge speed-up and no-op CPU ratio."""
    out: dict[str, Any] = {}
    cold, base = result.get("cold_converge") or {}, result.get("baseline") or {}
    bcold, bnoop = base.get("cold_round") or {}, base.get("noop_round") or {}
    if cold.get("seconds") and bcold.get("seconds"):
        out["cold_converge_speedup"] = round(bcold["seconds"] / cold["seconds"], 2)
    if cold.get("seconds") and bcold.get("cpu_s"):
        daemon_cpu = cold["daemon_cpu_s"] + cold["daemon_children_cpu_s"]
        out["cold_cpu_ratio"] = round(bcold["cpu_s"] / daemon_cpu, 2) if daemon_cpu else None
    noop = result.get("noop_round") or {}
    per = noop.get("daemon_cpu_per_interval_s")
    if per is not None and bnoop.get("cpu_s"):
        out["noop_cpu_ratio"] = round(bnoop["cpu_s"] / per, 1) if per > 0 else None
    if noop.get("requests_total") is not None and bnoop.get("requests_total"):
        per_req = noop["requests_total"] / 2
        out["noop_request_ratio"] = round(bnoop["requests_total"] / per_req, 1) if per_req else "all avoided"
    return out


def targets(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(target, aim, measured, met) rows."""
    rows: list[tuple[str, str, str, str]] = []
    apps = result["apps"]
    cold = result.get("cold_converge") or {}
    noop = result.get("noop_round") or {}
    drift = result.get("drift") or {}
    push = result.get("push") or {}
    rat = result.get("ratios") or {}

    def met(ok: bool | None) -> str:
        return "n/a" if ok is None else ("met" if ok else "MISSED")

    repos = result.get("repositories") or 1
    if cold:
        s = cold.get("seconds")
        rows.append(("all apps converge", f"{apps}", f"{cold.get('converged_apps')}"
                     + (f" ({cold.get('failed_apps')} failing)" if cold.get("failed_apps") else ""),
                     met(s is not None)))
        r = cold.get("readyz_s")
        # The aim is for 1000 apps configured; a start grows with the config (10,000: n/a).
        rows.append(("/readyz answers 200 after exec", "<= 0.5 s (up to 1000 apps)", f"{r} s",
                     met((r is not None and r <= 0.5) if apps <= 1000 else None)))
        c = cold.get("client_cost_ratio")
        rows.append(("client cost: daemon CPU / sandbox CPU (cold)", "<= 1.0", f"{c}", met(c is not None and c <= 1.0)))
    if apps >= 1000:
        s = cold.get("seconds")
        if apps < 10000:
            rows.append(("cold converge (1000 apps)", "<= 60 s", f"{s} s", met(s is not None and s <= 60)))
        limit = 600 if apps >= 10000 else 150
        rss = cold.get("rss_peak_mib")
        rows.append((f"peak RSS ({apps} apps)", f"<= {limit} MiB",
                     f"{result.get('rss_peak_mib_run')} MiB (at converge {rss})",
                     met((result.get("rss_peak_mib_run") or 1e9) <= limit)))
    if noop:
        git_cmds = noop.get("git_commands") or {}
        fetches = sum(v for k, v in git_cmds.items() if k in ("fetch", "clone", "archive"))
        ls = git_cmds.get("ls-remote", 0)
        rows.append(("no-op round: writes", "0", str(noop.get("writes")), met(noop.get("writes") == 0)))
        rows.append(("no-op round: fetches (git fetch/clone/archive)", "0", str(fetches), met(fetches == 0)))
        rows.append(("no-op round: ls-remote per repository per interval", "1", f"{ls / 2 / repos:g}",
                     met(ls / 2 / repos <= 1)))
        per = noop.get("daemon_cpu_per_interval_per_1000_apps_s")
        # The issue sets this aim for 10,000 apps (n/a below 1000): below that an
        # interval's fixed cost (one ls-remote child per repository, the daemon's own timers)
        # is most of the figure, and scaling it to 1000 apps multiplies it by 1000 / apps.
        if per is not None:
            rows.append(("no-op CPU per interval per 1000 apps", "<= 0.1 s (from 1000 apps)", f"{per} s",
                         met(per <= 0.1 if apps >= 1000 else None)))
    if drift:
        p = drift.get("p50_s")
        rows.append(("drift p50", "<= 1 s", f"{p} s", met(p is not None and p <= 1 and not drift.get("failures"))))
    if push:
        p = push.get("p50_s")
        aim = 2 if apps >= 10000 else 1
        rows.append(("push -> applied p50", f"<= {aim} s", f"{p} s",
                     met(p is not None and p <= aim and not push.get("failures"))))
    if "cold_converge_speedup" in rat:
        v = rat["cold_converge_speedup"]
        rows.append(("cold converge vs baseline", ">= 3x faster", f"{v}x", met(v >= 3)))
    if "noop_cpu_ratio" in rat:
        v = rat["noop_cpu_ratio"]
        rows.append(("no-op round CPU vs baseline round", ">= 10x cheaper", f"{v}x", met(v >= 10)))
    return rows


def _x(value: Any) -> str:
    """A ratio for the table: ``12.5x``, or the value as it is when it is not a number."""
    return f"{value}x" if isinstance(value, int | float) else str(value or "-")


def markdown(result: dict[str, Any]) -> str:
    """One size's results as markdown."""
    m = result["machine"]
    cold = result.get("cold_converge") or {}
    noop = result.get("noop_round") or {}
    drift = result.get("drift") or {}
    push = result.get("push") or {}
    base = result.get("baseline") or {}
    bcold, bnoop = base.get("cold_round") or {}, base.get("noop_round") or {}
    lines = [
        f"## {result['apps']} apps x {result['objects']} objects",
        "",
        f"`{result['command']}` — {m['date']}, {m['cores']} cores, Python {m['python']}, "
        f"commit {m['commit']}, load average at start {m['load_avg_at_start']}, "
        f"a file created in the work directory (the daemon's state) {m.get('workdir_file_create_us')} us of CPU, "
        f"interval {result['interval_s']:g} s, sandbox rollout delay {result['rollout_delay_s']:g} s, "
        f"{result.get('repositories') or 1} repositories.",
        "",
        "| measure | gitopsd | baseline loop | ratio |",
        "|---|---|---|---|",
        f"| cold converge (wall) | {cold.get('seconds')} s (all Synced+Healthy) | {bcold.get('seconds')} s (one round, no health wait) "
        f"| {result.get('ratios', {}).get('cold_converge_speedup')}x |",
        f"| cold converge CPU | {cold.get('daemon_cpu_s')} s daemon (system {cold.get('daemon_system_cpu_s')} s) "
        f"+ {cold.get('daemon_children_cpu_s')} s children "
        f"| {bcold.get('cpu_s')} s | {result.get('ratios', {}).get('cold_cpu_ratio')}x |",
        f"| peak RSS | {result.get('rss_peak_mib_run')} MiB (at converge {cold.get('rss_peak_mib')}) | - | |",
        f"| no-op round CPU (per interval) | {noop.get('daemon_cpu_per_interval_s')} s | {bnoop.get('cpu_s')} s per round "
        f"| {result.get('ratios', {}).get('noop_cpu_ratio')}x |",
        f"| no-op round wall | - (background) | {bnoop.get('seconds')} s | |",
        f"| no-op API requests | {noop.get('requests_total')} over 2 intervals {noop.get('requests_by_verb')} "
        f"| {bnoop.get('requests_total')} per round {bnoop.get('requests_by_verb')} | {_x(result.get('ratios', {}).get('noop_request_ratio'))} |",
        f"| no-op writes | {noop.get('writes')} | {bnoop.get('writes')} (SSA no-op patches) | |",
        f"| no-op git commands | {noop.get('git_commands')} | 1 pull (fetch+merge) | |",
        f"| drift p50 / p95 | {drift.get('p50_s')} / {drift.get('p95_s')} s ({drift.get('samples')} samples, "
        f"{drift.get('failures')} failed) | next round | |",
        f"| push -> applied p50 / p95 | {push.get('p50_s')} / {push.get('p95_s')} s ({push.get('samples')} samples, "
        f"{push.get('failures')} failed; {push.get('apps_refreshed_per_push')} apps refreshed per push) | next round | |",
        f"| sandbox CPU during cold converge | {cold.get('sandbox_cpu_s')} s (system {cold.get('sandbox_system_cpu_s')} s) | | daemon/sandbox "
        f"{cold.get('client_cost_ratio')} ({cold.get('client_cost_ratio_with_children')} with children, "
        f"{cold.get('client_cost_ratio_after_ready')} after /readyz) |",
        f"| API answers / ready after exec | {cold.get('api_ready_s')} s / {cold.get('readyz_s')} s | | |",
        "",
        "| target | aim | measured | |",
        "|---|---|---|---|",
    ]
    for row in targets(result):
        lines.append("| " + " | ".join(row) + " |")
    if result.get("notes"):
        lines += ["", *[f"- {n}" for n in result["notes"]]]
    return "\n".join(lines) + "\n"


def write_results(result: dict[str, Any], out_dir: Path) -> None:
    """Write this size's files, then latest.json/latest.md over every size measured."""
    out_dir.mkdir(parents=True, exist_ok=True)
    key = f"{result['apps']}x{result['objects']}"
    (out_dir / f"{key}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / f"{key}.md").write_text(markdown(result))
    runs = {}
    for path in sorted(out_dir.glob("*x*.json")):
        if not re.fullmatch(r"\d+x\d+", path.stem):
            continue
        try:
            runs[path.stem] = json.loads(path.read_text())
        except ValueError:
            continue
    ordered = sorted(runs.values(), key=lambda r: (r["apps"], r["objects"]))
    (out_dir / "latest.json").write_text(json.dumps({
        "machine": result["machine"],
        "targets": TARGETS,
        "runs": {f"{r['apps']}x{r['objects']}": r for r in ordered},
        "ratios": {f"{r['apps']}x{r['objects']}": r.get("ratios") for r in ordered},
    }, indent=2) + "\n")
    header = ("# gitopsd benchmark results\n\nGenerated by `python -m bench.run` (see bench/run.py for what each "
              "phase measures). Each size is from its own run; targets are reported, not asserted.\n\n")
    (out_dir / "latest.md").write_text(header + "\n".join(markdown(r) for r in ordered))


# -- main ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every phase; returns the result dict."""
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gitopsd-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    interval = args.interval or (15.0 if args.apps <= 200 else 30.0)
    result: dict[str, Any] = {
        "apps": args.apps,
        "objects": args.objects,
        "command": f"python -m bench.run --apps {args.apps} --objects {args.objects}",
        "interval_s": interval,
        "rollout_delay_s": args.rollout_delay,
        "machine": machine_info(),
        "plugins_disabled": os.environ.get("GITOPSD_DISABLE_PLUGINS", ",".join(third_party_plugins())),
        "bytecode_cache": True,  # the daemon runs with its bytecode, as an installed gitopsd does
        "notes": [],
    }
    result["machine"]["workdir_file_create_us"] = round(file_create_cost(workdir), 1)
    log(f"workdir {workdir}")
    t = time.monotonic()
    repos = gen.generate_repos(workdir / "repo", args.apps, args.objects, args.repos)
    specs = [s for r in repos for s in r.specs]
    result["repositories"] = len(repos)
    if len(repos) > 1:
        result["command"] += f" --repos {len(repos)}"
    result["generate_s"] = round(time.monotonic() - t, 2)
    log(f"generated {args.apps} apps x {args.objects} objects in {result['generate_s']} s")

    secret, token = uuid.uuid4().hex, uuid.uuid4().hex
    for name, value in (("github-secret", secret), ("api-token", token)):
        (workdir / name).write_text(value + "\n")
        (workdir / name).chmod(0o600)  # gitopsd refuses secret files others can read
    git_log = workdir / "git-commands.log"
    wrapper = write_git_wrapper(workdir / "bin", git_log)
    port = free_port()

    sandbox = SandboxProc.start(workdir / "sandbox", rollout_delay=args.rollout_delay)
    daemon: DaemonProc | None = None
    try:
        config = write_config(
            workdir / "gitopsd.toml", repo_url={s.name: r.url for r in repos for s in r.specs}, specs=specs, kubeconfig=sandbox.kubeconfig,
            state_dir=workdir / "state", port=port, token_file=workdir / "api-token",
            hook_secret_file=workdir / "github-secret", git=wrapper, interval=interval,
        )
        if not args.skip_daemon:
            sandbox.reset_counters()
            sandbox_cpu_before = cpu_times(sandbox.pid)
            log("starting gitopsd")
            warmed = warm_bytecode(workdir / "pycache")
            daemon = DaemonProc.start(config, port, token, workdir / "gitopsd.log",
                                      env=bytecode_env(tool_env([workdir / "bin"]), workdir / "pycache"))
            profiler = start_profiler(daemon.pid, workdir / "profile-cold.txt") if args.profile else None
            result["cold_converge"] = cold_converge(daemon, sandbox, args.apps, args.timeout,
                                                    sandbox_cpu_before=sandbox_cpu_before, stall=args.stall)
            stop_profiler(profiler)
            compiled = compiled_since(workdir / "pycache", warmed)
            if compiled:
                # Its CPU then includes Python's compiler: bench.procs.CONVERGE_IMPORTS lacks these.
                result["cold_converge"]["compiled_modules"] = compiled
                modules = f"{len(compiled)} module" + ("s" if len(compiled) > 1 else "")
                result["notes"].append(f"The daemon's cold-converge CPU includes compiling {modules} "
                                       f"the warm-up left out: {', '.join(compiled)}")
                log(f"WARNING: the daemon compiled {modules} during the cold converge: {compiled}")
            if args.profile:
                result["profile_cold"] = hot_spots(workdir / "profile-cold.txt")
            log(f"cold converge: {result['cold_converge']}")
            result["live_objects"] = verify_live(sandbox, specs)
            if result["cold_converge"]["seconds"] is not None and not args.cold_only:
                result["noop_round"] = noop_round(daemon, sandbox, git_log, interval,
                                                  workdir / "profile-noop.txt" if args.profile else None,
                                                  settle=interval + 5 if args.noop_settle is None else args.noop_settle)
                if args.profile:
                    result["profile_noop"] = hot_spots(workdir / "profile-noop.txt")
                result["noop_round"]["daemon_cpu_per_interval_per_1000_apps_s"] = round(
                    result["noop_round"]["daemon_cpu_per_interval_s"] * 1000 / args.apps, 3)
                log(f"no-op round: {result['noop_round']}")
                result["drift"] = drift_samples(daemon, sandbox, specs, args.drift_samples)
                log(f"drift: {result['drift']}")
                if args.objects >= 3:
                    profiler = start_profiler(daemon.pid, workdir / "profile-push.txt") if args.profile else None
                    result["push"] = push_samples(daemon, sandbox, repos, secret, args.push_samples)
                    stop_profiler(profiler)
                    if args.profile:
                        result["profile_push"] = hot_spots(workdir / "profile-push.txt")
                    log(f"push: {result['push']}")
            result["rss_peak_mib_run"] = round(memory_kib(daemon.pid).get("VmHWM", 0) / 1024, 1)
            total = cpu_times(daemon.pid)
            result["daemon_cpu_total_s"] = round(total.total, 2)
            code = daemon.stop()
            result["daemon_exit_code"] = code
            log(f"gitopsd stopped with exit code {code}")
        if len(repos) > 1 and not args.skip_baseline:
            result["notes"].append("baseline skipped: it runs on one repository")
        elif not args.skip_baseline:
            repo = repos[0]
            gone = delete_app_namespaces(sandbox, repo.specs)
            log(f"deleted the app namespaces in {gone:.1f} s; running the baseline")
            checkout = workdir / "baseline-checkout"
            gen.git(workdir, "clone", "-q", repo.url, str(checkout))
            home = workdir / "baseline-home"
            home.mkdir(exist_ok=True)
            env = tool_env(HOME=str(home), KUBECONFIG=str(sandbox.kubeconfig))
            cold = baseline_round(checkout, env, sandbox, args.timeout * 2)
            log(f"baseline cold round: {cold}")
            noop = baseline_round(checkout, env, sandbox, args.timeout * 2)
            log(f"baseline no-op round: {noop}")
            result["baseline"] = {"cold_round": cold, "noop_round": noop,
                                  "live_objects": verify_live(sandbox, repo.specs)}
    finally:
        if daemon is not None and daemon.alive():
            daemon.stop()
        sandbox.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept {workdir}")
    result["ratios"] = ratios(result)
    result["harness_children_rusage_s"] = round(
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime + resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, write results."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--apps", type=int, default=100)
    p.add_argument("--objects", type=int, default=10)
    p.add_argument("--interval", type=float, default=0.0, help="poll interval (default 15 s, 30 s above 200 apps)")
    p.add_argument("--rollout-delay", type=float, default=0.2)
    p.add_argument("--drift-samples", type=int, default=20)
    p.add_argument("--push-samples", type=int, default=10)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds for the cold converge")
    p.add_argument("--stall", type=float, default=120.0,
                   help="stop waiting for the cold converge when no app progresses for this long")
    p.add_argument("--repos", type=int, default=1, help="spread the apps over this many repositories")
    p.add_argument("--noop-settle", type=float, default=None,
                   help="seconds to wait after the daemon is idle before the no-op round, so it measures the "
                        "steady state (default: one interval and 5 s; 0: start at once)")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--skip-daemon", action="store_true")
    p.add_argument("--cold-only", action="store_true", help="gitopsd: only the cold converge (profiling)")
    p.add_argument("--workdir", help="keep everything here (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="do not delete the work directory")
    p.add_argument("--out", default=str(RESULTS), help="results directory")
    p.add_argument("--no-write", action="store_true", help="print, do not write bench/results")
    p.add_argument("--profile", action="store_true", help="sample the daemon with py-spy (cold converge, no-op round, pushes)")
    args = p.parse_args(argv)
    result = run(args)
    print(markdown(result))
    if not args.no_write:
        write_results(result, Path(args.out))
        log(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
