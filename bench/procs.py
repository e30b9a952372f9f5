"""Real processes for the benchmark and the reliability suite: the sandbox, the daemon, and /proc readings.

Nothing here imports gitopsd: the sandbox and the daemon run as separate processes
(``gitopsd sandbox`` and ``python -m gitopsd run``), talked to over HTTP only.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def gitopsd_command() -> list[str]:
    """How to run gitopsd: ``$BENCH_GITOPSD`` (shell words) or ``python -m gitopsd``."""
    import shlex

    custom = os.environ.get("BENCH_GITOPSD")
    return shlex.split(custom) if custom else [sys.executable, "-m", "gitopsd"]


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def third_party_plugins() -> list[str]:
    """Entry-point names of installed gitopsd plugins that are not gitopsd's own.

    The development venv installs the example plugin, whose (unconfigured) post-render hook
    would make every render copy its manifests: the benchmark measures gitopsd as shipped.
    """
    from importlib.metadata import entry_points

    return sorted(
        ep.name for ep in entry_points(group="gitopsd")
        if ep.dist is None or ep.dist.metadata["Name"].lower() != "gitopsd"
    )


def tool_env(extra_path: list[Path] | None = None, **extra: str) -> dict[str, str]:
    """The environment for children: ``extra_path`` and the pinned ``.tools`` first on PATH."""
    paths = [str(p) for p in (extra_path or [])] + [str(TOOLS), os.environ.get("PATH", "")]
    env = {**os.environ, "PATH": os.pathsep.join(paths), **extra}
    env.pop("NOTIFY_SOCKET", None)
    env.pop("GITOPSD_CONFIG", None)
    return env


DAEMON_IMPORTS = "import gitopsd.cli.main, gitopsd.daemon.supervisor, gitopsd.kube, gitopsd.kube.k8s as k; k.load()"
"""What ``gitopsd run`` imports before it serves (the plugins' modules come on top)."""


def bytecode_env(env: dict[str, str], cache: Path | None) -> dict[str, str]:
    """``env`` with Python allowed to write (and read) bytecode under ``cache`` (None: unchanged).

    Python compiles a module's source on every import when it may not write bytecode
    (``PYTHONDONTWRITEBYTECODE``, set in some development shells); an installed gitopsd has
    its bytecode, so the benchmarks give the daemon a cache like it.
    """
    if cache is None:
        return env
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


CONVERGE_IMPORTS = "import ctypes, gitopsd.core.yamlio, gitopsd_plugins._gittree, prometheus_client.metrics"
"""What ``gitopsd run`` imports after /readyz for the benchmark's first converge (manifests, git
trees, the heap trim's C library calls, the metric types; after :data:`WARM_IMPORTS`' import of
``gitopsd.server``, prometheus_client's submodules without its package's exposition servers).
A benchmark that measures the converge must not measure Python compiling them
(:func:`compiled_since`)."""

WARM_IMPORTS = (
    DAEMON_IMPORTS
    + "; from gitopsd.plugin.manager import PluginManager; PluginManager()"
    + "; import concurrent.futures.thread, encodings.idna, anyio, anyio._core._signals, gitopsd.server.ui"
    + "; from gitopsd.cli.main import event_loop_options; anyio.run(anyio.sleep, 0, backend_options=event_loop_options())"
    + "; " + CONVERGE_IMPORTS
    # `python -m gitopsd` runs gitopsd/__main__.py from the cache too; importing it would run the CLI.
    + "; import importlib.util, py_compile; py_compile.compile(importlib.util.find_spec('gitopsd.__main__').origin)"
)
"""What :func:`warm_bytecode` runs: the daemon's modules, every plugin's, what ``gitopsd run``
loads while it starts (anyio's backend, uvloop, the web page's views) and what its first
converge loads: every module imported before /readyz (tests/unit/test_startup_imports.py
checks) and after it (the converge benchmarks check: :func:`compiled_since`)."""


def warm_bytecode(cache: Path) -> frozenset[Path]:
    """Fill ``cache`` with the bytecode of every module ``gitopsd run`` imports (:data:`WARM_IMPORTS`).

    With ``PYTHONPYCACHEPREFIX`` Python reads bytecode only from the cache (the standard
    library's too): a module left out is compiled by the first measured run. Returns the
    cache's files, for :func:`compiled_since`.
    """
    subprocess.run([sys.executable, "-c", WARM_IMPORTS], check=True, env=bytecode_env(dict(os.environ), cache))
    return frozenset(cache.rglob("*.pyc"))


def compiled_since(cache: Path, warmed: frozenset[Path]) -> list[str]:
    """The modules (their sources' paths) Python compiled into ``cache`` after :func:`warm_bytecode`.

    A measured run that compiles a module measures Python's compiler with the daemon (bench
    100x10: 14 modules after /readyz, 2.5 % of the converge's instructions): the converge
    benchmarks refuse or flag such a run, naming what :data:`CONVERGE_IMPORTS` lacks.
    """
    return sorted(
        "/" + str(p.relative_to(cache).parent / p.name.split(".", 1)[0]) + ".py"
        for p in set(cache.rglob("*.pyc")) - warmed
    )


# -- /proc ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuTimes:
    """CPU seconds of a process: its own threads, and its reaped children (git, helm, kubectl).

    ``own_system`` is the kernel's part of ``own`` (files, sockets, processes): callgrind does
    not count it, so it is where the CPU seconds and the instruction counts part.
    """

    own: float
    children: float
    own_system: float = 0.0

    @property
    def total(self) -> float:
        """Own plus children."""
        return self.own + self.children

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.own - other.own, self.children - other.children, self.own_system - other.own_system)


