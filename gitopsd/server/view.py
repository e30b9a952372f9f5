"""What the HTTP server (API and web page) reads from and triggers in the daemon.

The server depends on this protocol only, never on the daemon or its runners: the engine
implements it (:class:`gitopsd.daemon.view.DaemonView`), and a test or a benchmark can
serve the page from any other implementation over the same data types.

Everything here is plain, frozen data; the server never mutates what it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from gitopsd.core.events import Event
from gitopsd.core.models import Health, HistoryEntry, ObjectRef, SyncStatus


@dataclass(frozen=True, slots=True)
class AppSummary:
    """One app as the list shows it: identity, source, and the last known status.

    Attributes:
        source_type: The source plugin's type name (``git``, ``oci``, ...).
        source_url: Where the source lives ("" when it has no URL, e.g. a local directory).
        source_ref: The branch or tag followed, if any.
        source_path: Sub-directory inside the source the app reads ("" or "." for all).
        last_duration: Seconds the last sync took (0 when none ran).
    """

    name: str
    cluster: str
    namespace: str
    source_type: str
    source_url: str = ""
    source_ref: str = ""
    source_path: str = ""
    revision: str = ""
    sync: SyncStatus = SyncStatus.UNKNOWN
    health: Health = Health.UNKNOWN
    suspended: bool = False
    pinned_revision: str = ""
    self_heal: bool = True
    last_sync_time: datetime | None = None
    last_duration: float = 0.0
    last_result: str = ""
    last_message: str = ""
    last_counts: dict[str, int] = field(default_factory=dict)
    reconciles: int = 0
    waiting: str = ""  # what depends_on holds the app for ("" when it is not held)
    appset: str = ""  # the [appsets.*] table that generated the app ("" for its own [apps.*] table)


@dataclass(frozen=True, slots=True)
class ObjectView:
    """One object of an app: where it stands in the apply order, its health and sync.

    ``step`` names its place in the apply order: ``foundation``, ``early`` or ``wave N``.

    ``sync`` is ``Synced``, ``OutOfSync`` (live differs or is missing) or ``Unknown``
    (the live cache cannot tell yet).
    """

    ref: ObjectRef
    wave: int = 0
    step: str = ""
    health: Health = Health.UNKNOWN
    health_message: str = ""
    sync: SyncStatus = SyncStatus.UNKNOWN
    live_exists: bool = False


@dataclass(frozen=True, slots=True)
class DiffView:
    """Desired vs live of one object that differs: a unified diff, Secret values masked."""

    ref: ObjectRef
    diff: str
    live_exists: bool


class AppNotFound(LookupError):
    """No app of that name (the message names it)."""


class ActionRefused(Exception):
    """An action cannot be done (e.g. a rollback to a revision not in the history)."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class PushTarget:
    """What push-webhook matching needs about one app's source."""

    app: str
    url: str
    ref: str = ""
    semver: str = ""
    path: str = ""


ACTIONS = ("refresh", "sync", "suspend", "resume", "rollback")
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
