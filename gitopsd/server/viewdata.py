"""The plain, frozen data the server reads from the daemon (:class:`gitopsd.server.view.AppsView`).

Imported at first use (the first app listing, page or push webhook), not at every start:
four frozen dataclasses cost about as much to create as the rest of the view
(:mod:`gitopsd.server.view` serves them under their old names; tests/unit/test_startup_imports.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gitopsd.core.models import Health, ObjectRef, SyncStatus


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
    hold: str = ""  # change control: "", "awaiting-approval", "rejected" or "window-closed"
    hold_revision: str = ""  # the revision that waits
    hold_message: str = ""
    hold_until: datetime | None = None  # when the window ends, or the approval request expires
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


@dataclass(frozen=True, slots=True)
class PushTarget:
    """What push-webhook matching needs about one app's source (:func:`gitopsd.server.push.match_apps`).

    An appset's repository is matched the same way, ``app`` naming the appset (``path`` empty).
    """

    app: str
    url: str
    ref: str = ""
    semver: str = ""
    path: str = ""
