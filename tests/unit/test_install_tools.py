"""scripts/install-tools.sh --prefix: the pinned tools go where the operator says (no download
when they are already there)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install-tools.sh"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # no npm from .tools or a venv needed here
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, env=env, check=False)


def pinned(name: str) -> str:
    return re.search(rf'^{name}_VERSION="(v[0-9.]+)"', SCRIPT.read_text(), re.M).group(1)  # type: ignore[union-attr]


def test_prefix_with_the_pinned_tools_present_is_a_no_op(tmp_path: Path) -> None:
    """Stand-ins answering with the pinned versions: the script asks *them* (not .tools/)."""
    prefix = tmp_path / "opt" / "gitopsd" / "bin"
    prefix.mkdir(parents=True)
    answers = {"helm": f"{pinned('HELM')}+g0000000", "kubectl": f"Client Version: {pinned('KUBECTL')}"}
    for tool, answer in answers.items():
        (prefix / tool).write_text(f'#!/bin/sh\ntouch "$(dirname "$0")/asked-{tool}"\necho "{answer}"\n')
        (prefix / tool).chmod(0o755)
    result = run("--prefix", str(prefix), cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert (prefix / "asked-helm").exists() and (prefix / "asked-kubectl").exists()
    (prefix / "asked-helm").unlink()
    assert run(f"--prefix={prefix}", cwd=tmp_path).returncode == 0
    assert (prefix / "asked-helm").exists()


def test_usage_errors(tmp_path: Path) -> None:
    assert run("--prefix", cwd=tmp_path).returncode == 2
    bad = run("--bogus", cwd=tmp_path)
    assert bad.returncode == 2 and "usage:" in bad.stderr
