"""What the HTTP server (API and web page) reads from and triggers in the daemon.

The server depends on this protocol only, never on the daemon or its runners: the engine
implements it (:class:`gitopsd.daemon.view.DaemonView`), and a test or a benchmark can
serve the page from any other implementation over the same data types.

Its data types (:mod:`gitopsd.server.viewdata`, also importable from here) are plain, frozen
data; the server never mutates what it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gitopsd.core.events import Event
    from gitopsd.core.models import HistoryEntry, ObjectRef
    from gitopsd.server.viewdata import AppSummary, DiffView, ObjectView, PushTarget

_DATA_TYPES = frozenset({"AppSummary", "DiffView", "ObjectView", "PushTarget"})


def __getattr__(name: str) -> Any:
    """``AppSummary``, ``ObjectView``, ``DiffView`` and ``PushTarget``, from :mod:`gitopsd.server.viewdata`
    at first use (the daemon starts without them)."""
    if name not in _DATA_TYPES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from gitopsd.server import viewdata

    value = getattr(viewdata, name)
    globals()[name] = value
    return value


class AppNotFound(LookupError):
    """No app of that name (the message names it)."""


class ActionRefused(Exception):
    """An action cannot be done (e.g. a rollback to a revision not in the history)."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


ACTIONS = ("refresh", "sync", "suspend", "resume", "rollback", "approve", "reject")
"""The operator actions, each behind the API token."""


class AppsView(Protocol):
    """The daemon as the HTTP server sees it."""

    @property
    def stopping(self) -> bool:
        """True once a graceful shutdown began."""
        ...

    def not_ready(self) -> list[str]:
        """Why the daemon is not ready (``starting``, ``cluster X not reached yet``); [] when ready."""
        ...

    def apps(self) -> list[AppSummary]:
        """Every app, in name order."""
        ...

    def app(self, name: str) -> AppSummary:
        """One app; raises :class:`AppNotFound`."""
        ...

    async def history(self, name: str, limit: int) -> list[HistoryEntry]:
        """The app's last ``limit`` syncs, newest first (from the state store)."""
        ...

    def events(self, name: str, limit: int) -> list[Event]:
        """The app's most recent events, newest first (a bounded ring kept in memory)."""
        ...

    async def objects(self, name: str) -> list[ObjectView]:
        """The app's desired objects with their live health and sync, in apply order.

        From the live cache: no API request. [] before the app's first render.
        """
        ...

    async def inventory(self, name: str) -> list[ObjectRef]:
        """What the app owns in the cluster (what prune may delete)."""
        ...

    async def diff(self, name: str) -> list[DiffView]:
        """Desired vs live for the objects that differ; Secret values masked."""
        ...

    async def act(self, name: str, action: str, revision: str = "") -> str:
        """Do one of :data:`ACTIONS`; returns the resulting revision for a rollback, else "".

        Raises :class:`AppNotFound`, or :class:`ActionRefused` (e.g. unknown revision).
        """
        ...

    async def wait_changed(self, timeout: float) -> None:
        """Return when something may have changed (an event), or after ``timeout`` seconds."""
        ...

    def push_targets(self) -> Sequence[PushTarget]:
        """Every app's source, for matching push webhooks."""
        ...

    def fire(self, names: Sequence[str], reason: str) -> None:
        """Wake these apps to poll their source now (a push webhook); unknown names are ignored."""
        ...

    def appset_push_targets(self) -> Sequence[tuple[str, str, str]]:
        """``(appset, url, ref)`` of every repository an appset's generators read."""
        ...

    def refresh_appsets(self, names: Sequence[str]) -> None:
        """Expand these appsets again now (a push webhook to a repository they read)."""
        ...

    def open_windows(self) -> list[dict[str, Any]]:
        """The sync windows open now: ``{name, kind, start, end}`` (ISO times)."""
        ...

    async def decide(self, name: str, revision: str, *, approve: bool, by: str) -> str:
        """Approve or reject the app's pending revision; a message saying what happened.

        Raises AppNotFound, or ActionRefused (409) when ``revision`` is not the pending one.
        """
        ...
