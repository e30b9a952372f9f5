"""The config file's TOML parser: rtoml (Rust) when it is installed, tomli otherwise, tomli's errors always.

At 1000 apps (a 200 KB file) parsing was the largest single step before /readyz: about
127 M instructions with tomli (the standard library's tomllib compiled with mypyc), 26 M
with rtoml. Both implement TOML 1.0 and give the same Python values, keys in document
order, with two exceptions that keep tomli in charge:

- an error: tomli parses the text again and raises its ``TOMLDecodeError``, so a broken
  config reads exactly as before (and what only tomli accepts, like a float beyond 1e308,
  is still accepted);
- an offset date-time (``1979-05-27T07:32:00Z``): rtoml's ``tzinfo`` is its own class,
  tomli's is :class:`datetime.timezone`; such a document is parsed by tomli.

tests/unit/test_tomlread.py compares the two on valid and invalid documents.
"""

from __future__ import annotations

import re
from types import ModuleType
from typing import Any

rtoml: ModuleType | None
try:
    import rtoml
except ImportError:  # optional: tomli alone reads every config the same way, more slowly
    rtoml = None


def _tomli() -> ModuleType:
    """tomli (the standard library's tomllib compiled with mypyc), imported on first use: with
    rtoml, only for a document rtoml refused (its import costs a start about 8 M instructions)."""
    try:
        import tomli
    except ImportError:  # not installed: the same parser from the standard library
        import tomllib

        return tomllib
    return tomli


def __getattr__(name: str) -> type[ValueError]:
    """``TOMLDecodeError``: tomli's, looked up when an ``except`` clause names it."""
    if name == "TOMLDecodeError":
        error: type[ValueError] = _tomli().TOMLDecodeError
        return error
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# A time followed by an offset: the only values whose Python form differs between the two.
_OFFSET_TIME = re.compile(r"\d\d:\d\d:\d\d(?:\.\d+)?[Zz+-]")


def loads(text: str) -> dict[str, Any]:
    """``text`` parsed as TOML; raises ``TOMLDecodeError`` (tomli's) when it is not valid."""
    if rtoml is not None and _OFFSET_TIME.search(text) is None:
        try:
            result: dict[str, Any] = rtoml.loads(text)
            return result
        except Exception:  # tomli says what is wrong, in its own words
            pass
    parsed: dict[str, Any] = _tomli().loads(text)
    return parsed
