"""What one event costs the daemon (issue 18), counted in Python calls, and what it still carries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from gitopsd.core.events import SyncStarted, new_event_id


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
