"""Patterns compiled on first use (gitopsd/core/lazyre.py), and imports that compile none."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from gitopsd.core.lazyre import LazyPattern


def test_same_answers_as_the_compiled_pattern() -> None:
    lazy = LazyPattern(r"(?P<word>[a-z]+)-(\d+)", re.I)
    real = re.compile(r"(?P<word>[a-z]+)-(\d+)", re.I)
    text = "x Abc-12 and def-3"
    assert lazy._compiled is None  # nothing compiled until used
    assert lazy.match(text) is None and real.match(text) is None
    assert lazy.search(text).group("word") == real.search(text).group("word") == "Abc"  # type: ignore[union-attr]
    assert lazy.fullmatch("def-3").groups() == real.fullmatch("def-3").groups()  # type: ignore[union-attr]
    assert lazy.search(text, 5) is not None and lazy.search(text, 5).group(0) == real.search(text, 5).group(0)  # type: ignore[union-attr]
    assert [m.span() for m in lazy.finditer(text)] == [m.span() for m in real.finditer(text)]
    assert lazy.findall(text) == real.findall(text)
    assert lazy.compiled is lazy.compiled  # compiled once
    assert lazy.pattern == real.pattern


# Imports what `gitopsd run` imports before ready, every built-in plugin included, and lists
# the calls of re.compile made by the code of gitopsd's own modules while they load.
SCRIPT = r"""
import json, os, re, sys
compiled = []
real = re.compile
def spy(pattern, flags=0):
    caller = sys._getframe(1)
    module = str(caller.f_globals.get("__name__"))
    if caller.f_code.co_name == "<module>" and module.startswith("gitopsd"):
        compiled.append(f"{module}: {pattern[:40]!r}")
    return real(pattern, flags)
re.compile = spy
import gitopsd.cli.main, gitopsd.daemon.supervisor
from gitopsd.plugin.manager import PluginManager
PluginManager(builtins_only=True)
print(json.dumps(compiled))
"""

# Patterns every start uses: app and cluster names, durations, metric names, the config's TOML.
EAGER = {"gitopsd.plugin.config", "gitopsd.server.metrics", "gitopsd.plugin.tomlread"}


def test_plugins_and_the_server_compile_no_pattern_at_import() -> None:
    """The built-in plugins' patterns (errors, semver, OCI, Slack) cost a start nothing (LazyPattern)."""
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True)
    compiled = [c for c in json.loads(proc.stdout.splitlines()[-1]) if c.split(":")[0] not in EAGER]
    assert compiled == [], f"module-level re.compile on the start path (use gitopsd.core.lazyre.LazyPattern): {compiled}"
