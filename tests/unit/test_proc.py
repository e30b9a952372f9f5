"""External commands: output, errors, timeouts and cancellation (each leaves no process behind)."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from gitopsd.core.errors import CommandFailed
from gitopsd.core.proc import run

pytestmark = pytest.mark.anyio


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_for_pid(path: Path) -> int:
    pidfile = anyio.Path(path)
    with anyio.fail_after(30):
        while not await pidfile.exists() or not (await pidfile.read_text()).strip():
            await anyio.sleep(0.01)
    return int(await pidfile.read_text())


async def test_output_input_cwd_and_env(tmp_path: Path) -> None:
    result = await run(["cat"], timeout=30, stdin=b"hello")
    assert result.stdout == b"hello"
    result = await run(["sh", "-c", 'pwd; echo "$GREETING" >&2'], timeout=30, cwd=tmp_path, env={"GREETING": "hi"})
    assert result.stdout.decode().strip() == str(tmp_path)
    assert result.stderr == b"hi\n"


async def test_failures_name_the_command(tmp_path: Path) -> None:
    with pytest.raises(CommandFailed, match="sh exited with 3: boom") as info:
        await run(["sh", "-c", "echo boom >&2; exit 3"], timeout=30)
    assert info.value.returncode == 3
    with pytest.raises(CommandFailed, match=r"program .*no-such-program not found"):
        await run([tmp_path / "no-such-program"], timeout=30)


async def test_a_timeout_kills_the_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with pytest.raises(CommandFailed, match=r"timed out after 0\.5s"):
        await run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"], timeout=0.5)
    assert not alive(await wait_for_pid(pidfile))  # killed and reaped before run() returned


async def test_cancelling_the_caller_kills_the_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"], timeout=60))
        pid = await wait_for_pid(pidfile)
        assert alive(pid)
        tg.cancel_scope.cancel()
    with anyio.fail_after(30):
        while alive(pid):
            await anyio.sleep(0.01)
