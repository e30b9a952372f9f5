"""The app runner's trigger: coalescing wake-ups with a timer, nothing held while no one waits."""

from __future__ import annotations

import asyncio

import pytest

from gitopsd.engine.triggers import Trigger

pytestmark = pytest.mark.anyio


async def test_fires_before_the_wait_coalesce_into_one_wake() -> None:
    trigger = Trigger()
    trigger.fire("webhook")
    trigger.fire("drift")
    trigger.fire("webhook", force=True)
    wake = await trigger.wait(3600)  # returns at once: it already fired
    assert wake.reasons == ["webhook", "drift"]
    assert wake.force is True
    assert wake.fired_at > 0
    # Reset: the next wait is a plain interval.
    wake = await trigger.wait(0.01)
    assert wake.reasons == ["interval"]
    assert wake.force is False
    assert wake.fired_at == 0.0


async def test_a_fire_wakes_a_waiting_runner_and_leaves_no_timer() -> None:
    trigger = Trigger()
    loop = asyncio.get_running_loop()
    timers_before = len(loop._scheduled)  # type: ignore[attr-defined]
    waiting = asyncio.ensure_future(trigger.wait(3600))
    await asyncio.sleep(0)
    assert len(loop._scheduled) == timers_before + 1  # type: ignore[attr-defined]  # one timer per idle app
    trigger.fire("refresh")
    wake = await asyncio.wait_for(waiting, 10)
    assert wake.reasons == ["refresh"]
    # The timer is cancelled (asyncio drops cancelled timers lazily: count the live ones).
    live = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
    assert len(live) == timers_before


async def test_a_cancelled_wait_forgets_its_waiter() -> None:
    trigger = Trigger()
    waiting = asyncio.ensure_future(trigger.wait(3600))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    trigger.fire("stop")  # no waiter left to wake: nothing raises
    assert (await trigger.wait(3600)).reasons == ["stop"]


async def test_idle_apps_waiting_until_the_same_instant_share_one_timer() -> None:
    loop = asyncio.get_running_loop()

    def live_timers() -> int:
        return len([h for h in loop._scheduled if not h.cancelled()])  # type: ignore[attr-defined]

    before = live_timers()
    triggers = [Trigger() for _ in range(100)]
    waits = [asyncio.ensure_future(t.wait(1.0)) for t in triggers]  # the apps of a source: one instant
    await asyncio.sleep(0)
    assert live_timers() - before <= 2  # one tick (two if the instant fell on a tick's edge)
    triggers[0].fire("webhook")  # one woken early: the others keep their shared timer
    assert (await asyncio.wait_for(waits[0], 10)).reasons == ["webhook"]
    assert live_timers() - before >= 1
    wakes = await asyncio.wait_for(asyncio.gather(*waits[1:]), 10)
    assert all(w.reasons == ["interval"] for w in wakes)
    assert live_timers() == before  # nothing left once every waiter is gone


async def test_a_wait_without_timeout_holds_no_timer_and_expire_ends_it_as_an_interval() -> None:
    loop = asyncio.get_running_loop()

    def live_timers() -> int:
        return len([h for h in loop._scheduled if not h.cancelled()])  # type: ignore[attr-defined]

    before = live_timers()
    trigger = Trigger()
    waiting = asyncio.ensure_future(trigger.wait(None))  # a parked app (engine/idle.py)
    await asyncio.sleep(0)
    assert live_timers() == before
    trigger.expire()
    wake = await asyncio.wait_for(waiting, 10)
    assert (wake.reasons, wake.force, wake.fired_at) == (["interval"], False, 0.0)  # as a timeout
    # A fire before the expiry keeps its reasons; an expiry with no one waiting does nothing.
    trigger.expire()
    waiting = asyncio.ensure_future(trigger.wait(None))
    await asyncio.sleep(0)
    trigger.fire("webhook")
    trigger.expire()
    assert (await asyncio.wait_for(waiting, 10)).reasons == ["webhook"]