def file_create_cost(directory: Path, files: int = 600) -> float:
    """CPU microseconds this process spends per file it creates under ``directory``, as a tree's extraction does.

    One new directory per six files, each file created, written and closed, then all removed.
    The daemon extracts every fetched tree into its state directory: where creating a file is
    slow, its system time grows with the repository (one machine, quiet: 90-160 us per file in
    /tmp, 20-60 in /var/tmp; several times more while other processes created files too). The
    benchmarks report it beside their CPU figures, as the load average.
    """
    scratch = Path(tempfile.mkdtemp(prefix="create-cost-", dir=directory))
    try:
        start = resource.getrusage(resource.RUSAGE_SELF)
        for i in range(files):
            if i % 6 == 0:
                folder = scratch / f"d{i}"
                folder.mkdir()
            fd = os.open(folder / f"f{i}.yaml", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, b"kind: ConfigMap\n")
            os.close(fd)
        end = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    cpu = (end.ru_utime - start.ru_utime) + (end.ru_stime - start.ru_stime)
    return cpu / files * 1e6


def cpu_times(pid: int) -> CpuTimes:
    """utime+stime, cutime+cstime and stime of ``pid`` from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text.rpartition(")")[2].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return CpuTimes((utime + stime) / CLK_TCK, (cutime + cstime) / CLK_TCK, stime / CLK_TCK)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of ``pid`` in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def wait_idle(pid: int, threshold: float = 0.05, window: float = 0.5, timeout: float = 60.0) -> float:
    """Wait until ``pid`` uses less than ``threshold`` of a core over ``window`` seconds; return the wait."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        before = cpu_times(pid).total
        time.sleep(window)
        if (cpu_times(pid).total - before) / window < threshold:
            break
    return time.monotonic() - start


# -- callgrind --------------------------------------------------------------------------------


def collected(valgrind_log: str) -> int | None:
    """The instructions callgrind says a whole run collected (its last words), None if it did not say."""
    m = re.search(r"Collected : (\d+)", valgrind_log)
    return int(m[1]) if m else None


