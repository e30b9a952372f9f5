"""Start-up: seconds from exec until ``gitopsd run`` answers /healthz and /readyz, with N apps.

    python -m bench.startup --apps 1000 [--runs 3]

The apps are the benchmark's (bench/gen.py, one object each) on the sandbox. Each run starts
a fresh daemon on a fresh state directory, waits for /readyz, and stops it. Also reports
``python -X importtime`` of the daemon's imports (the cumulative time of the top module).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench import gen
from bench.procs import DaemonProc, SandboxProc, free_port, tool_env, write_git_wrapper
from bench.run import log, write_config

DAEMON_IMPORTS = "import gitopsd.cli.main, gitopsd.daemon.supervisor, gitopsd.kube, gitopsd.kube.k8s as k; k.load()"


def import_time() -> float:
    """Seconds ``python -X importtime`` reports for the daemon's imports (sum of the top-level entries)."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", DAEMON_IMPORTS],
                         capture_output=True, text=True, check=True).stderr
    total = 0
    for line in out.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
        if m and not m[2].startswith(" "):
            total += int(m[1])
    return total / 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n\n")[0])
    p.add_argument("--apps", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gitopsd-startup-"))
    sandbox = SandboxProc.start(work / "sandbox")
    try:
        repo = gen.generate(work / "repo", args.apps, 1)
        token = uuid.uuid4().hex
        (work / "token").write_text(token)
        (work / "secret").write_text(uuid.uuid4().hex)
        wrapper = write_git_wrapper(work / "bin", work / "git.log")
        healthz, readyz = [], []
        for k in range(args.runs):
            port = free_port()
            config = write_config(work / f"gitopsd-{k}.toml", repo_url=repo.url, specs=repo.specs,
                                  kubeconfig=sandbox.kubeconfig, state_dir=work / f"state-{k}", port=port,
                                  token_file=work / "token", hook_secret_file=work / "secret", git=wrapper,
                                  interval=3600)
            daemon = DaemonProc.start(config, port, token, work / f"gitopsd-{k}.log", env=tool_env([work / "bin"]))
            try:
                healthz.append(daemon.wait_ready())
                readyz.append(daemon.wait_readyz() or float("nan"))
            finally:
                daemon.stop()
            log(f"run {k}: /healthz {healthz[-1]:.2f} s, /readyz {readyz[-1]:.2f} s")
        imports = [import_time() for _ in range(args.runs)]
        result = {"apps": args.apps, "healthz_s": [round(x, 2) for x in healthz],
                  "readyz_s": [round(x, 2) for x in readyz],
                  "readyz_median_s": round(statistics.median(readyz), 2),
                  "importtime_s": [round(x, 3) for x in imports],
                  "importtime_median_s": round(statistics.median(imports), 3)}
        print(json.dumps(result))
    finally:
        sandbox.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
