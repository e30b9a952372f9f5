"""JSON on the hot paths (API request bodies and answers): orjson, with the standard library's results.

orjson reads and writes JSON several times faster than :mod:`json` (bench: 59 -> 17 us to read
an applied Deployment, 38 -> 5 us to write one). What orjson refuses and the standard library
accepts (integers over 64 bits, NaN, lone surrogates, ...) goes to the standard library, so
the results and errors are the same as with :mod:`json` alone. Dates and times (YAML reads
unquoted timestamps as such) are written as ISO 8601 strings either way.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS  # like json.dumps: 1 -> "1" (YAML keys need not be strings)


def _default(value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON."""
    try:
        # Without OPT_NON_STR_KEYS first: string keys only (every parsed answer, most manifests)
        # encode 2.5x faster so (a live Deployment: 3.7 -> 1.5 us); the option changes nothing else.
        return orjson.dumps(value)
    except TypeError:
        pass
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), default=_default).encode()


def loads(data: bytes | str) -> Any:
    """The value of the JSON document ``data`` (ValueError if it is not one)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
