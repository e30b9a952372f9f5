"""The suite's guard against a hung test (tests/conftest.py): a report of where it waits, then a deadline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HUNG = '''
import anyio
import pytest

pytestmark = pytest.mark.anyio


async def test_waits_forever() -> None:
    await anyio.Event().wait()


async def test_after_it() -> None:
    await anyio.sleep(0)
'''


def test_a_hung_async_test_says_where_it_waits_then_fails_and_the_run_goes_on(tmp_path: Path) -> None:
    shutil.copy(Path(__file__).resolve().parent.parent / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_hung.py").write_text(HUNG)
    env = {**os.environ, "GITOPSD_TEST_STUCK_AFTER_S": "1", "GITOPSD_TEST_CANCEL_AFTER_S": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60, env=env, cwd=tmp_path,
    )
    out = proc.stdout
    assert proc.returncode == 1, out
    # The report is printed while the test still runs, outside pytest's capture ...
    report = out[: out.index("FAILURES")]
    assert "test_hung.py::test_waits_forever: still running after 1 s; its asyncio tasks:" in report, out
    # ... down to the await the test is stuck in.
    assert "test_hung.py:9 in test_waits_forever" in report, out
    assert "asyncio/locks.py" in report, out
    assert "still running after 3 s: cancelling its tasks" in out, out
    assert "1 failed, 1 passed" in out, out
