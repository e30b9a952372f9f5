"""core/jsonio: orjson's speed with the standard library's results."""

from __future__ import annotations

import datetime
import json

import pytest

from gitopsd.core import jsonio

VALUES = [
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "ünïcode"}},
    {1: "int key", "n": None, "f": 0.1, "t": True, "l": [1, 2.5, "x"]},  # YAML keys need not be strings
    {"since": datetime.date(2024, 5, 1), "at": datetime.datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=datetime.UTC)},
    {"big": 2**70, "small": -(2**65)},  # over 64 bits: orjson refuses, json writes them
    {"lone": "\udc80"},  # a lone surrogate: orjson refuses, json escapes it
]


def as_json(value: object) -> object:
    """What json.dumps (dates as ISO 8601 strings) then json.loads make of ``value``."""
    return json.loads(json.dumps(value, default=lambda v: v.isoformat()))


@pytest.mark.parametrize("value", VALUES)
def test_dumps_reads_back_as_the_standard_library_writes(value: object) -> None:
    assert json.loads(jsonio.dumps(value)) == as_json(value)


@pytest.mark.parametrize("value", VALUES)
def test_loads_reads_what_the_standard_library_reads(value: object) -> None:
    text = json.dumps(value, default=lambda v: v.isoformat())
    assert jsonio.loads(text.encode()) == json.loads(text)
    assert jsonio.loads('{"nan": NaN}')["nan"] != jsonio.loads('{"nan": NaN}')["nan"]  # NaN, as json reads it


def test_what_neither_can_write_or_read_fails_as_json_does() -> None:
    with pytest.raises(TypeError):
        jsonio.dumps({"set": {1, 2}})
    with pytest.raises(ValueError):
        jsonio.loads(b"{not json")


def test_string_keys_are_encoded_without_the_non_string_keys_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """OPT_NON_STR_KEYS makes orjson 2.5x slower on every dict: only values with other keys use it."""
    import orjson

    real = orjson.dumps
    options: list[int] = []

    def spying(value: object, default: object = None, option: int = 0) -> bytes:
        options.append(option)
        return real(value, default, option)

    monkeypatch.setattr(orjson, "dumps", spying)
    assert jsonio.dumps(VALUES[0]) == real(VALUES[0])
    assert options == [0]
    assert json.loads(jsonio.dumps(VALUES[1])) == as_json(VALUES[1])  # an int key: with the option
    assert options[1:] == [0, orjson.OPT_NON_STR_KEYS]
