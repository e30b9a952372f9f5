"""A quicker reader for the YAML most manifests are: where YAML 1.1 and 1.2 read alike.

PyYAML (YAML 1.1, as kubectl reads manifests) spends about 115 us of CPU on the bench's
700-byte Deployment: libyaml's events become Python nodes and marks before any value is
built. yaml-rs (a Rust YAML 1.2 parser, saphyr) builds the values directly in a sixth of
that; with the checks below and the interning of :func:`gitopsd.core.yamlio.compact`, the
whole read takes about 50 us.
But the two schemas disagree on some plain scalars: ``mode: 0644`` is 420 in YAML 1.1 and
644 in 1.2, ``enabled: on`` is true in 1.1 and the string "on" in 1.2, and so are ``1e3``,
``0o17``, ``09``, ``1_000``, ``1:20``, ``2001-12-14``, ``.5``... A manifest read the 1.2 way
could silently apply something else than kubectl would.

So :func:`load_documents` answers only for a text in which every plain scalar is read the
same way by both: it refuses (None, and the caller uses PyYAML) any text with

- a word that *could* be such a scalar: any run of characters that starts like a number
  (a digit, a sign or a dot, then only characters numbers, dates and times are made of)
  other than a plain decimal integer, a decimal fraction or a dotted version or address;
  ``.inf`` and ``.nan`` in any case; YAML 1.1's yes/no/on/off (the true, false and null
  both schemas share read alike, and so do their other spellings: strings in both);
  ``<<`` (merge) and ``=``. Words are cut at spaces and flow indicators wherever they are
  (in comments, quoted strings and block scalars too): more refusals, never fewer. A
  quoted key with its value right after the colon (``{"a":1}``) is refused as well;
- tags, anchors and aliases (``!``, ``&``, ``*`` starting a word), directives (``%``),
  document end markers, explicit keys (``?``), tabs, carriage returns, non-ASCII text, no
  line break at the end (yaml-rs ends a ``|`` block scalar there with one);
- a collection that may be a mapping's key (a bracket or brace after ``[``, ``{`` or ``,``;
  a closing one before ``: ``) or an empty key (``[: x]``): PyYAML refuses those keys,
  yaml-rs would make tuples and None of them;
- more bytes than the caller's ``max_bytes`` (PyYAML counts the nodes of longer texts: a
  YAML node takes a byte at least), or a document count the parser's answer does not
  match (see :func:`_documents`).

Anything the fast parser refuses or fails on goes to PyYAML too, whose errors name the
line. The caller still checks the depth and the render's budget first
(:func:`gitopsd.core.yamlio.load_all`). tests/unit/test_yamlfast.py compares both readers.
"""

from __future__ import annotations

import os
import re
from typing import Any

# yaml-rs allocates with its own mimalloc, which by default commits each thread's arena memory
# up front and keeps it: renders run in up to 40 worker threads, and the bench's 1000 apps
# peaked 27 MiB higher (142 MiB) than with PyYAML alone. Committed on use instead, the threads
# keep about what they used (bench/results/1000x5.md). Set before the library loads; a value
# in the environment wins.
os.environ.setdefault("MIMALLOC_ARENA_EAGER_COMMIT", "0")

try:
    import yaml_rs
except ImportError:  # a platform without its wheel: PyYAML reads everything
    yaml_rs = None  # type: ignore[assignment]

