"""What the daemon's start costs, layer by layer: the instructions each group of imports adds.

    python -m bench.start_floor

Each step imports what the steps before it did and one more layer of what ``gitopsd run``
needs before /readyz, in a fresh interpreter under ``valgrind --tool=callgrind``
(``PYTHONHASHSEED=0``, a warmed bytecode cache as an installed gitopsd has): the difference
to the step before is that layer's cost. The first steps are the floor no change to gitopsd
moves: Python itself, then the standard library the daemon runs on (asyncio, TLS, SQLite,
subprocesses, logging) with the stack the project is built on (anyio and uvloop, pluggy,
structlog) and the C readers of JSON, YAML and TOML. Then pydantic (``gitopsd.Options``, the
plugins' options models, are pydantic models: part of the plugin API), click and
``importlib.metadata`` (the CLI, the plugins' entry points), gitopsd's public package, the
HTTP API's server (aiohttp's, its client left lazy as the daemon leaves it) and the daemon
with its plugins. About a minute. The client cost at small sizes is read against these
figures (bench/README.md, "The converge's instructions").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench.procs import bytecode_env, callgrind, third_party_plugins, warm_bytecode
from bench.run import log

LAYERS: tuple[tuple[str, str], ...] = (
    ("python", "pass"),
    ("stdlib and stack",
     "import asyncio, ssl, sqlite3, json, logging, subprocess, concurrent.futures, typing, dataclasses, enum, re, "
     "inspect, uvloop, anyio, pluggy, structlog, orjson, yaml_rs, rtoml"),
    ("pydantic", "import pydantic; from pydantic import BaseModel, ConfigDict, Field"),
    ("click, importlib.metadata", "import click, importlib.metadata"),
    ("gitopsd package", "import gitopsd"),
    ("HTTP server (aiohttp.web)", "import gitopsd.server; from aiohttp import web"),
    ("daemon and plugins",
     "import gitopsd.cli.main, gitopsd.daemon.supervisor; from gitopsd.plugin.manager import PluginManager; "
     "PluginManager()"),
)
"""(name, what it adds): each step runs every earlier step's code first."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.start_floor", description=__doc__.split("\n\n")[0])
    p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gitopsd-floor-"))
    try:
        cache = work / "pycache"
        warm_bytecode(cache)
        # gitopsd as shipped, as in the converge benchmarks: not the development venv's example plugin.
        env = {**bytecode_env(dict(os.environ), cache), "GITOPSD_DISABLE_PLUGINS": ",".join(third_party_plugins())}
        steps, code, before = [], "", 0
        for name, layer in LAYERS:
            code = f"{code}; {layer}" if code else layer
            total, _ = callgrind([sys.executable, "-c", code], f"python -c {code!r}", env=env, timeout=600)
            steps.append({"layer": name, "adds": total - before, "cumulative": total})
            log(f"{name}: +{(total - before) / 1e6:.1f} M, {total / 1e6:.1f} M in all")
            before = total
        print(json.dumps({"steps": steps}))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
