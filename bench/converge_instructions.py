"""Instructions the daemon runs for one cold converge: an A/B figure the machine's load cannot move.

    python -m bench.converge_instructions --apps 100 --objects 10 [--runs 1]

The apps are the benchmark's (bench/gen.py: plain YAML, Kustomize and Helm apps) on the
sandbox. The daemon (``gitopsd run`` exactly) runs under ``valgrind --tool=callgrind``
with ``PYTHONHASHSEED=0`` from exec until every app has finished its first reconcile
(``Daemon.on_settled``), then exits; callgrind's total is the figure. Its helm, kustomize
and git children are not counted (callgrind does not follow them), nor is the sandbox.
The count is split where the daemon starts accepting (/readyz 200): it waits there until
callgrind has dumped what it counted so far, so ``instructions_until_ready`` is the start
(imports, config, state, the API server) and ``instructions_after_ready`` the converge itself.

The CPU seconds of ``bench.run`` move by a fifth between two runs of one tree on a shared
two-core machine; this count moves by about 1 % (the order in which apps interleave under
callgrind still varies a little), so a change of a few per cent is visible here first.
Under callgrind the daemon runs some 50 times slower than the sandbox it talks to: the
figure counts the daemon's work, not the converge's wall time.

``--client-cost`` runs the sandbox under callgrind too, counting its instructions only while
the daemon runs: daemon / sandbox instructions is the client cost (``bench.run``'s CPU-seconds
ratio) with the machine's load taken out. Both processes are Python on one machine, so an
instruction costs about the same in each. ``client_cost_instructions_after_ready`` compares
the two from the daemon's /readyz on (the sandbox's count is split there too; it is idle
while the daemon starts).
"""

from __future__ import annotations

import argparse
import json
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench import gen
from bench.procs import (
    CallgrindCounter,
    SandboxProc,
    bytecode_env,
    collected,
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
    async def _open_clusters(self, **kwargs):
        # Called right after the daemon starts accepting (/readyz 200): say so, and wait until
        # the bench has dumped callgrind's count so far (the start's instructions).
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        sys.stdin.readline()
        await super()._open_clusters(**kwargs)

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


READY_TIMEOUT = 900.0
"""Seconds the bench waits for the daemon, under callgrind, to start accepting (1000 apps: about a minute)."""


@dataclass(frozen=True)
class Converge:
    """The daemon's instructions over one cold converge, split where it starts accepting."""

    until_ready: int
    """From exec until /readyz answers 200 (imports, config, state, the API server)."""
    after_ready: int
    """From then until every app has finished its first reconcile."""
    unsynced: int
    """Apps not Synced when the converge settled."""

    @property
    def total(self) -> int:
        return self.until_ready + self.after_ready


def instructions_to_settled(
    config: Path, env: dict[str, str], out: Path, on_ready: Callable[[], None] = lambda: None,
) -> Converge:
    """Run ``gitopsd run`` under callgrind until the first converge settles; count its instructions.

    When the daemon starts accepting it waits for callgrind's count so far to be dumped
    (``out.1``: the start's profile) and for ``on_ready`` (the sandbox's count is split there
    too); the rest of the run is dumped to ``out`` when it exits. Both files are profiles
    ``callgrind_annotate`` reads.
    """
    if shutil.which("valgrind") is None:
        raise SystemExit("bench.converge_instructions needs valgrind (apt-get install valgrind)")
    stderr_path = out.with_name(out.name + ".stderr")
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", _TO_SETTLED, str(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
            env={**env, "PYTHONHASHSEED": "0"}, cwd=config.parent,
        )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        until_ready = None
        if select.select([proc.stdout], [], [], READY_TIMEOUT)[0] and proc.stdout.readline().strip() == "ready":
            counter = CallgrindCounter(proc.pid, out)
            counter.control("--dump=ready")
            until_ready = CallgrindCounter.totals(out.with_name(out.name + ".1"))
            on_ready()
            proc.stdin.write("go\n")
            proc.stdin.flush()
        else:
            proc.kill()  # it exited, or hangs before /readyz: never wait forever
        stdout, _ = proc.communicate(timeout=1800)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log_text = stderr_path.read_text()
    total = collected(log_text)  # the whole run's: the dump at /readyz does not reset it
    if proc.returncode != 0 or until_ready is None or total is None or not stdout.split():
        raise RuntimeError(f"the daemon did not settle under callgrind (exit {proc.returncode}):\n{log_text[-2000:]}")
    return Converge(until_ready, total - until_ready, int(stdout.split()[-1]))


