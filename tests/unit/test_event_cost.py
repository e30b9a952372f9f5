"""What one event costs the daemon (issue 18), counted in Python calls, and what it still carries."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from gitopsd.core.events import SyncStarted, new_event_id
from gitopsd.core.logs import configure_logging
from gitopsd.core.secrets import Secret
from gitopsd.daemon.view import EventLog
from gitopsd.engine.bus import EventBus
from gitopsd.plugin.manager import PluginManager
from gitopsd.server.metrics import Metrics
from tests.calls import python_calls


def test_event_ids_are_uuid4_hex_and_times_utc_now() -> None:
    before = datetime.now(UTC)
    events = [SyncStarted.make(app="web") for _ in range(2000)]
    after = datetime.now(UTC)
    assert len({e.id for e in events}) == len(events)
    for event in events:
        parsed = uuid.UUID(hex=event.id)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert event.id == parsed.hex  # 32 lower-case hex digits, as uuid4().hex
        assert before <= event.time <= after and event.time.tzinfo is UTC
    assert uuid.UUID(hex=new_event_id()).version == 4


# Python calls one event costs on the daemon's path (issue 18): EventBus.emit, the JSON log
# line (structlog's bound logger, our processors, the redactor's check), the gitopsd_event hook
# with no listener, the web page's event log, and building the event. It was 82 before the
# event path was trimmed; each trim brought it down by 4 to 35 calls. A structlog upgrade that
# adds a call per line may move it by one or two: look at the counter's most_common() first.
CALLS_PER_EVENT = 22
EVENTS = 60


@pytest.mark.anyio
async def test_an_event_costs_a_bounded_number_of_python_calls(tmp_path: Path) -> None:
    Secret("event-cost-secret-7781")  # a daemon with a secret checks every line for it
    saved = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        with (tmp_path / "gitopsd.log").open("w") as stream:
            configure_logging(fmt="json", level="info", stream=stream)
            bus = EventBus(hooks=PluginManager(builtins_only=True).hooks, metrics=Metrics(apps=list))
            bus.set_routes({"web": []})
            recent = EventLog()
            bus.subscribe(recent.record)
            data = {"namespace": "web", "source_url": "https://git.example.com/org/repo.git"}
            bus.emit(SyncStarted.make(app="web", data=data))  # first use: imports, caches
            with python_calls() as calls:
                for i in range(EVENTS):
                    bus.emit(SyncStarted.make(app="web", revision="main@sha1:" + "a" * 40, message=f"web {i}", data=data))
    finally:
        structlog.configure(**saved)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    lines = (tmp_path / "gitopsd.log").read_text().splitlines()
    assert len(lines) == EVENTS + 1 and json.loads(lines[-1])["message"] == f"web {EVENTS - 1}"
    assert recent.recent("web", 1)[0].message == f"web {EVENTS - 1}"  # kept for the web page (50 at most)
    per_event = sum(calls.values()) / EVENTS
    assert per_event <= CALLS_PER_EVENT, (per_event, calls.most_common(12))
