"""A quicker reader for the YAML most manifests are: where YAML 1.1 and 1.2 read alike.

PyYAML (YAML 1.1, as kubectl reads manifests) turns libyaml's events into Python nodes and
marks before it builds any value. yaml-rs (a Rust YAML 1.2 parser, saphyr) builds the values
directly, several times faster; with the checks below and the interning of
:func:`gitopsd.core.yamlio.compact`, a Deployment is read in about a third of PyYAML's time.
But the two differ, on what a scalar means and on what is YAML at all:

- the schemas disagree on some plain scalars: ``mode: 0644`` is 420 in YAML 1.1 and 644 in
  1.2, ``enabled: on`` is true in 1.1 and the string "on" in 1.2, and so are ``1e3``,
  ``0o17``, ``09``, ``1_000``, ``1:20``, ``2001-12-14``, ``.5``... yaml-rs also reads
  underscores anywhere in a number (``_1`` is 1 for it, "_1" for PyYAML);
- yaml-rs accepts texts PyYAML (and kubectl) refuse, ``{a: [b}``, ``a: :x``, ``[x,>y]``,
  and reads them somehow; and it reads ``[?x]`` as ``["?x"]``, PyYAML as ``[{x: None}]``.

A manifest read the other way could silently apply something else than kubectl would. So
:func:`load_documents` answers only for a text both read alike; it refuses (None, and the
caller uses PyYAML) any text with

- a word that *could* be such a scalar: any run of characters that starts like a number
  (a digit, a sign, a dot or an underscore, then only characters numbers, dates and times
  are made of) other than a plain decimal integer, a decimal fraction or a dotted version
  or address; ``.inf`` and ``.nan`` in any case; YAML 1.1's yes/no/on/off (the true, false
  and null both schemas share read alike, and so do their other spellings: strings in
  both); ``<<`` (merge) and ``=``. Words are cut at spaces and flow indicators wherever they
  are (in comments, quoted strings and block scalars too): more refusals, never fewer;
- directives (``%``), tabs, carriage returns, trailing spaces, non-ASCII text, no line break
  at the end (yaml-rs ends a ``|`` block scalar there with one);
- a line outside the few block-style forms both parsers accept and read alike
  (:func:`_block_structure`): keys, values, ``- `` items, one-line flow collections of
  scalars, comments, ``---``, and the later lines of block and quoted scalars, right of
  their node. Tags, anchors, aliases and explicit keys (``!``, ``&``, ``*``, ``?``) are none
  of these. How the lines nest the parsers decide: they agree on it (the tests check);
- more bytes than the caller's ``max_bytes`` (PyYAML counts the nodes of longer texts: a
  YAML node takes a byte at least), or a document count the parser's answer does not
  match (see :func:`_documents`).

Anything the fast parser refuses or fails on goes to PyYAML too, whose errors name the
line. The caller still checks the depth and the render's budget first
(:func:`gitopsd.core.yamlio.load_all`). tests/unit/test_yamlfast.py compares both readers,
on generated documents and on mutations of real manifests.
"""

from __future__ import annotations

import functools
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
_NUMERIC = re.compile(rb"[-+]?[0-9._][0-9a-fA-F_.:+\-xXoObBtTzZ]*")
"""What starts like a number and holds only what YAML 1.1 or 1.2 numbers, dates and times hold
(yaml-rs reads underscores anywhere in a number, a leading one too: ``_1`` is 1 for it)."""
_NUMERIC_START = frozenset(b"+-._0123456789")
_SPECIAL_FLOATS = (b".inf", b".nan")
_BOOLEANS_1_1 = (b"yes", b"Yes", b"YES", b"no", b"No", b"NO", b"on", b"On", b"ON", b"off", b"Off", b"OFF")
"""True or false for YAML 1.1, strings for 1.2 (the spellings of true, false and null both share
read alike, and so do the others: strings in both)."""
_REFUSED_WORDS = frozenset({w + colon for w in (*_BOOLEANS_1_1, b"<<", b"=") for colon in (b"", b":")})
_WORD_BREAKS = bytes.maketrans(b",[]{}", b"     ")
_DOCUMENT_START = re.compile(r"^---(?=[ \n]|$)", re.M)
_CONTENT = re.compile(r"^ *[^ #\n]", re.M)
_LAST_WINS: Any = yaml_rs.DuplicateKeyPolicy.LastWins if yaml_rs is not None else None