def _split(counter: CallgrindCounter | None, label: str, into: list[int]) -> None:
    """At the daemon's /readyz: the sandbox's count so far into ``into``, and count on."""
    if counter is not None:
        into.append(counter.stop(label))
        counter.start()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.converge_instructions", description=__doc__.split("\n\n")[0])
    p.add_argument("--apps", type=int, default=100)
    p.add_argument("--objects", type=int, default=10)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="Keep the work directory and print its path.")
    p.add_argument("--callgrind-out", type=Path, default=None,
                   help="Write the last run's callgrind profile here (for callgrind_annotate: C-level costs): "
                        "from /readyz on in OUT, the start in OUT.1.")
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
        runs: list[Converge] = []
        sandbox_runs: list[tuple[int, int]] = []  # (during the daemon's start, after it)
        for k in range(args.runs):
            # A fresh namespace set per run: the sandbox's objects of run k would make run k+1 a no-op.
            if k:
                sandbox.stop()
                sandbox, counter = start_sandbox(k)
            config = write_config(work / f"gitopsd-{k}.toml", repo_url=repo.url, specs=repo.specs,
                                  kubeconfig=sandbox.kubeconfig, state_dir=work / f"state-{k}", port=free_port(),
                                  token_file=work / "token", hook_secret_file=work / "secret", git=wrapper,
                                  interval=3600)
            sandbox_start: list[int] = []
            if counter is not None:
                counter.start()
            last = k == args.runs - 1
            out = args.callgrind_out if last and args.callgrind_out is not None else work / f"daemon-{k}.callgrind"
            run = instructions_to_settled(config, env, out, on_ready=partial(_split, counter, f"start-{k}", sandbox_start))
            if run.unsynced:
                raise RuntimeError(f"{run.unsynced} apps were not Synced when the converge settled: see {work}")
            compiled = compiled_since(cache, warmed)
            if compiled:
                raise RuntimeError(f"the daemon compiled modules the warm-up left out (add them to "
                                   f"bench.procs.CONVERGE_IMPORTS): {', '.join(compiled)}")
            runs.append(run)
            line = (f"run {k}: {run.total / 1e9:.4f} G instructions until settled "
                    f"({run.until_ready / 1e9:.4f} G until /readyz)")
            if counter is not None:
                sandbox_runs.append((sandbox_start[0], counter.stop(f"converge-{k}")))
                sandbox_total = sum(sandbox_runs[-1])
                line += (f"; the sandbox's meanwhile {sandbox_total / 1e9:.4f} G (client cost "
                         f"{run.total / sandbox_total:.2f}, {run.after_ready / sandbox_runs[-1][1]:.2f} after /readyz)")
            log(line)
        counts = [r.total for r in runs]
        result: dict[str, object] = {
            "apps": args.apps, "objects": args.objects, "instructions": counts,
            "instructions_median": int(statistics.median(counts)),
            "instructions_per_object": round(statistics.median(counts) / (args.apps * (args.objects + 1))),
            "instructions_until_ready": [r.until_ready for r in runs],
            "instructions_after_ready": [r.after_ready for r in runs]}
        if sandbox_runs:
            ratios = [round(r.total / sum(s), 3) for r, s in zip(runs, sandbox_runs, strict=True)]
            after = [round(r.after_ready / s[1], 3) for r, s in zip(runs, sandbox_runs, strict=True)]
            result |= {"sandbox_instructions": [sum(s) for s in sandbox_runs],
                       "sandbox_instructions_until_ready": [s[0] for s in sandbox_runs],
                       "client_cost_instructions": ratios,
                       "client_cost_instructions_median": statistics.median(ratios),
                       "client_cost_instructions_after_ready": after,
                       "client_cost_instructions_after_ready_median": statistics.median(after)}
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