def callgrind(
    argv: list[str], what: str, *, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 1800,
) -> tuple[int, str]:
    """Run ``argv`` under ``valgrind --tool=callgrind`` (``PYTHONHASHSEED=0``); (its instructions, its stdout).

    Raises RuntimeError naming ``what`` with valgrind's last words when the run fails, and
    SystemExit when valgrind is not installed.
    """
    if shutil.which("valgrind") is None:
        raise SystemExit("this benchmark counts instructions with valgrind (apt-get install valgrind)")
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        capture_output=True, text=True, env={**(os.environ if env is None else env), "PYTHONHASHSEED": "0"},
        cwd=cwd, timeout=timeout,
    )
    count = collected(proc.stderr)
    if proc.returncode != 0 or count is None:
        raise RuntimeError(f"{what} failed under callgrind (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return count, proc.stdout


@dataclass
class CallgrindCounter:
    """A process's instructions over chosen stretches of its life: a figure load cannot move.

    Start the process under :meth:`wrapper` (callgrind with instrumentation off); each
    :meth:`start` / :meth:`stop` pair counts only what runs in between. valgrind keeps the
    program's pid, so ``pid`` is the ``Popen``'s.
    """

    pid: int
    out: Path
    dumps: int = 0

    @staticmethod
    def wrapper(out: Path) -> list[str]:
        """The command prefix: callgrind, instrumentation off until :meth:`start`, dumps to ``out.N``."""
        return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]

    def control(self, *args: str) -> None:
        """Run ``callgrind_control ARGS PID``."""
        subprocess.run(["callgrind_control", *args, str(self.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def start(self) -> None:
        """Count from now on."""
        self.control("--instr=on")

    def stop(self, label: str) -> int:
        """Stop counting; the instructions since the last :meth:`stop` (counted while on)."""
        self.control("--instr=off")
        self.control(f"--dump={label}")
        self.dumps += 1
        return self.totals(Path(f"{self.out}.{self.dumps}"))

    @staticmethod
    def totals(dump: Path) -> int:
        """The instructions a callgrind dump file counts."""
        for line in dump.read_text().splitlines():
            if line.startswith("totals:"):
                return int(line.split()[1])
        raise RuntimeError(f"no totals in callgrind dump {dump}")


# -- the sandbox ------------------------------------------------------------------------------


@dataclass
class SandboxProc:
    """``gitopsd sandbox`` in its own process, with an HTTP client that speaks to it as an admin."""

    proc: subprocess.Popen[bytes]
    kubeconfig: Path
    url: str
    token: str
    ca_file: Path
    client: httpx.Client = field(repr=False)

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        faults: str | None = None,
        seed: int = 0,
        rollout_delay: float = 0.2,
        timeout: float = 30.0,
        token: str | None = None,
        wrapper: list[str] | None = None,
    ) -> SandboxProc:
        """Start the sandbox; return once it wrote its kubeconfig (it then accepts requests).

        ``wrapper``: a command line the sandbox runs under (``valgrind ...``); the process keeps
        its pid, so ``callgrind_control PID`` reaches it.
        """
        workdir.mkdir(parents=True, exist_ok=True)
        kubeconfig = workdir / "sandbox.kubeconfig"
        kubeconfig.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "gitopsd", "sandbox", "--kubeconfig", str(kubeconfig),
                "--seed", str(seed), "--rollout-delay", str(rollout_delay)]
        if wrapper:
            argv = [*wrapper, *argv]
        if faults:
            argv += ["--faults", faults]
        if token:
            argv += ["--token", token]
        log = (workdir / "sandbox.log").open("ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=tool_env(), cwd=workdir)
        deadline = time.monotonic() + timeout
        while not kubeconfig.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"the sandbox exited with {proc.returncode}: see {workdir / 'sandbox.log'}")
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the sandbox did not write its kubeconfig in time")
            time.sleep(0.05)
        time.sleep(0.05)  # the file is written in one go, but be kind to a reader racing the writer
        config = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        token = config["users"][0]["user"]["token"]
        ca_file = workdir / "sandbox-ca.pem"
        ca_file.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        ctx = ssl.create_default_context(cafile=str(ca_file))
        client = httpx.Client(base_url=cluster["server"], verify=ctx, timeout=30.0,
                              headers={"Authorization": f"Bearer {token}"})
        return cls(proc, kubeconfig, cluster["server"], token, ca_file, client)

    @property
    def pid(self) -> int:
        """The sandbox's process id."""
        return self.proc.pid

    def counters(self) -> dict[str, Any]:
        """The request counters (see gitopsd.sandbox.counters)."""
        return self.client.get("/sandbox/counters").raise_for_status().json()

    def reset_counters(self) -> None:
        """Zero the request counters."""
        self.client.delete("/sandbox/counters").raise_for_status()

    def set_faults(self, spec: dict[str, Any] | None) -> None:
        """Replace the fault rules (None clears them)."""
        import json

        self.client.post("/sandbox/faults", content=json.dumps(spec) if spec else b"").raise_for_status()

    def faults(self) -> dict[str, Any]:
        """The active rules and how many faults were injected."""
        return self.client.get("/sandbox/faults").raise_for_status().json()

    def stats(self) -> dict[str, Any]:
        """Objects, resourceVersion, watches."""
        return self.client.get("/sandbox/stats").raise_for_status().json()

    def get(self, path: str) -> httpx.Response:
        """GET an API path."""
        return self.client.get(path)

    def list_managed(self, plural_path: str) -> list[dict[str, Any]]:
        """Every object at ``plural_path`` (e.g. ``/apis/apps/v1/deployments``) labelled managed-by gitopsd."""
        r = self.client.get(plural_path, params={"labelSelector": "app.kubernetes.io/managed-by=gitopsd"})
        r.raise_for_status()
        return r.json().get("items") or []

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        self.client.close()
        stop_process(self.proc, 10.0)


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """SIGTERM ``proc``, wait ``timeout`` seconds, then SIGKILL; return its exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


# -- the daemon -------------------------------------------------------------------------------


def toml_str(value: str | Path) -> str:
    """A TOML basic string."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


@dataclass
class DaemonProc:
    """``python -m gitopsd run -c CONFIG`` in its own process, with an HTTP client for its API."""

    proc: subprocess.Popen[bytes]
    config: Path
    port: int
    token: str
    log: Path
    started: float
    started_wall: float
    client: httpx.Client = field(repr=False)

    @classmethod
    def start(cls, config: Path, port: int, token: str, log: Path, env: dict[str, str] | None = None) -> DaemonProc:
        """Start the daemon (returns at once; see :meth:`wait_ready`)."""
        out = log.open("ab")
        env = dict(env or tool_env())
        env.setdefault("GITOPSD_DISABLE_PLUGINS", ",".join(third_party_plugins()))
        started, started_wall = time.monotonic(), time.time()
        proc = subprocess.Popen(
            [*gitopsd_command(), "run", "-c", str(config)],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=config.parent,
        )
        def read_with_token(request: httpx.Request) -> None:
            # Reads need the token too (daemon.api_token_file); POSTs choose theirs in post().
            if request.method == "GET" and token and "Authorization" not in request.headers:
                request.headers["Authorization"] = f"Bearer {token}"

        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=30.0, event_hooks={"request": [read_with_token]}
        )
        return cls(proc, config, port, token, log, started, started_wall, client)

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        return self.proc.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait until /healthz answers; return seconds since start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"gitopsd exited with {self.proc.returncode}: see {self.log}")
            with contextlib.suppress(httpx.HTTPError):
                if self.client.get("/healthz").status_code == 200:
                    return time.monotonic() - self.started
            time.sleep(0.02)
        raise RuntimeError(f"gitopsd did not answer /healthz within {timeout} s: see {self.log}")

    def wait_readyz(self, timeout: float = 60.0) -> float | None:
        """Wait until /readyz answers 200; seconds since start, or None on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"gitopsd exited with {self.proc.returncode}: see {self.log}")
            with contextlib.suppress(httpx.HTTPError):
                if self.client.get("/readyz").status_code == 200:
                    return time.monotonic() - self.started
            time.sleep(0.02)
        return None

    def apps(self) -> list[dict[str, Any]]:
        """GET /api/v1/apps."""
        return self.client.get("/api/v1/apps").raise_for_status().json()["apps"]

    def metrics_text(self) -> str:
        """GET /metrics."""
        return self.client.get("/metrics").raise_for_status().text

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """/metrics parsed: {(name, labels): value}."""
        return parse_metrics(self.metrics_text())

    def converged(self) -> tuple[int, int]:
        """(apps Synced and Healthy, apps) from the per-app gauges in /metrics."""
        values = self.metrics()
        synced = {dict(lb)["app"] for (n, lb), v in values.items()
                  if n == "gitopsd_app_sync_status" and v == 1.0 and dict(lb).get("status") == "Synced"}
        healthy = {dict(lb)["app"] for (n, lb), v in values.items()
                   if n == "gitopsd_app_health" and v == 1.0 and dict(lb).get("health") == "Healthy"}
        total = int(values.get(("gitopsd_apps", frozenset()), 0))
        return len(synced & healthy), total

    def post(self, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
             token: str | None = None) -> httpx.Response:
        """POST to the API; ``token`` (default: the configured one) as a bearer token."""
        hdrs = dict(headers or {})
        tok = self.token if token is None else token
        if tok:
            hdrs.setdefault("Authorization", f"Bearer {tok}")
        return self.client.post(path, content=body, headers=hdrs)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the daemon drains), SIGKILL after ``timeout``; return the exit code."""
        self.client.close()
        return stop_process(self.proc, timeout)

    def kill(self) -> None:
        """SIGKILL at once (a crash)."""
        self.client.close()
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(10)


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text format -> {(name, frozenset(labels)): value} (no escapes in label values assumed)."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels: list[tuple[str, str]] = []
        if rest:
            for part in rest.rstrip("}").split('",'):
                if not part:
                    continue
                k, _, v = part.partition("=")
                labels.append((k.strip(","), v.strip('"')))
        try:
            out[(name, frozenset(labels))] = float(value)
        except ValueError:
            continue
    return out


def metric_sum(values: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """Sum of every series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lb), v in values.items() if n == name and want <= set(lb))


def write_git_wrapper(bin_dir: Path, log: Path, real_git: str | None = None) -> Path:
    """A ``git`` on PATH that appends its argv to ``log`` and runs the real git (counts git commands)."""
    import shutil

    real = real_git or shutil.which("git") or "/usr/bin/git"
    bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = bin_dir / "git"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {toml_str(log)}\nexec {toml_str(real)} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def git_subcommands(log: Path, start: int = 0) -> dict[str, int]:
    """Count the git subcommands logged by the wrapper, from line ``start`` on."""
    counts: dict[str, int] = {}
    if not log.exists():
        return counts
    for line in log.read_text().splitlines()[start:]:
        words = line.split()
        i = 0
        while i < len(words) and words[i].startswith("-"):
            i += 2 if words[i] in ("-c", "-C") else 1
        sub = words[i] if i < len(words) else "?"
        counts[sub] = counts.get(sub, 0) + 1
    return counts


def line_count(path: Path) -> int:
    """Lines in ``path`` (0 when missing)."""
    return len(path.read_text().splitlines()) if path.exists() else 0
