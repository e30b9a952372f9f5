"""Web page sessions: a random id in an HttpOnly, SameSite=Strict cookie; the token stays server-side.

The cookie holds only a random session id; the server keeps a hash of it, what the session
may do (read, or everything), a per-session CSRF token for forms, and a fingerprint of the
token used to log in: when that token changes or is removed (config reload), the session ends.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from gitopsd.server.auth import Access

COOKIE = "gitopsd_session"
IDLE_TIMEOUT = 12 * 3600.0
"""Seconds without a request after which a session ends."""
MAX_SESSIONS = 1000
"""Sessions kept at most; the least recently used go first."""


class Session:
    """One logged-in browser."""

    __slots__ = ("access", "csrf", "fingerprint", "seen")

    def __init__(self, access: Access, csrf: str, fingerprint: str, seen: float) -> None:
        self.access = access
        self.csrf = csrf
        self.fingerprint = fingerprint
        self.seen = seen

    @property
    def can_write(self) -> bool:
        return self.access is Access.WRITE

    def csrf_ok(self, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.csrf.encode())


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    """The live sessions, in memory (a restart logs everybody out)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._sessions: dict[str, Session] = {}

    def create(self, access: Access, fingerprint: str) -> str:
        """A new session; returns the id to put in the cookie."""
        session_id = secrets.token_urlsafe(32)
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions, key=lambda k: self._sessions[k].seen)
            del self._sessions[oldest]
        self._sessions[_key(session_id)] = Session(access, secrets.token_urlsafe(32), fingerprint, self._clock())
        return session_id

    def get(self, session_id: str | None, fingerprint: Callable[[Access], str]) -> Session | None:
        """The session of ``session_id`` if it is live and its token unchanged, else None."""
        if not session_id:
            return None
        key = _key(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self._clock()
        current = fingerprint(session.access)
        if now - session.seen > IDLE_TIMEOUT or not current or not hmac.compare_digest(current, session.fingerprint):
            del self._sessions[key]
            return None
        session.seen = now
        return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(_key(session_id), None)

    def __len__(self) -> int:
        return len(self._sessions)