# The block structure both parsers read alike (see _block_structure), as regular expressions
# matched across lines. Scalars: single-quoted; double-quoted with only the escapes \" \\ \/ \n
# \t; plain ones that start with no indicator (a "-" only before a non-space) and hold no ": ",
# no " #" and no final ":". Flow collections: on one line, of scalars without colons. Block
# scalar headers: literal or folded, clipped or stripped (no kept final breaks, no explicit
# indentation).
_SINGLE_QUOTED_BODY = r"[^'\n]*+(?:''[^'\n]*+)*+"  # runs of characters in one repetition: quicker in re
_DOUBLE_QUOTED_BODY = r'[^"\\\n]*+(?:\\["\\/nt][^"\\\n]*+)*+'
_QUOTED = rf"""'{_SINGLE_QUOTED_BODY}'|"{_DOUBLE_QUOTED_BODY}\""""
_PLAIN_START = r"""(?:[^\s\-?:,\[\]{}#&*!|>'"%@`]|-\S)"""
_PLAIN = rf"{_PLAIN_START}[^:\n ]*+(?:(?::(?=\S)| ++(?=[^#\n]))[^:\n ]*+)*+"
_KEY = rf"(?:[A-Za-z0-9_./][A-Za-z0-9_./-]*+|{_QUOTED})"
_FLOW_ITEM = rf"(?:{_QUOTED}|{_PLAIN_START}[^,\[\]{{}}:#\n]*+)"
_VALUE = (  # a value on one line; each form starts with its own characters, the most frequent first
    rf"(?:{_PLAIN}"
    rf"|{_QUOTED}"
    rf"|\[ *+(?:{_FLOW_ITEM} *+(?:, *+{_FLOW_ITEM} *+)*+)?\]"
    rf"|\{{ *+(?:{_KEY}: +{_FLOW_ITEM} *+(?:, *+{_KEY}: +{_FLOW_ITEM} *+)*+)?\}})"
)
_COMMENT = r"(?: +#[^\n]*+)?"
_NODE_LINES = re.compile(
    rf"(?: *+(?:- )*+(?:{_KEY}:(?: +{_VALUE})?|(?<=- ){_VALUE}){_COMMENT}\n"  # key:, key: value, - value
    rf"| *+#[^\n]*+\n|---{_COMMENT}\n|\n)*+"  # a comment, a document's start, an empty line
)
"""Lines that hold nodes (or nothing) and end on their line."""
_SCALAR_OPENER = re.compile(
    rf"(?P<node> *+(?:- )*+)(?:(?P<key>{_KEY}): +|(?<=- ))"
    rf"""(?:(?P<header>[|>]-?){_COMMENT}|(?P<quote>'{_SINGLE_QUOTED_BODY}|"{_DOUBLE_QUOTED_BODY}))\n"""
)
"""A line whose last node goes on on the next lines: a block scalar's header, an opened quote."""
_BLANK_LINES = re.compile(r"\n*+")
_INDENT = re.compile(" *+")


def _end(pattern: re.Pattern[str], text: str, position: int) -> int:
    """Where ``pattern``, which matches the empty string too, stops matching from ``position``."""
    match = pattern.match(text, position)
    assert match is not None
    return match.end()


@functools.lru_cache(maxsize=64)
def _block_scalar_lines(indent: int, folded: bool) -> re.Pattern[str]:
    """A block scalar's content lines: at ``indent`` (exactly, if folded) or empty."""
    line = rf" {{{indent}}}[^ \n]" if folded else f" {{{indent}}}"
    return re.compile(rf"(?:{line}[^\n]*+\n|\n)*+")


@functools.lru_cache(maxsize=64)
def _quoted_lines(quote: str, column: int) -> re.Pattern[str]:
    """A quoted scalar's later lines, further right than ``column``, up to its closing quote."""
    body = _SINGLE_QUOTED_BODY if quote == "'" else _DOUBLE_QUOTED_BODY
    line = rf" {{{column + 1},}}+{body}"
    return re.compile(rf"(?:{line}\n|\n)*+{line}{quote}\n")


def _block_structure(text: str) -> bool:
    """Whether ``text`` is block-style YAML in the few forms both parsers accept and read alike.

    yaml-rs accepts texts PyYAML (and kubectl) refuse, ``{a: [b}`` or ``a: :x`` among them, and
    would read them somehow: so every line must be empty, a comment, ``---``, a node line
    (``key:``, ``key: value``, ``- value``, ``- key: value``..., a comment after it) or the
    later lines of a block scalar or a quoted scalar, further right than its node. Multi-line
    flow collections and plain scalars, nested flow collections, a document that is a scalar,
    an empty block scalar, a quoted scalar with a comment after its last line and the like are
    refused (PyYAML reads them). How lines nest is left to the parsers: they agree on it.
    """
    position, end = 0, len(text)
    while True:
        position = _end(_NODE_LINES, text, position)
        if position == end:
            return True
        opener = _SCALAR_OPENER.match(text, position)
        if opener is None:
            return False
        column = len(opener["node"]) - (0 if opener["key"] is not None else 2)  # the key's or the dash's
        header = opener["header"]
        if header is None:
            later = _quoted_lines(opener["quote"][0], column).match(text, opener.end())
            if later is None:
                return False
            position = later.end()
            continue
        first_line = _end(_BLANK_LINES, text, opener.end())
        indent = _end(_INDENT, text, first_line) - first_line
        if indent <= column:
            return False  # an empty block scalar: at the end of a text yaml-rs reads "\n", PyYAML ""
        position = _end(_block_scalar_lines(indent, header[0] == ">"), text, opener.end())
        if _end(_INDENT, text, position) - position > column:
            return False  # less indented than its first line, or a folded scalar's "more indented" line


def readable(text: str) -> bool:
    """Whether both parsers accept ``text`` and read every scalar of it alike (see the module)."""
    if yaml_rs is None or not text.isascii():
        return False
    if "\t" in text or "\r" in text or " \n" in text or "\n%" in text or text.startswith("%"):
        return False  # tabs, CRs and trailing spaces: the parsers' edge cases, not manifests'
    if text and text[-1] != "\n":
        return False  # yaml-rs keeps a line break a block scalar at the very end has not
    # Words cut at spaces and flow indicators, found in C (ASCII: as bytes); each checked once.
    words = set(text.encode().translate(_WORD_BREAKS).split())
    if not _REFUSED_WORDS.isdisjoint(words):
        return False
    for word in words:
        if word[0] not in _NUMERIC_START:
            continue
        if _NUMERIC.fullmatch(word.rstrip(b":")) and not _SHARED_NUMBERS.fullmatch(word):
            return False
        if word.lstrip(b"+-").rstrip(b":").lower() in _SPECIAL_FLOATS:
            return False
    return _block_structure(text)


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
