"""Semantic versions and ranges, as used to pick tags (git, OCI) and chart versions.

Ranges follow the npm/Helm style: comparators (``>=1.2.0 <2``, commas allowed as
separators), ``=``/``!=``, caret (``^1.2``), tilde (``~1.2``), wildcards (``1.x``, ``*``)
and alternatives with ``||``. A leading ``v`` on versions is accepted. Pre-releases
match only when the range itself names a pre-release, as in npm and Helm.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import total_ordering

from gitopsd.core.lazyre import LazyPattern

_VERSION = LazyPattern(
    r"^v?(?P<major>0|[1-9]\d*)(?:\.(?P<minor>0|[1-9]\d*))?(?:\.(?P<patch>0|[1-9]\d*))?"
    r"(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+(?P<build>[0-9A-Za-z.-]+))?$"
)
_FULL = LazyPattern(r"^v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


@total_ordering
@dataclass(frozen=True)
class Version:
    """A parsed semantic version (build metadata kept for display, ignored in ordering)."""

    major: int
    minor: int
    patch: int
    pre: tuple[int | str, ...] = ()
    original: str = ""

    @classmethod
    def parse(cls, text: str, *, strict: bool = True) -> Version | None:
        """Parse ``text``; with ``strict``, all three numbers are required (tags like v1.2.3)."""
        if strict and not _FULL.match(text):
            return None
        m = _VERSION.match(text)
        if not m:
            return None
        pre: tuple[int | str, ...] = ()
        if m["pre"]:
            pre = tuple(int(p) if p.isdigit() else p for p in m["pre"].split("."))
        return cls(int(m["major"]), int(m["minor"] or 0), int(m["patch"] or 0), pre, text)

    def _key(self) -> tuple[object, ...]:
        # A release sorts after its pre-releases; numeric identifiers before alphanumeric.
        pre_key = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in self.pre)
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre_key)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


class RangeError(ValueError):
    """The range text is not a valid semver range."""


_COMP = LazyPattern(r"^(>=|<=|>|<|=|!=|\^|~)?\s*(v?[0-9xX*][0-9A-Za-z.+*-]*)$")


def _partial(text: str) -> tuple[list[int | None], tuple[int | str, ...]]:
    """Numbers of a possibly partial version (None for x/*/missing) and its pre-release."""
    text = text.lstrip("v").split("+", 1)[0]
    core, _, pre_text = text.partition("-")
    parts: list[int | None] = []
    for piece in core.split("."):
        if piece in ("x", "X", "*", ""):
            parts.append(None)
        elif piece.isdigit():
            parts.append(int(piece))
        else:
            raise RangeError(f"invalid version {text!r}")
    if len(parts) > 3:
        raise RangeError(f"invalid version {text!r}")
    # Anything after a wildcard is a wildcard too.
    for i, value in enumerate(parts):
        if value is None:
            parts[i:] = [None] * (len(parts) - i)
            break
    parts += [None] * (3 - len(parts))
    pre = tuple(int(p) if p.isdigit() else p for p in pre_text.split(".")) if pre_text else ()
    return parts, pre


Check = Callable[[Version], bool]


def _comparator(op: str, text: str) -> tuple[list[Check], bool]:
    parts, pre = _partial(text)
    major, minor, patch = parts
    has_pre = bool(pre)

    def v(a: int, b: int, c: int, p: tuple[int | str, ...] = ()) -> Version:
        return Version(a, b, c, p)

    if major is None:
        return ([lambda x: True] if op in ("", "=", ">=", "<=", "^", "~") else [lambda x: False]), has_pre
    low = v(major, minor or 0, patch or 0, pre)
    if op in ("", "="):
        if minor is None:
            return [lambda x: v(major, 0, 0) <= x < v(major + 1, 0, 0, (0,))], has_pre
        if patch is None:
            return [lambda x: v(major, minor, 0) <= x < v(major, minor + 1, 0, (0,))], has_pre
        return [lambda x: x == low], has_pre
    if op == "!=":
        return [lambda x: x != low], has_pre
    if op == ">=":
        return [lambda x: x >= low], has_pre
    if op == ">":
        if minor is None:
            return [lambda x: x >= v(major + 1, 0, 0, (0,))], has_pre
        if patch is None:
            return [lambda x: x >= v(major, minor + 1, 0, (0,))], has_pre
        return [lambda x: x > low], has_pre
    if op == "<":
        if minor is None or patch is None:  # "<2" is "<2.0.0-0": no 2.0.0 pre-releases either
            return [lambda x: x < v(major, minor or 0, 0, (0,))], has_pre
        return [lambda x: x < low], has_pre
    if op == "<=":
        if minor is None:
            return [lambda x: x < v(major + 1, 0, 0, (0,))], has_pre
        if patch is None:
            return [lambda x: x < v(major, minor + 1, 0, (0,))], has_pre
        return [lambda x: x <= low], has_pre
    if op == "~":
        upper = v(major + 1, 0, 0, (0,)) if minor is None else v(major, minor + 1, 0, (0,))
        return [lambda x: low <= x < upper], has_pre
    # caret: do not change the leftmost non-zero number
    if major > 0 or minor is None:
        upper = v(major + 1, 0, 0, (0,))
    elif minor > 0 or patch is None:
        upper = v(0, minor + 1, 0, (0,))
    else:
        upper = v(0, 0, (patch or 0) + 1, (0,))
    return [lambda x: low <= x < upper], has_pre


@dataclass(frozen=True)
class Range:
    """A parsed range: ``alternatives`` is a list (OR) of comparator lists (AND)."""

    text: str
    alternatives: tuple[tuple[tuple[Check, ...], tuple[tuple[int, int, int], ...]], ...]

    @classmethod
    def parse(cls, text: str) -> Range:
        if not text.strip():
            raise RangeError("empty semver range")
        alternatives = []
        for alt in text.split("||"):
            tokens = [t for t in re.split(r"[\s,]+", alt.strip()) if t]
            # glue operators written apart from their version: ">= 1.2"
            merged: list[str] = []
            for token in tokens:
                if merged and merged[-1] in (">=", "<=", ">", "<", "=", "!=", "^", "~"):
                    merged[-1] += token
                else:
                    merged.append(token)
            if not merged:
                raise RangeError(f"invalid semver range {text!r}: empty alternative")
            checks: list[Check] = []
            pre_bases: list[tuple[int, int, int]] = []
            for token in merged:
                m = _COMP.match(token)
                if not m:
                    raise RangeError(f"invalid semver range {text!r}: cannot parse {token!r}")
                new_checks, has_pre = _comparator(m[1] or "", m[2])
                checks += new_checks
                if has_pre:
                    parts, _ = _partial(m[2])
                    pre_bases.append((parts[0] or 0, parts[1] or 0, parts[2] or 0))
            alternatives.append((tuple(checks), tuple(pre_bases)))
        return cls(text, tuple(alternatives))

    def matches(self, version: Version) -> bool:
        for checks, pre_bases in self.alternatives:
            if version.pre and (version.major, version.minor, version.patch) not in pre_bases:
                continue
            if all(check(version) for check in checks):
                return True
        return False


def highest(range_text: str, candidates: Iterable[str]) -> str | None:
    """The candidate string (e.g. a tag) with the highest version matching ``range_text``."""
    wanted = Range.parse(range_text)
    best: tuple[Version, str] | None = None
    for candidate in candidates:
        version = Version.parse(candidate)
        if version is None or not wanted.matches(version):
            continue
        if best is None or version > best[0]:
            best = (version, candidate)
    return best[1] if best else None