_SHARED_NUMBERS = re.compile(
    rb"(?:[-+]?(?:0|[1-9][0-9]{0,17})"  # an integer both read alike (no leading zero, no underscore)
    rb"|[-+]?[0-9]{1,17}\.[0-9]{1,17}"  # a decimal fraction (a float in both)
    rb"|[0-9]{1,9}(?:\.[0-9]{1,9}){2,})"  # a version or an IPv4 address (a string in both)
    rb":?"  # a key's colon
)
_NUMERIC = re.compile(rb"[-+]?[0-9.][0-9a-fA-F_.:+\-xXoObBtTzZ]*")
"""What starts like a number and holds only what YAML 1.1 or 1.2 numbers, dates and times hold."""
_NUMERIC_START = frozenset(b"+-.0123456789")
_NODE_PROPERTY_START = frozenset(b"!&*")
"""A tag, an anchor, an alias."""
_CHECKED_START = _NUMERIC_START | _NODE_PROPERTY_START
_SPECIAL_FLOATS = (b".inf", b".nan")
_BOOLEANS_1_1 = (b"yes", b"Yes", b"YES", b"no", b"No", b"NO", b"on", b"On", b"ON", b"off", b"Off", b"OFF")
"""True or false for YAML 1.1, strings for 1.2 (the spellings of true, false and null both share
read alike, and so do the others: strings in both)."""
_REFUSED_WORDS = frozenset(
    {w + colon for w in (*_BOOLEANS_1_1, b"<<", b"=", b"?") for colon in (b"", b":")}
    | {b":"}  # a value indicator with no key before it ([: x], k: : x): PyYAML refuses it, yaml-rs reads a None key
)
_WORD_BREAKS = bytes.maketrans(b",[]{}", b"     ")
_JSON_KEY = re.compile(r"[\"']:\S")
"""A quoted key with its value right after the colon (``{"a":1}``): a word of its own."""
_COLLECTION_KEY = re.compile(r"[\[{,] *[\[{]|[\]}] *:(?!\S)")
"""A collection that may be a key: PyYAML refuses it, yaml-rs makes a tuple of it."""
_DOCUMENT_START = re.compile(r"^---(?=[ \n]|$)", re.M)
_CONTENT = re.compile(r"^ *[^ #\n]", re.M)
_LAST_WINS: Any = yaml_rs.DuplicateKeyPolicy.LastWins if yaml_rs is not None else None


def readable(text: str) -> bool:
    """Whether both YAML schemas read every plain scalar of ``text`` alike (see the module)."""
    if yaml_rs is None or not text.isascii():
        return False
    if "\t" in text or "\r" in text or "\n%" in text or text.startswith("%"):
        return False
    if text and text[-1] != "\n":
        return False  # yaml-rs keeps a line break a block scalar at the very end has not
    if ('":' in text or "':" in text) and _JSON_KEY.search(text):
        return False
    if ("[" in text or "{" in text) and _COLLECTION_KEY.search(text):
        return False
    # Words cut at spaces and flow indicators, found in C (ASCII: as bytes); each checked once.
    words = set(text.encode().translate(_WORD_BREAKS).split())
    if not _REFUSED_WORDS.isdisjoint(words):
        return False
    for word in words:
        first = word[0]
        if first not in _CHECKED_START:
            continue
        if first in _NODE_PROPERTY_START:
            return False
        if _NUMERIC.fullmatch(word.rstrip(b":")) and not _SHARED_NUMBERS.fullmatch(word):
            return False
        if word.lstrip(b"+-").rstrip(b":").lower() in _SPECIAL_FLOATS:
            return False
    return True


def _documents(text: str) -> int:
    """How many documents ``text`` holds: one per ``---`` line, and one before the first if
    anything but comments comes before it (a ``---`` at the start of a line always starts a
    document: it may not stand inside a quoted scalar and it ends a block scalar)."""
    # Most files have no marker: a substring search, in C, spares the regular expression's scan.
    first = _DOCUMENT_START.search(text) if text.startswith("---") or "\n---" in text else None
    if first is None:
        return 1 if _CONTENT.search(text) else 0
    markers = 1 + sum(1 for _ in _DOCUMENT_START.finditer(text, first.end()))
    return markers + (1 if _CONTENT.search(text, 0, first.start()) else 0)


def load_documents(text: str, max_bytes: int) -> list[Any] | None:
    """Every document of ``text`` (None for an empty one), or None when PyYAML must read it
    (``text`` longer than ``max_bytes`` included)."""
    if len(text) > max_bytes or not readable(text):
        return None
    expected = _documents(text)
    try:
        value = yaml_rs.loads(text, parse_datetime=False, duplicate_key_policy=_LAST_WINS)
    except Exception:  # invalid for yaml-rs (maybe not for PyYAML): PyYAML decides, and names the line
        return None
    if expected == 0:
        return [] if value is None else None
    if expected == 1:
        return [value]
    # Several documents come as a list of them: a single document that is a list looks the same.
    if type(value) is list and len(value) == expected:
        return value
    return None
