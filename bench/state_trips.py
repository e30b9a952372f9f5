"""The state store's cost per call: CPU seconds (both threads, user and system) per call.

    python -m bench.state_trips [--apps 2000] [--concurrency 1 20] [--busy]

Each app makes the two calls of a first sync (its inventory written, its sync recorded) on a
fresh database; ``--concurrency`` apps at a time. With one at a time every call is its own trip
to the store's worker thread (the hand-off's cost shows); with more, calls share trips.
``--busy`` keeps the event loop busy meanwhile (a task computing between checkpoints, as in a
cold converge) with the apps' calls 2 ms apart, and reports the CPU beyond that task's alone:
then the worker thread has to take the GIL from the loop's thread for each trip. The figure
moves with the machine's load: compare two trees back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import anyio

from gitopsd.core.models import ObjectRef
from gitopsd.core.state import StateStore


async def _busy(units: int) -> None:
    for _ in range(units):
        total = 0
        for i in range(3000):
            total += i
        await asyncio.sleep(0)


async def busy_alone(units: int) -> float:
    started = time.process_time()
    await _busy(units)
    return time.process_time() - started


async def measure(apps: int, concurrency: int, objects: int = 5, busy: int = 0) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="gitopsd-state-trips-") as tmp:
        store = await StateStore.open(Path(tmp))
        slots = asyncio.Semaphore(concurrency)

        async def app(i: int) -> None:
            if busy:
                await asyncio.sleep(i * 0.002)
            async with slots:
                refs = [ObjectRef("", "v1", "ConfigMap", f"ns{i}", f"cm{k}") for k in range(objects)]
                await store.add_to_inventory(f"app{i}", refs)
                await store.record_sync(f"app{i}", revision="main@sha1:" + "a" * 40, result="succeeded",
                                        message=f"{objects} created", counts={"created": objects}, applied_digest="sha256:x")

        calls, trips = store.calls, store.batches
        started = time.process_time()
        await asyncio.gather(*(app(i) for i in range(apps)), *([_busy(busy)] if busy else []))
        cpu = time.process_time() - started
        calls, trips = store.calls - calls, store.batches - trips
        await store.close()
    return {"concurrency": concurrency, "calls": calls, "trips": trips, "cpu_us_per_call": round(cpu / calls * 1e6, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.state_trips", description=__doc__.split("\n\n")[0])
    p.add_argument("--apps", type=int, default=2000)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 20])
    p.add_argument("--busy", action="store_true", help="Keep the event loop busy meanwhile (see above).")
    args = p.parse_args(argv)
    units = 3000 * args.apps // 600 if args.busy else 0  # outlasts the apps' calls, 2 ms apart
    alone = anyio.run(busy_alone, units) if units else 0.0
    for concurrency in args.concurrency:
        result = anyio.run(measure, args.apps, concurrency, 5, units)
        if units:
            result["cpu_us_per_call"] = round(result["cpu_us_per_call"] - alone / result["calls"] * 1e6, 1)
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
