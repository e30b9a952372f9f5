"""Start-up: seconds from exec until ``gitopsd run`` answers /healthz and /readyz, with N apps.

    python -m bench.startup --apps 1000 [--runs 3]

The apps are the benchmark's (bench/gen.py, one object each) on the sandbox. Each run starts
a fresh daemon on a fresh state directory, waits for /readyz, records the daemon's CPU
seconds at that moment, and stops it. Also reports ``python -X importtime`` of the daemon's
imports (the sum of the top-level entries), their CPU seconds and the number of modules
they load: ``importtime_*`` for all of them (``DAEMON_IMPORTS``: the Kubernetes layer too),
``ready_importtime_*`` for those ``gitopsd run`` does before /readyz (the Kubernetes layer
and aiohttp's client come after, in a worker thread; the plugins' modules are left out of both).

Python compiles a module's source on every import when it may not write bytecode
(``PYTHONDONTWRITEBYTECODE``, set in some development shells): an installed gitopsd has its
``.pyc`` files (pip writes them), so by default the daemon and the import measurements run
with a bytecode cache in the work directory (``PYTHONPYCACHEPREFIX``), warmed once before
the first measurement. ``--no-bytecode-cache`` measures with the environment as it is.

``--instructions`` also counts the instructions the daemon runs from exec until it accepts
(/readyz 200), under ``valgrind --tool=callgrind`` (``PYTHONHASHSEED=0``, one run of
about a minute): a figure the machine's load cannot move, for A/B comparisons of start-up
changes (two runs of one tree agree within 0.1 %).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench import gen
from bench.procs import (
    DAEMON_IMPORTS,
    DaemonProc,
    SandboxProc,
    bytecode_env,
    callgrind,
    cpu_times,
    free_port,
    third_party_plugins,
    tool_env,
    warm_bytecode,
    write_git_wrapper,
)
from bench.run import log, write_config

READY_IMPORTS = "import gitopsd.cli.main, gitopsd.daemon.supervisor"
"""What ``gitopsd run`` imports before /readyz answers (the plugins' modules come on top)."""

REFERENCE_IMPORTS = "import asyncio, email.message, sqlite3, json"
"""Standard-library imports no change to gitopsd moves: their import time, measured beside the
daemon's, says how fast the machine is at the moment (this one's vary by half between hours)."""

_RUSAGE = "; import resource, sys; r = resource.getrusage(resource.RUSAGE_SELF); print(r.ru_utime + r.ru_stime, len(sys.modules))"

_TO_READY = r"""
import os, sys
import gitopsd.daemon.supervisor as supervisor
from gitopsd.cli.main import cli

class Daemon(supervisor.Daemon):
    async def _open_clusters(self, **kwargs):
        # Called right after the daemon starts accepting (/readyz 200): stop counting here.
        sys.stdout.write(f"{len(sys.modules)}\n")
        sys.stdout.flush()
        os._exit(0 if self.accepting.is_set() else 1)

supervisor.Daemon = Daemon
cli(["run", "-c", sys.argv[1]], prog_name="gitopsd")
"""
"""``gitopsd run`` exactly, until the daemon accepts: then it prints the modules loaded and exits."""


def instructions_to_ready(config: Path, env: dict[str, str]) -> tuple[int, int]:
    """(instructions from exec until the daemon accepts, modules loaded then), under callgrind."""
    count, stdout = callgrind([sys.executable, "-c", _TO_READY, str(config)], "the daemon's start",
                              env=env, cwd=config.parent, timeout=900)
    return count, int(stdout.split()[-1])


def import_time(env: dict[str, str], imports: str = DAEMON_IMPORTS) -> tuple[float, float, float, int]:
    """(seconds ``python -X importtime`` reports for ``imports``, the part of them spent in
    gitopsd's own modules, their CPU seconds, modules loaded).

    gitopsd's part is the self time of its modules: their bodies, with what those run (class
    and pydantic model creation, ...) but not the modules they import; the rest is Python's
    and the libraries' imports.
    """
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", imports + _RUSAGE],
                          capture_output=True, text=True, check=True, env=env)
    total = own = 0
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)$", line)
        if m is None:
            continue
        if not m[3]:
            total += int(m[2])
        if m[4] == "gitopsd" or m[4].startswith("gitopsd."):
            own += int(m[1])
    cpu, modules = proc.stdout.split()
    return total / 1e6, own / 1e6, float(cpu), int(modules)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n\n")[0])
    p.add_argument("--apps", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--no-bytecode-cache", action="store_true",
                   help="Do not give Python a bytecode cache (measure the environment as it is).")
    p.add_argument("--keep", action="store_true", help="Keep the work directory (config, logs, state) and print its path.")
    p.add_argument("--instructions", action="store_true",
                   help="Also count the instructions until ready under valgrind's callgrind (about a minute).")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gitopsd-startup-"))
    cache = None if args.no_bytecode_cache else work / "pycache"
    env = bytecode_env(dict(os.environ), cache)
    sandbox = SandboxProc.start(work / "sandbox")
    try:
        repo = gen.generate(work / "repo", args.apps, 1)
        token = uuid.uuid4().hex
        (work / "token").write_text(token)
        (work / "secret").write_text(uuid.uuid4().hex)
        for name in ("token", "secret"):
            (work / name).chmod(0o600)  # the daemon refuses secret files others may read
        wrapper = write_git_wrapper(work / "bin", work / "git.log")
        if cache is not None:
            warm_bytecode(cache)
        daemon_env = bytecode_env(tool_env([work / "bin"]), cache)
        healthz, readyz, cpu = [], [], []
        for k in range(args.runs):
            port = free_port()
            config = write_config(work / f"gitopsd-{k}.toml", repo_url=repo.url, specs=repo.specs,
                                  kubeconfig=sandbox.kubeconfig, state_dir=work / f"state-{k}", port=port,
                                  token_file=work / "token", hook_secret_file=work / "secret", git=wrapper,
                                  interval=3600)
            daemon = DaemonProc.start(config, port, token, work / f"gitopsd-{k}.log", env=daemon_env)
            try:
                healthz.append(daemon.wait_ready())
                readyz.append(daemon.wait_readyz() or float("nan"))
                cpu.append(cpu_times(daemon.pid).own)
            finally:
                daemon.stop()
            log(f"run {k}: /healthz {healthz[-1]:.2f} s, /readyz {readyz[-1]:.2f} s, daemon CPU at ready {cpu[-1]:.2f} s")
        counted = None
        if args.instructions:  # a fresh state directory, like each timed run
            config = write_config(work / "gitopsd-insn.toml", repo_url=repo.url, specs=repo.specs,
                                  kubeconfig=sandbox.kubeconfig, state_dir=work / "state-insn", port=free_port(),
                                  token_file=work / "token", hook_secret_file=work / "secret", git=wrapper,
                                  interval=3600)
            counted = instructions_to_ready(config, {**daemon_env, "GITOPSD_DISABLE_PLUGINS": ",".join(third_party_plugins())})
            log(f"instructions until ready: {counted[0] / 1e9:.4f} G ({counted[1]} modules)")
        imports = [import_time(env) for _ in range(args.runs)]
        ready_imports = [import_time(env, READY_IMPORTS) for _ in range(args.runs)]
        reference = [import_time(env, REFERENCE_IMPORTS)[0] for _ in range(args.runs)]
        result = {"apps": args.apps, "bytecode_cache": cache is not None,
                  "healthz_s": [round(x, 2) for x in healthz],
                  "readyz_s": [round(x, 2) for x in readyz],
                  "readyz_median_s": round(statistics.median(readyz), 2),
                  "cpu_at_ready_s": [round(x, 2) for x in cpu],
                  "importtime_s": [round(x[0], 3) for x in imports],
                  "importtime_median_s": round(statistics.median(x[0] for x in imports), 3),
                  "importtime_own_median_s": round(statistics.median(x[1] for x in imports), 3),
                  "import_cpu_median_s": round(statistics.median(x[2] for x in imports), 3),
                  "import_modules": imports[0][3],
                  "ready_importtime_s": [round(x[0], 3) for x in ready_imports],
                  "ready_importtime_median_s": round(statistics.median(x[0] for x in ready_imports), 3),
                  "ready_importtime_own_median_s": round(statistics.median(x[1] for x in ready_imports), 3),
                  "ready_import_cpu_median_s": round(statistics.median(x[2] for x in ready_imports), 3),
                  "ready_import_modules": ready_imports[0][3],
                  "reference_importtime_median_s": round(statistics.median(reference), 3),
                  "load_average": list(os.getloadavg())}
        if counted is not None:
            result["instructions_to_ready"], result["modules_at_ready"] = counted
        print(json.dumps(result))
    finally:
        sandbox.stop()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
