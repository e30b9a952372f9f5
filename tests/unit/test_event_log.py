"""The daemon's recent events per app (what the web page and ``/api/apps/NAME`` show)."""

from __future__ import annotations

import anyio
import pytest

from gitopsd.core.events import RevisionDetected
from gitopsd.daemon.view import EventLog


def test_keeps_the_newest_events_per_app_newest_first() -> None:
    log = EventLog(size=5)
    for i in range(12):
        log.record(RevisionDetected.make(app="web", message=f"web {i}"))
    log.record(RevisionDetected.make(app="db", message="db 0"))
    assert [e.message for e in log.recent("web", 10)] == [f"web {i}" for i in (11, 10, 9, 8, 7)]
    assert [e.message for e in log.recent("web", 2)] == ["web 11", "web 10"]
    assert [e.message for e in log.recent("db", 10)] == ["db 0"]
    assert log.recent("nope", 10) == []
    log.forget("web")
    assert log.recent("web", 10) == []


@pytest.mark.anyio
async def test_the_next_event_wakes_every_waiter_and_only_the_next() -> None:
    log = EventLog()
    log.record(RevisionDetected.make(app="web"))  # before anyone waits: wakes nobody later
    woken: list[float] = []

    async def waiter() -> None:
        start = anyio.current_time()
        await log.wait(30)
        woken.append(anyio.current_time() - start)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert woken == []
            log.record(RevisionDetected.make(app="db"))
    assert len(woken) == 2 and max(woken) < 30
    with anyio.fail_after(20):
        await log.wait(0.01)  # a new wait waits for the next event: here, only its timeout
