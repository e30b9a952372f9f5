"""The daemon's recent events per app (what the web page and ``/api/apps/NAME`` show)."""

from __future__ import annotations

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
