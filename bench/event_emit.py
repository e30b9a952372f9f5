"""What one event costs the daemon: build it, log it, show it to plugins, keep it for the web page.

    python -m bench.event_emit [--events 10000] [--repeat 5]

The path is the daemon's own: ``configure_logging`` (JSON lines, to a file), an
:class:`~gitopsd.engine.bus.EventBus` wired as :class:`~gitopsd.daemon.supervisor.Daemon`
wires it (the built-in plugins' ``gitopsd_event`` hook, the metrics, the
:class:`~gitopsd.daemon.view.EventLog`), and events built as the reconciler builds them
(``Reconciler._event``: the app's namespace and source URL in ``data``). One secret is
registered, as a daemon with an API token has. Prints microseconds per event (best of
``--repeat``, CPU time) and Python-level calls per event.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import structlog

from gitopsd.core import events as ev
from gitopsd.core.logs import configure_logging
from gitopsd.core.secrets import Secret
from gitopsd.daemon.view import EventLog
from gitopsd.engine.bus import EventBus
from gitopsd.plugin.manager import PluginManager
from gitopsd.server.metrics import Metrics

KINDS = (ev.RevisionDetected, ev.SyncStarted, ev.SyncSucceeded)


def make_bus(stream: Any) -> tuple[EventBus, EventLog]:
    """The daemon's bus, hook, metrics and event log, logging JSON lines to ``stream``."""
    configure_logging(fmt="json", level="info", stream=stream)
    plugins = PluginManager(builtins_only=True)
    bus = EventBus(hooks=plugins.hooks, metrics=Metrics(apps=list))
    bus.set_routes({f"app-{i}": [] for i in range(100)})
    events = EventLog()
    bus.subscribe(events.record)
    return bus, events


def emit_some(bus: EventBus, count: int) -> None:
    """``count`` events as ``Reconciler._event`` makes them."""
    for i in range(count):
        cls = KINDS[i % 3]
        data = {"namespace": "bench", "source_url": "https://git.example.com/org/repo.git"}
        if cls is ev.SyncSucceeded:
            data.update(duration=0.42, created=10, changed=0, deleted=0)
        bus.emit(cls.make(app=f"app-{i % 100}", cluster="prod", revision="main@sha1:" + "a" * 40,
                          reason="Synced", message=f"app-{i % 100}: synced", data=data))


def calls_per_event(bus: EventBus, count: int = 300) -> float:
    calls = 0

    def hook(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(hook)
    try:
        emit_some(bus, count)
    finally:
        sys.setprofile(None)
    return calls / count


async def run(events: int, repeat: int, stream: Any) -> tuple[float, float]:
    """(best CPU seconds of ``events`` events, Python calls per event)."""
    bus, _ = make_bus(stream)
    emit_some(bus, 100)  # warm up
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        emit_some(bus, events)
        best = min(best, time.process_time() - start)
    return best, calls_per_event(bus)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.event_emit", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers = root.handlers[:]
    Secret("bench-api-token-0123456789")  # a daemon with an API token scrubs it from every line
    try:
        with tempfile.TemporaryDirectory(prefix="gitopsd-events-") as tmp:
            log_file = Path(tmp) / "gitopsd.log"
            with log_file.open("w") as stream:
                best, calls = anyio.run(run, args.events, args.repeat, stream)
            lines = log_file.read_text().splitlines()
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
    assert len(lines) == 100 + args.events * args.repeat + 300, len(lines)
    print(json.dumps({"events": args.events, "us_per_event": round(best / args.events * 1e6, 1),
                      "python_calls_per_event": round(calls, 2), "line_bytes": len(lines[-1])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
