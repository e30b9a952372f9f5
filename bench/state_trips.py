"""The state store's cost per call: CPU seconds (both threads, user and system) per call.

    python -m bench.state_trips [--apps 2000] [--concurrency 1 20]

Each app makes the two calls of a first sync (its inventory written, its sync recorded) on a
fresh database; ``--concurrency`` apps at a time. With one at a time every call is its own trip
to the store's worker thread (the hand-off's cost shows); with more, calls share trips. The
figure moves with the machine's load: compare two trees back to back.
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


async def measure(apps: int, concurrency: int, objects: int = 5) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="gitopsd-state-trips-") as tmp:
        store = await StateStore.open(Path(tmp))
        slots = asyncio.Semaphore(concurrency)

        async def app(i: int) -> None:
            async with slots:
                refs = [ObjectRef("", "v1", "ConfigMap", f"ns{i}", f"cm{k}") for k in range(objects)]
                await store.add_to_inventory(f"app{i}", refs)
                await store.record_sync(f"app{i}", revision="main@sha1:" + "a" * 40, result="succeeded",
                                        message=f"{objects} created", counts={"created": objects}, applied_digest="sha256:x")

        calls, trips = store.calls, store.batches
        started = time.process_time()
        await asyncio.gather(*(app(i) for i in range(apps)))
        cpu = time.process_time() - started
        calls, trips = store.calls - calls, store.batches - trips
        await store.close()
    return {"concurrency": concurrency, "calls": calls, "trips": trips, "cpu_us_per_call": round(cpu / calls * 1e6, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.state_trips", description=__doc__.split("\n\n")[0])
    p.add_argument("--apps", type=int, default=2000)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 20])
    args = p.parse_args(argv)
    for concurrency in args.concurrency:
        print(json.dumps(anyio.run(measure, args.apps, concurrency)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
