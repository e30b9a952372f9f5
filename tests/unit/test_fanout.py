"""``run_all``: a task group's semantics for the sync's per-object fan-outs."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from gitopsd.core.fanout import run_all

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_runs_side_by_side() -> None:
    both_started = asyncio.Event()
    started: list[str] = []

    async def one(name: str) -> None:
        started.append(name)
        if len(started) == 2:
            both_started.set()
        await both_started.wait()  # would wait forever if run one after the other

    with anyio.fail_after(5):
        await run_all([one("a"), one("b")])
    assert started == ["a", "b"]


async def test_a_single_coroutine_runs_in_the_callers_task() -> None:
    caller = asyncio.current_task()
    seen: list[asyncio.Task[object] | None] = []

    async def one() -> None:
        seen.append(asyncio.current_task())

    await run_all([one()])
    assert seen == [caller]


async def test_the_first_failure_cancels_the_others_and_is_raised() -> None:
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def fails() -> None:
        raise ValueError("boom")

    with anyio.fail_after(5), pytest.raises(ExceptionGroup) as raised:
        await run_all([slow(), fails()])
    assert cancelled.is_set()
    assert [type(e) for e in raised.value.exceptions] == [ValueError]


async def test_an_anyio_deadline_cancels_them_all() -> None:
    ended: list[str] = []

    async def slow(name: str) -> None:
        try:
            await asyncio.sleep(30)
        finally:
            ended.append(name)

    with anyio.move_on_after(0.05) as scope:
        await run_all([slow("a"), slow("b")])
    assert scope.cancelled_caught
    assert sorted(ended) == ["a", "b"]
