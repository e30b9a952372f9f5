"""The JSON log line (orjson, with the standard library for what orjson refuses) and the redactor."""

from __future__ import annotations

import json

from gitopsd.core.logs import json_line
from gitopsd.core.secrets import Redactor


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
