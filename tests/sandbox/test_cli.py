"""`python -m gitopsd.sandbox` (the `gitopsd sandbox` command) in the foreground, used by kubectl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]


def test_cli_serves_and_writes_kubeconfig_then_saves_state(tmp_path: Path) -> None:
    kubectl = require_tool("kubectl")
    kubeconfig, state = tmp_path / "sandbox.kubeconfig", tmp_path / "state.json"

    def start(*extra: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gitopsd.sandbox", "--kubeconfig", str(kubeconfig), "--state", str(state),
             "--san", "tunnel.example", "--seed", "3", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on https://127.0.0.1:" in line, proc.stderr.read() if proc.stderr else line
        return proc

    def kc(*args: str, stdin: str | None = None) -> str:
        out = subprocess.run([kubectl, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache"), *args],
                             input=stdin, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    proc = start()
    try:
        assert kubeconfig.exists()
        kc("apply", "--server-side", "--validate=false", "-f", "-",
           stdin=json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}, "data": {"a": "1"}}))
        assert "kept" in kc("get", "configmaps", "-o", "name")
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
    assert "kept" in state.read_text()
    proc = start()
    try:
        assert json.loads(kc("get", "configmap", "kept", "-o", "json"))["data"] == {"a": "1"}
    finally:
        proc.terminate()
        proc.wait(10)


def test_cli_rejects_a_bad_fault_spec() -> None:
    out = subprocess.run([sys.executable, "-m", "gitopsd.sandbox", "--faults", "nonsense"],
                         capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 2
    assert "verb:resource" in out.stderr


@pytest.mark.parametrize("flag", ["--help"])
def test_cli_help_lists_options(flag: str) -> None:
    out = subprocess.run([sys.executable, "-m", "gitopsd.sandbox", flag], capture_output=True, text=True,
                         timeout=30, cwd=ROOT)
    for option in ("--port", "--kubeconfig", "--state", "--faults", "--seed", "--insecure-http", "--san",
                   "--job-duration", "--max-events", "--protos"):
        assert option in out.stdout
