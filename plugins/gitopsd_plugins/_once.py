"""One caller at a time does what every app of a source needs once; the others wait together."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable

import anyio


async def one_at_a_time(
    pending: dict[Hashable, anyio.Event],
    key: Hashable,
    done: Callable[[], bool],
    work: Callable[[], Awaitable[None]],
) -> None:
    """Run ``work`` until ``done()``: one caller per ``key`` at a time, the others wait together.

    The apps of one source ask for the same thing at once (a new commit's tree, a push's
    diff, a chart or an OCI layer to extract). Those that wait all continue in the same turn
    of the event loop when the work ends; behind a lock they went through one per turn, and at
    a cold start every turn also runs the other apps' renders and syncs (the 100th app of a
    repository got its tree ~2 s after the first). If the work failed, the next caller tries
    in turn, as behind a lock.
    """
    while not done():
        running = pending.get(key)
        if running is not None:
            await running.wait()
            continue
        pending[key] = running = anyio.Event()
        try:
            await work()
        finally:
            del pending[key]
            running.set()

