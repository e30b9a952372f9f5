"""Turns of the event loop, counted: do waiting tasks continue together, or one per turn?"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

import anyio
import anyio.lowlevel


async def turns_apart(calls: Iterable[Callable[[], Awaitable[object]]]) -> int:
    """Run ``calls`` concurrently; return how many event-loop turns passed between the first
    and the last of them to finish.

    A counting task yields once per turn. Tasks that wait for one thing and wake together
    finish within a turn or two of each other; tasks that go through a lock one at a time
    finish one turn apart each.
    """
    turns = 0
    finished: list[int] = []

    async def count() -> None:
        nonlocal turns
        while True:
            await anyio.lowlevel.checkpoint()
            turns += 1

    async def run(call: Callable[[], Awaitable[object]]) -> None:
        await call()
        finished.append(turns)

    async with anyio.create_task_group() as counting:
        counting.start_soon(count)
        async with anyio.create_task_group() as running:
            for call in calls:
                running.start_soon(run, call)
        counting.cancel_scope.cancel()
    return max(finished) - min(finished)
