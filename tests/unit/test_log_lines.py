"""The JSON log line (orjson, with the standard library for what orjson refuses) and the redactor."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from gitopsd.core.logs import (
    _UtcClock,
    add_level_and_time,
    configure_logging,
    json_line,
    redact_secrets,
    redacted_json_line,
)
from gitopsd.core.secrets import REDACTOR, Redactor, Secret


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


class _Structured:
    def __structlog__(self) -> str:
        return "structured"


def test_json_line_is_one_compact_object_with_fallbacks() -> None:
    line = json_line({"event": "x", "obj": _Opaque(), "s": _Structured(), "keys": {1: "a"}, "n": 3})
    assert "\n" not in line
    assert json.loads(line) == {"event": "x", "obj": "<opaque>", "s": "structured", "keys": {"1": "a"}, "n": 3}


def test_json_line_writes_what_orjson_refuses() -> None:
    big = 2**70
    assert json.loads(json_line({"event": "x", "n": big})) == {"event": "x", "n": big}


def test_redactor_scrubs_the_longest_secret_first_and_learns_new_ones() -> None:
    redactor = Redactor()
    assert redactor.scrub("nothing known yet") == "nothing known yet"
    redactor.add("token-1234")
    assert redactor.scrub("a token-1234 b") == "a *** b"
    redactor.add("token-1234-extended")  # contains the first: replaced whole, not in part
    assert redactor.scrub("x token-1234-extended y") == "x *** y"
    redactor.add("abc")  # too short to be told apart from ordinary words
    assert redactor.scrub("abc") == "abc"


class _Carrier:
    """A field orjson cannot write: the line shows its repr."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return f"<carrier {self.text}>"


def test_the_json_renderer_scrubs_as_redacting_every_field_first() -> None:
    """redacted_json_line writes the line unscrubbed and scrubs only when a secret shows: same line as before."""
    plain, awkward = "tok-9f2c4e7a1b", 'pa"ss\\wo\nrd-é'  # the second changes when JSON escapes it
    REDACTOR.add(plain)
    REDACTOR.add(awkward)
    cases: list[dict[str, Any]] = [
        {"event": "nothing secret", "n": 3, "data": {"a": [1, "x"]}},
        {"event": f"url https://h/{plain}/x", "level": "info"},
        {"event": "nested", "data": {"deep": [{"list": ("t", f"in a tuple {plain}")}]}},
        {"event": "escaped", "message": f"the password is {awkward}!"},
        {"event": "error", "error": ValueError(f"bad token {plain}"), "other": RuntimeError("harmless")},
        {"event": "a key is not scrubbed", plain: "value"},
        {"event": "opaque", "obj": _Carrier(plain)},  # neither way scrubs a repr; the same line
        {"event": "too big for orjson", "n": 2**70, "s": plain},
    ]
    for case in cases:
        expected = json_line(redact_secrets(None, "info", dict(case)))
        assert redacted_json_line(None, "info", dict(case)) == expected
    assert plain not in redacted_json_line(None, "info", cases[2])
    assert "password is ***!" in redacted_json_line(None, "info", cases[3])
    assert json.loads(redacted_json_line(None, "info", cases[4]))["error"] == "ValueError: bad token ***"


def test_daemon_log_lines_scrub_secrets_in_every_field() -> None:
    secret = Secret("s3cr3t-in-the-data-0042")
    stream = io.StringIO()
    saved = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        configure_logging(fmt="json", level="info", stream=stream)
        log = structlog.get_logger("test").bind(logger="test")
        log.info("x", data={"url": f"https://h/{secret.reveal()}"}, error=OSError(secret.reveal()))
        log.debug("filtered", value=secret.reveal())
        logging.getLogger("library").warning("library says %s", secret.reveal())
    finally:
        structlog.configure(**saved)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    assert lines[0]["data"] == {"url": "https://h/***"}
    assert lines[0]["error"] == "OSError: ***"
    assert lines[1]["event"] == "library says ***"
    assert secret.reveal() not in stream.getvalue()


def test_level_and_time_are_structlogs() -> None:
    """add_level_and_time: the fields, order and time format of add_log_level, TimeStamper and format_exc_info."""
    stamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    for method in ("debug", "info", "warn", "warning", "error", "exception", "critical"):
        try:
            raise ValueError("boom")
        except ValueError as exc:
            for extra in ({}, {"exc_info": True}, {"exc_info": exc}, {"exc_info": False}):
                theirs: Any = {"event": "x", "k": 1, **extra}
                for proc in (structlog.processors.add_log_level, stamper, structlog.processors.format_exc_info):
                    theirs = proc(None, method, theirs)
                ours = add_level_and_time(None, method, {"event": "x", "k": 1, **extra})
                assert list(ours) == list(theirs)
                assert {**ours, "timestamp": ""} == {**theirs, "timestamp": ""}
                before, after = theirs["timestamp"], ours["timestamp"]
                assert datetime.fromisoformat(before) <= datetime.fromisoformat(after)
                assert after.endswith("Z") and len(after) in (20, 27)


def test_the_clock_writes_isoformat_with_z() -> None:
    clock = _UtcClock()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    start = 1_796_000_000 * 10**9  # a November 2026 second
    for ns in [0, 999, 1000, 10**9 - 1, 10**9, start, start + 1000, start + 999_999_999, start + 10**9,
               *range(start + 5 * 10**9 - 3 * 10**8, start + 7 * 10**9, 123_456_789)]:
        expected = (epoch + timedelta(microseconds=ns // 1000)).isoformat().replace("+00:00", "Z")
        assert clock.format(ns) == expected, ns
