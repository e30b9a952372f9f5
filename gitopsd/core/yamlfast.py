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
- a line outside the few block-style forms both parsers accept and nest alike
  (:func:`_block_structure`): keys, values, ``- `` items, one-line flow collections of
  scalars, block scalars, comments, ``---``, lined up as YAML nests them. Tags, anchors,
  aliases and explicit keys (``!``, ``&``, ``*``, ``?``) are none of these;
- more bytes than the caller's ``max_bytes`` (PyYAML counts the nodes of longer texts: a
  YAML node takes a byte at least), or a document count the parser's answer does not
  match (see :func:`_documents`).

Anything the fast parser refuses or fails on goes to PyYAML too, whose errors name the
line. The caller still checks the depth and the render's budget first
(:func:`gitopsd.core.yamlio.load_all`). tests/unit/test_yamlfast.py compares both readers,
on generated documents and on mutations of real manifests.
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

# The block structure both parsers read alike (see _block_structure): one regular expression
# per line. Scalars: single-quoted; double-quoted with only the escapes \" \\ \/ \n \t; plain
# ones that start with no indicator (a "-" only before a non-space) and hold no ": " and no
# final ":" (" #" ends a line's nodes before this is matched). Flow collections: on one line,
# of scalars without colons. Block scalar headers: literal or folded, clipped or stripped (no
# kept final breaks, no explicit indentation).
_QUOTED = r"""'(?:[^'\n]|'')*'|"(?:[^"\\\n]|\\["\\/nt])*\""""
_PLAIN_START = r"""(?:[^\s\-?:,\[\]{}#&*!|>'"%@`]|-\S)"""
_KEY = r"(?:[A-Za-z0-9_./][A-Za-z0-9_./-]*|" + _QUOTED + ")"
_FLOW_ITEM = rf"(?:{_QUOTED}|{_PLAIN_START}[^,\[\]{{}}:#]*?)"
_VALUE = (
    rf"(?:{_QUOTED}"
    rf"|\[ *(?:{_FLOW_ITEM} *(?:, *{_FLOW_ITEM} *)*)?\]"
    rf"|\{{ *(?:{_KEY}: +{_FLOW_ITEM} *(?:, *{_KEY}: +{_FLOW_ITEM} *)*)?\}}"
    rf"|[|>]-?"
    rf"|{_PLAIN_START}(?:[^:]|:(?=\S))*)"
)
_OPENED_QUOTE = r"""'(?:[^'\n]|'')*|"(?:[^"\\\n]|\\["\\/nt])*"""
"""A quoted scalar that goes on on the next lines."""
_LINE = re.compile(
    rf"( *)((?:- )*)(?:(?P<key>{_KEY}):(?: +(?P<value>{_VALUE}|{_OPENED_QUOTE}))?|(?P<item>{_VALUE}|{_OPENED_QUOTE}))"
)
"""A node line: indentation, sequence dashes, then ``key:``, ``key: value`` or a value."""
_QUOTED_WHOLE = re.compile(_QUOTED)
_QUOTED_GOES_ON = {"'": re.compile(r"(?:[^']|'')*"), '"': re.compile(r'(?:[^"\\]|\\["\\/nt])*')}
_QUOTED_ENDS = {"'": re.compile(r"(?:[^']|'')*'"), '"': re.compile(r'(?:[^"\\]|\\["\\/nt])*"')}
"""A quoted scalar's later lines: the whole line, or up to its closing quote (nothing after it)."""
_BLOCK_SCALAR_HEADERS = frozenset({"|", "|-", ">", ">-"})


def _block_structure(text: str) -> bool:
    """Whether ``text`` is block-style YAML in the few forms both parsers accept and nest alike.

    yaml-rs accepts texts PyYAML (and kubectl) refuse, ``{a: [b}`` or ``a: :x`` among them, and
    would read them somehow: so every line must be empty, a comment, ``---``, a block scalar's
    content, or a node line (:data:`_LINE`: ``key:``, ``key: value``, ``- value``, ``- key:
    value``...), and the lines must nest as YAML nests them: a node line is either the first
    node of the key above it (further right, or a ``- `` item at the key's column) or the next
    node of a collection it lines up with. A comment may end a line with no quote before it.
    A quoted scalar may go on over lines indented further than its node. Multi-line flow
    collections and plain scalars, nested flow collections, a document that is a scalar, an
    empty block scalar and the like are refused (PyYAML reads them).
    """
    open_nodes: list[tuple[int, bool, bool]] = []  # (column, a sequence, a "- " item at its key's column)
    child_of: int | None = -1  # the column of a "key:" whose value starts on a later line; -1: the document
    scalar_of: int | None = None  # inside a block scalar: its node's column (its content is further right)
    scalar_indent = 0  # the indentation of its first line
    folded = False
    quoted_of: int | None = None  # inside a quoted scalar's later lines: its node's column
    quote = ""
    for line in text.split("\n"):  # the text ends with a line break: the last is ""
        if not line:
            continue
        if quoted_of is not None:
            indent = len(line) - len(line.lstrip(" "))
            if indent <= quoted_of:
                return False  # PyYAML reads less indented lines on, yaml-rs may not
            if _QUOTED_ENDS[quote].fullmatch(line, indent):
                quoted_of = None
            elif not _QUOTED_GOES_ON[quote].fullmatch(line, indent):
                return False
            continue
        if scalar_of is not None:
            indent = len(line) - len(line.lstrip(" "))
            if indent > scalar_of:
                if not scalar_indent:
                    scalar_indent = indent
                elif indent < scalar_indent or (folded and indent != scalar_indent):
                    return False  # less indented than its first line, or a folded scalar's "more indented" line
                continue
            if not scalar_indent:
                return False  # an empty block scalar: at the end of a text yaml-rs reads "\n", PyYAML ""
            scalar_of = None
        if "#" in line:
            if line.lstrip(" ")[0] == "#":
                continue
            comment = line.find(" #")
            if comment > 0:
                if "'" in line[:comment] or '"' in line[:comment]:
                    return False  # the "#" may stand inside a quoted scalar
                line = line[:comment].rstrip(" ")
        if line == "---":
            open_nodes.clear()
            child_of = -1
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            return False
        indent, column = match.span(2)
        sequence = column > indent
        if child_of is not None and (indent > child_of or (indent == child_of and sequence)):
            if child_of < 0 and indent:
                return False
            open_nodes.append((indent, sequence, indent == child_of))
        else:
            while open_nodes and (open_nodes[-1][0] > indent or (open_nodes[-1][0] == indent and open_nodes[-1][2] and not sequence)):
                open_nodes.pop()
            if not open_nodes or open_nodes[-1][0] != indent or open_nodes[-1][1] != sequence:
                return False
        child_of = None
        if column > indent + 2:
            open_nodes.extend((dash, True, False) for dash in range(indent + 2, column, 2))
        key, value, item = match.group(3, 4, 5)
        if key is not None:
            if sequence:
                open_nodes.append((column, False, False))
            if value is None:
                child_of = column
                continue
        else:
            if not sequence:
                return False  # a document that is a scalar
            value = item
            column -= 2  # the dash's
        if value in _BLOCK_SCALAR_HEADERS:
            scalar_of, scalar_indent, folded = column, 0, value[0] == ">"
        elif value[0] in "'\"" and not _QUOTED_WHOLE.fullmatch(value):
            quoted_of, quote = column, value[0]
    return (scalar_of is None or scalar_indent > 0) and quoted_of is None

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
