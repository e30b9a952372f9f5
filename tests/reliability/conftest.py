"""Fixtures of the reliability suite: a sandbox process and a place for a daemon process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.procs import SandboxProc
from tests.conftest import require_tool
from tests.reliability.harness import Env


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """A sandbox (its own process, no faults) and an Env to write a config and run gitopsd in."""
    require_tool("kubectl")
    sandbox = SandboxProc.start(tmp_path / "sandbox", rollout_delay=0.1)
    e = Env(tmp_path, sandbox)
    try:
        yield e
    finally:
        e.stop()
        sandbox.stop()
