"""Secrets read from files, and the registry the log redactor scrubs them with.

Secrets only ever come from ``*_file`` options. Reading one registers its value
with :data:`REDACTOR`, so any log line, event or error message that would carry
it shows ``***`` instead.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import orjson

from gitopsd.core.errors import ConfigError

_MIN_SECRET_LENGTH = 4  # shorter values would redact ordinary words


class Redactor:
    """Replaces every known secret value in a string with ``***``. Thread-safe."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._longest_first: tuple[str, ...] = ()  # what scrub tries, rebuilt on add (every log field is scrubbed)
        self._in_json: tuple[str, ...] = ()  # each value as a JSON string spells it (what in_json looks for)
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        value = value.strip()
        if len(value) >= _MIN_SECRET_LENGTH:
            with self._lock:
                self._values.add(value)
                self._longest_first = tuple(sorted(self._values, key=len, reverse=True))
                self._in_json = tuple(_json_spelling(v) for v in self._longest_first)

    def scrub(self, text: str) -> str:
        for value in self._longest_first:
            if value in text:
                text = text.replace(value, "***")
        return text

    def in_json(self, text: str) -> bool:
        """Whether a known secret may occur in ``text``, a JSON document as orjson writes it.

        False means no string in the document holds a secret: JSON escapes a string
        character by character, so a string holding a secret holds its escaped spelling.
        """
        for value in self._in_json:  # a loop, not any(): no generator per log line
            if value in text:
                return True
        return False


def _json_spelling(value: str) -> str:
    """``value`` as it appears inside a JSON string (a lone surrogate, which orjson refuses, matches anything)."""
    try:
        return orjson.dumps(value).decode()[1:-1]
    except TypeError:
        return ""


REDACTOR = Redactor()
"""The process's redactor. It is deliberately process-wide: a secret read anywhere must be
scrubbed everywhere, including in log lines written by libraries."""


class Secret:
    """A secret value whose repr and str never show it. Call :meth:`reveal` where it is used."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value
        REDACTOR.add(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def check_secret_permissions(path: str | Path, option: str) -> None:
    """Refuse a secret file others could read or change, as ssh does with private keys.

    The file (after symlinks) must belong to the daemon's user and have no group or other
    permission bits. Raises ConfigError naming ``option``, the path and the fix.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError([f"{option}: secret file {path} does not exist"]) from None
    except OSError as exc:
        raise ConfigError([f"{option}: cannot read secret file {path}: {exc.strerror}"]) from None
    problems = []
    if info.st_uid != os.geteuid():
        problems.append(f"is owned by uid {info.st_uid}, not by the daemon's user (uid {os.geteuid()})")
    if info.st_mode & 0o077:
        problems.append(f"has mode {stat.S_IMODE(info.st_mode):04o}: group or others may access it")
    if problems:
        raise ConfigError([
            f"{option}: secret file {path} {' and '.join(problems)}: run `chmod 600 {path}` "
            "(and chown it to the daemon's user), or set daemon.strict_secret_permissions = false"
        ])


def read_secret_file(path: str | Path, option: str, *, strict: bool = True) -> Secret:
    """Read a secret from ``path``, stripping one trailing newline.

    With ``strict`` (``daemon.strict_secret_permissions``, the default) the file must be
    private to the daemon's user (see :func:`check_secret_permissions`). Raises ConfigError
    naming ``option`` (the dotted config key) and the path, never the content.
    """
    if strict:
        check_secret_permissions(path, option)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{option}: secret file {path} does not exist"]) from None
    except OSError as exc:
        raise ConfigError([f"{option}: cannot read secret file {path}: {exc.strerror}"]) from None
    value = text.removesuffix("\n").removesuffix("\r")
    if not value:
        raise ConfigError([f"{option}: secret file {path} is empty"])
    return Secret(value)
