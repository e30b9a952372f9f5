"""Instructions the daemon runs for one cold converge: an A/B figure the machine's load cannot move.

    python -m bench.converge_instructions --apps 100 --objects 10 [--runs 1]

The apps are the benchmark's (bench/gen.py: plain YAML, Kustomize and Helm apps) on the
sandbox. The daemon (``gitopsd run`` exactly) runs under ``valgrind --tool=callgrind``
with ``PYTHONHASHSEED=0`` from exec until every app has finished its first reconcile
(``Daemon.on_settled``), then exits; callgrind's total is the figure. Its helm, kustomize
and git children are not counted (callgrind does not follow them), nor is the sandbox.

The CPU seconds of ``bench.run`` move by a fifth between two runs of one tree on a shared
two-core machine; this count moves by about 1 % (the order in which apps interleave under
callgrind still varies a little), so a change of a few per cent is visible here first.
Under callgrind the daemon runs some 50 times slower than the sandbox it talks to: the
figure counts the daemon's work, not the converge's wall time.

``--client-cost`` runs the sandbox under callgrind too, counting its instructions only while
the daemon runs: daemon / sandbox instructions is the client cost (``bench.run``'s CPU-seconds
ratio) with the machine's load taken out. Both processes are Python on one machine, so an
instruction costs about the same in each.
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
from bench.procs import (
    CallgrindCounter,
    SandboxProc,
    bytecode_env,
    compiled_since,
    free_port,
    third_party_plugins,
    tool_env,
    warm_bytecode,
    write_git_wrapper,
)
from bench.run import log, write_config

_TO_SETTLED = r"""
import os, sys
import gitopsd.daemon.supervisor as supervisor
from gitopsd.cli.main import cli

class Daemon(supervisor.Daemon):
    def __init__(self, *args, **kwargs):
        def settled(daemon):
            failed = sum(1 for r in daemon.apps.values() if r.runner.status.sync != "Synced")
            sys.stdout.write(f"{failed}\n")
            sys.stdout.flush()
            os._exit(0)
        kwargs["on_settled"] = settled
        super().__init__(*args, **kwargs)

supervisor.Daemon = Daemon
cli(["run", "-c", sys.argv[1]], prog_name="gitopsd")
"""
"""``gitopsd run`` exactly, until every app has finished its first reconcile: then it prints
how many are not Synced and exits."""


def instructions_to_settled(config: Path, env: dict[str, str], out: Path | None = None) -> tuple[int, int]:
    """(instructions from exec until the first converge settles, apps not Synced then).

    ``out``: where callgrind writes its profile (``callgrind_annotate`` reads it), else nowhere.
    """
    if shutil.which("valgrind") is None:
        raise SystemExit("bench.converge_instructions needs valgrind (apt-get install valgrind)")
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out or '/dev/null'}", sys.executable, "-c", _TO_SETTLED, str(config)],
        capture_output=True, text=True, env={**env, "PYTHONHASHSEED": "0"}, cwd=config.parent, timeout=1800,
    )
    m = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or m is None or not proc.stdout.split():
        raise RuntimeError(f"the daemon did not settle under callgrind (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return int(m[1]), int(proc.stdout.split()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.converge_instructions", description=__doc__.split("\n\n")[0])
    p.add_argument("--apps", type=int, default=100)
    p.add_argument("--objects", type=int, default=10)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="Keep the work directory and print its path.")
    p.add_argument("--callgrind-out", type=Path, default=None,
                   help="Write the last run's callgrind profile here (for callgrind_annotate: C-level costs).")
    p.add_argument("--client-cost", action="store_true",
                   help="Also count the sandbox's instructions while the daemon runs (the sandbox under callgrind "
                        "too): the client cost as daemon / sandbox instructions.")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gitopsd-insn-"))
    cache = work / "pycache"

    def start_sandbox(k: int) -> tuple[SandboxProc, CallgrindCounter | None]:
        if not args.client_cost:
            return SandboxProc.start(work / f"sandbox-{k}"), None
        out = work / f"sandbox-{k}" / "callgrind.out"
        proc = SandboxProc.start(work / f"sandbox-{k}", wrapper=CallgrindCounter.wrapper(out), timeout=600)
        return proc, CallgrindCounter(proc.pid, out)

    sandbox, counter = start_sandbox(0)
    try:
        repo = gen.generate(work / "repo", args.apps, args.objects)
        token = uuid.uuid4().hex
        (work / "token").write_text(token)
        (work / "secret").write_text(uuid.uuid4().hex)
        for name in ("token", "secret"):
            (work / name).chmod(0o600)
        wrapper = write_git_wrapper(work / "bin", work / "git.log")
        warmed = warm_bytecode(cache)
        env = {**bytecode_env(tool_env([work / "bin"]), cache), "GITOPSD_DISABLE_PLUGINS": ",".join(third_party_plugins())}
        counts, sandbox_counts = [], []
        for k in range(args.runs):
            # A fresh namespace set per run: the sandbox's objects of run k would make run k+1 a no-op.
            if k:
                sandbox.stop()
                sandbox, counter = start_sandbox(k)
            config = write_config(work / f"gitopsd-{k}.toml", repo_url=repo.url, specs=repo.specs,
                                  kubeconfig=sandbox.kubeconfig, state_dir=work / f"state-{k}", port=free_port(),
                                  token_file=work / "token", hook_secret_file=work / "secret", git=wrapper,
                                  interval=3600)
            if counter is not None:
                counter.start()
            instructions, unsynced = instructions_to_settled(config, env, args.callgrind_out)
            if unsynced:
                raise RuntimeError(f"{unsynced} apps were not Synced when the converge settled: see {work}")
            compiled = compiled_since(cache, warmed)
            if compiled:
                raise RuntimeError(f"the daemon compiled modules the warm-up left out (add them to "
                                   f"bench.procs.CONVERGE_IMPORTS): {', '.join(compiled)}")
            counts.append(instructions)
            line = f"run {k}: {instructions / 1e9:.4f} G instructions until settled"
            if counter is not None:
                sandbox_counts.append(counter.stop(f"converge-{k}"))
                line += (f"; the sandbox's meanwhile {sandbox_counts[-1] / 1e9:.4f} G "
                         f"(client cost {instructions / sandbox_counts[-1]:.2f})")
            log(line)
        result: dict[str, object] = {
            "apps": args.apps, "objects": args.objects, "instructions": counts,
            "instructions_median": int(statistics.median(counts)),
            "instructions_per_object": round(statistics.median(counts) / (args.apps * (args.objects + 1)))}
        if sandbox_counts:
            ratios = [round(d / s, 3) for d, s in zip(counts, sandbox_counts, strict=True)]
            result |= {"sandbox_instructions": sandbox_counts, "client_cost_instructions": ratios,
                       "client_cost_instructions_median": statistics.median(ratios)}
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
