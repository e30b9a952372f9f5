"""sd_notify on a real unix datagram socket: READY, STATUS, WATCHDOG, RELOADING, STOPPING."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import anyio
import pytest

from gitopsd.server.systemd import SystemdNotifier

from .conftest import Env, NotifySocket, running, wait_for

pytestmark = pytest.mark.anyio


def test_no_socket_is_a_no_op() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    assert notifier.ready() is False


def test_path_and_abstract_sockets(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    sock = NotifySocket(path)
    try:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
        assert notifier.ready("3 apps") is True
        assert sock.drain() == [{"READY": "1", "STATUS": "3 apps"}]
    finally:
        sock.close()
    name = f"gitopsd-test-{os.getpid()}-{time.monotonic_ns()}"
    abstract = NotifySocket(b"\0" + name.encode())
    try:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert notifier.reloading() is True
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        (message,) = abstract.drain()
        assert message["RELOADING"] == "1" and before <= int(message["MONOTONIC_USEC"]) <= after
    finally:
        abstract.close()


def test_watchdog_settings() -> None:
    assert SystemdNotifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000"}).watchdog_interval == 15.0
    # WATCHDOG_PID names another process: the watchdog is not ours
    assert SystemdNotifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_interval is None
    assert SystemdNotifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "0"}).watchdog_interval is None


def test_a_vanished_socket_does_not_raise(tmp_path: Path) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.watchdog() is False


async def test_daemon_notify_sequence(env: Env, tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    sock = NotifySocket(path)
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())})
    config = env.write(env.daemon_toml())
    try:
        async with running(env, config, systemd=notifier) as daemon:
            await wait_for(lambda: sum(1 for m in sock.drain() if "WATCHDOG" in m) >= 4, timeout=5)
            messages = list(sock.messages)
            ready = [i for i, m in enumerate(messages) if m.get("READY") == "1"]
            assert ready and "STATUS" in messages[ready[0]] and "0 apps" in messages[ready[0]]["STATUS"]
            # the API listens by the time READY=1 is sent
            assert daemon.api is not None and daemon.api.port == env.port

            # a blocked event loop stops pinging: nothing is sent while it is blocked
            sock.drain()
            sock.messages.clear()
            time.sleep(0.5)  # noqa: ASYNC251 - deliberately blocks the loop for 2.5 ping intervals
            assert [m for m in sock.drain() if "WATCHDOG" in m] == []
            await anyio.sleep(0.3)
            assert [m for m in sock.drain() if "WATCHDOG" in m]

            # SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1
            sock.messages.clear()
            start = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            os.kill(os.getpid(), signal.SIGHUP)
            await wait_for(lambda: any(m.get("READY") == "1" for m in sock.drain()), timeout=5)
            seq = [m for m in sock.messages if "WATCHDOG" not in m]
            assert seq[0]["RELOADING"] == "1" and int(seq[0]["MONOTONIC_USEC"]) >= start
            assert seq[-1]["READY"] == "1"
            sock.messages.clear()
        sock.drain()
        assert any(m.get("STOPPING") == "1" for m in sock.messages)
    finally:
        sock.close()


async def test_failed_reload_still_answers_ready(env: Env, tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    sock = NotifySocket(path)
    config = env.write(env.daemon_toml())
    try:
        async with running(env, config, systemd=SystemdNotifier({"NOTIFY_SOCKET": path})) as daemon:
            env.path.write_text("[daemon\nbroken")
            sock.drain()
            sock.messages.clear()
            await daemon.reload_from_file()
            seq = sock.drain()
            assert seq[0]["RELOADING"] == "1" and seq[-1]["READY"] == "1"
            assert daemon.config is config
    finally:
        sock.close()


async def test_sigterm_stops_gracefully(env: Env, tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    sock = NotifySocket(path)
    config = env.write(env.daemon_toml())
    try:
        async with running(env, config, systemd=SystemdNotifier({"NOTIFY_SOCKET": path})) as daemon:
            os.kill(os.getpid(), signal.SIGTERM)
            await wait_for(daemon.stopping.is_set, timeout=5)
        assert any(m.get("STOPPING") == "1" for m in sock.drain())
        assert daemon.api is not None and daemon.api._runner is None  # the API was closed
    finally:
        sock.close()
