"""Instructions of the plain renderer and of a git tree's extraction, per app and per member.

    python -m bench.render_instructions [--apps 100] [--objects 5] [--reps 3]

The bench's repository (bench/gen.py: 80 % plain apps of ``objects + 1`` small YAML files) is
generated in a temporary directory. Each workload runs under ``valgrind --tool=callgrind``
(``PYTHONHASHSEED=0``) twice, after one warm pass: with no further pass and with ``reps``;
the difference over the passes is the figure, imports and start-up excluded:

- ``render``: :func:`gitopsd_plugins.plain.render_directory` of every plain app (walk, read,
  parse), per app;
- ``extract``: :func:`gitopsd_plugins._archive.extract_tar_stream` of ``git archive`` of the
  whole tree, per member.

Like bench.converge_instructions, the machine's load does not move these counts: an A/B of a
change to the render path or to tar extraction shows here to a fraction of a per cent.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from bench import gen
from bench.procs import callgrind


def _work(workload: str, tree: Path, reps: int) -> None:
    """One run of ``workload`` (the warm pass, then ``reps`` passes), for callgrind to count."""
    if workload == "render":
        from gitopsd_plugins.plain import render_directory

        apps = [p for p in sorted((tree / "apps").iterdir()) if not (p / "kustomization.yaml").exists()
                and not (p / "Chart.yaml").exists()]
        for _ in range(reps + 1):
            for app in apps:
                render_directory(app)
    else:
        from gitopsd_plugins._archive import extract_tar_stream

        out = Path(tempfile.mkdtemp(prefix="gitopsd-extract-"))
        try:
            for i in range(reps + 1):
                with open(tree / "tree.tar", "rb") as stream:
                    extract_tar_stream(stream, out / str(i), where="bench")
        finally:
            shutil.rmtree(out)


def _count(workload: str, tree: Path, reps: int) -> int:
    return callgrind(
        [sys.executable, "-m", "bench.render_instructions", "--work", workload, "--tree", str(tree), "--reps", str(reps)],
        workload, cwd=Path(__file__).parents[1],
    )[0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--apps", type=int, default=100)
    p.add_argument("--objects", type=int, default=5)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--work", choices=("render", "extract"), help=argparse.SUPPRESS)
    p.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.work:
        _work(args.work, args.tree, args.reps)
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("bench.render_instructions needs valgrind (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="gitopsd-render-insn-") as tmp:
        repo = gen.generate(Path(tmp) / "repo", args.apps, args.objects)
        tar = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=repo.work, check=True, capture_output=True).stdout
        (repo.work / "tree.tar").write_bytes(tar)
        plain = sum(1 for spec in repo.specs if spec.kind == "plain")
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            members = len(archive.getmembers())
        result: dict[str, object] = {"apps": args.apps, "objects": args.objects, "plain_apps": plain, "members": members}
        for workload, per in (("render", plain), ("extract", members)):
            cost = _count(workload, repo.work, args.reps) - _count(workload, repo.work, 0)
            result[f"{workload}_instructions_per_{'app' if workload == 'render' else 'member'}"] = cost // (args.reps * per)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
