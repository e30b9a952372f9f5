"""Events: what gitopsd tells people and plugins about what it did.

Every event is a frozen dataclass. The base class :class:`Event` carries the
fields every event has; each subclass names one kind of event (``name``, in
kebab-case), its default severity, and documents when it is emitted. Emit them
with ``EventClass.make(app=..., message=...)``; the engine logs each one as a
JSON line, passes it to the ``gitopsd_event`` hook and queues it for every
notifier whose filters accept it.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar, Self


class Severity(enum.StrEnum):
    """How much an event matters, from least to most."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


def new_event_id() -> str:
    """A random UUID4 as 32 hex digits: ``uuid.uuid4().hex`` without building a UUID object (3 Python calls)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    return raw.hex()


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something that happened, as notifiers and the ``gitopsd_event`` hook see it.

    Attributes:
        id: Unique id (a UUID4 hex string).
        time: When it happened (UTC).
        severity: info, warning or error.
        app: Application name, or "" for daemon-wide events.
        cluster: Cluster name, or "".
        revision: Source revision involved, or "".
        reason: Short machine-readable cause (CamelCase), e.g. ``AuthFailed``.
        message: One human sentence; never contains secrets.
        data: Extra details: counts, object lists, durations, URLs.
    """

    name: ClassVar[str] = "event"
    default_severity: ClassVar[Severity] = Severity.INFO

    id: str = field(default_factory=new_event_id)
    time: datetime = field(default_factory=partial(datetime.now, UTC))  # no Python frame per event
    severity: Severity = Severity.INFO
    app: str = ""
    cluster: str = ""
    revision: str = ""
    reason: str = ""
    message: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def make(cls, *, severity: Severity | None = None, **fields: Any) -> Self:
        """Build an event with this class's default severity unless one is given."""
        return cls(severity=severity or cls.default_severity, **fields)

    @property
    def dedupe_key(self) -> tuple[str, str, str, str]:
        """What makes two events "the same" for notification dedupe (no times, no durations)."""
        return (self.app, self.name, self.revision, self.reason)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: what the webhook notifier posts and the log line carries."""
        return {
            "id": self.id,
            "time": self.time.isoformat(),
            "name": self.name,
            "severity": str(self.severity),
            "app": self.app,
            "cluster": self.cluster,
            "revision": self.revision,
            "reason": self.reason,
            "message": self.message,
            "data": dict(self.data),
        }


EVENT_TYPES: dict[str, type[Event]] = {}
"""Every documented event class by its name (filled by :func:`_event`)."""


# The event classes below add no fields: they inherit Event's generated __init__, __eq__ and
# __repr__ (which use the instance's own class), and ``__slots__ = ()`` keeps them frozen and
# without a __dict__. A @dataclass on each would generate those methods again, at every import.
def _event(name: str, severity: Severity = Severity.INFO):  # type: ignore[no-untyped-def]
    def register(cls: type[Event]) -> type[Event]:
        cls.name = name
        cls.default_severity = severity
        EVENT_TYPES[name] = cls
        return cls

    return register


@_event("revision-detected")
class RevisionDetected(Event):
    """A source reports a revision different from the one last applied (or the first one)."""

    __slots__ = ()


@_event("fetch-failed", Severity.ERROR)
class FetchFailed(Event):
    """Polling or fetching the source failed (auth, unknown ref, network, timeout, verification)."""

    __slots__ = ()


@_event("render-failed", Severity.ERROR)
class RenderFailed(Event):
    """The renderer or a post-render hook failed; nothing was applied."""

    __slots__ = ()


@_event("sync-started")
class SyncStarted(Event):
    """A sync that will change the cluster begins (not emitted for no-op reconciles)."""

    __slots__ = ()


@_event("sync-succeeded")
class SyncSucceeded(Event):
    """A sync applied a new revision or changed objects, and the app became healthy."""

    __slots__ = ()


@_event("sync-failed", Severity.ERROR)
class SyncFailed(Event):
    """A sync failed: an apply error, a prune error, or a health timeout. ``data`` names the objects."""

    __slots__ = ()


@_event("drift-detected", Severity.WARNING)
class DriftDetected(Event):
    """Live objects no longer match what was applied and self-heal is off for the app."""

    __slots__ = ()


@_event("drift-corrected", Severity.WARNING)
class DriftCorrected(Event):
    """Self-heal re-applied objects that had been changed or deleted out of band."""

    __slots__ = ()


@_event("health-degraded", Severity.ERROR)
class HealthDegraded(Event):
    """The app's health became Degraded, Missing or Unknown (emitted once per transition)."""

    __slots__ = ()


@_event("health-recovered")
class HealthRecovered(Event):
    """The app's health became Healthy again after a health-degraded event."""

    __slots__ = ()


@_event("pruned")
class Pruned(Event):
    """Objects that left the desired state were deleted from the cluster; ``data["objects"]`` lists them."""

    __slots__ = ()


@_event("adopted")
class Adopted(Event):
    """Existing objects without a gitopsd owner were taken over (``adopt``); ``data["objects"]`` lists them."""

    __slots__ = ()


@_event("app-suspended")
class AppSuspended(Event):
    """Reconciliation of the app was suspended (API, CLI or rollback pin)."""

    __slots__ = ()


@_event("app-resumed")
class AppResumed(Event):
    """Reconciliation of a suspended app was resumed."""

    __slots__ = ()


@_event("config-reloaded")
class ConfigReloaded(Event):
    """A new configuration was validated and applied; ``data`` lists added, removed and changed apps."""

    __slots__ = ()


@_event("config-reload-failed", Severity.ERROR)
class ConfigReloadFailed(Event):
    """A new configuration was invalid; the running one stays. ``data["errors"]`` lists every error."""

    __slots__ = ()


@_event("notifier-failed", Severity.WARNING)
class NotifierFailed(Event):
    """A notifier gave up on a message (permanent error) or dropped queued events (full queue)."""

    __slots__ = ()


@_event("cluster-unreachable", Severity.ERROR)
class ClusterUnreachable(Event):
    """A cluster's API server could not be reached; its apps are marked Unknown until it is back."""

    __slots__ = ()


@_event("cluster-reachable")
class ClusterReachable(Event):
    """A cluster that was unreachable answers again."""

    __slots__ = ()


@_event("appset-guard", Severity.WARNING)
class AppSetGuard(Event):
    """An appset suddenly generated no apps, or would remove more than its ``max_removals``: nothing was removed (new apps were still added); ``data`` has ``appset``, ``removed`` (the apps kept), ``previous`` and ``generated``."""

    __slots__ = ()

    @property
    def dedupe_key(self) -> tuple[str, str, str, str]:
        return (str(self.data.get("appset", "")), self.name, ",".join(self.data.get("removed", ())), self.reason)


@_event("appset-failed", Severity.ERROR)
class AppSetFailed(Event):
    """An appset could not be expanded (fetch failed, undefined placeholder, invalid or clashing app): its apps stay as they were; ``data["appset"]`` names it, ``data["errors"]`` lists the problems."""

    __slots__ = ()

    @property
    def dedupe_key(self) -> tuple[str, str, str, str]:
        return (str(self.data.get("appset", "")), self.name, self.revision, self.message)


@_event("approval-requested")
class ApprovalRequested(Event):
    """A new revision of an app with ``approval`` waits for a person's yes; nothing is applied yet.

    ``data``: ``commit`` (message, author, from the source), ``diff`` (objects created,
    changed and deleted, a few diff lines, Secret values masked), ``approvers``,
    ``expires`` (ISO time) and ``previous`` (the revision still applied).
    """

    __slots__ = ()


@_event("approval-granted")
class ApprovalGranted(Event):
    """A pending revision was approved (``data["by"]`` names who: ``slack:U123`` or ``api``); it is applied next."""

    __slots__ = ()


@_event("approval-rejected", Severity.WARNING)
class ApprovalRejected(Event):
    """A pending revision was rejected (reason ``Rejected``) or nobody decided in time (``Timeout``).

    The app stays at the revision it had.
    """

    __slots__ = ()


@_event("approval-superseded")
class ApprovalSuperseded(Event):
    """A newer revision replaced a pending request (``data["by"]`` is the newer revision); it is asked again."""

    __slots__ = ()


@_event("approval-refused", Severity.WARNING)
class ApprovalRefused(Event):
    """Someone not allowed to decide tried to (``data["by"]``), or the revision was no longer pending."""

    __slots__ = ()


@_event("sync-window-closed", Severity.WARNING)
class SyncWindowClosed(Event):
    """A sync window holds the app's automatic syncs: ``data["window"]`` and ``data["until"]`` (ISO time).

    Sent once per window and revision; the sync runs when the window ends.
    """

    __slots__ = ()


@_event("chat-command")
class ChatCommand(Event):
    """An operator command arrived from chat (a Slack slash command): ``data["user"]``, ``data["command"]``,
    ``data["allowed"]`` and ``data["result"]``."""

    __slots__ = ()


@_event("coordination-lost", Severity.ERROR)
class CoordinationLost(Event):
    """This member could not renew its lease with the coordination backend (etcd or Kubernetes Leases) before it expired: it stopped writing to every app it held (others may take them); ``data`` has ``member``, ``backend`` and ``apps`` (the apps it stopped). It rejoins when the backend answers again."""

    __slots__ = ()


@_event("coordination-restored")
class CoordinationRestored(Event):
    """A member that had lost its lease joined again with a new one; ``data`` has ``member`` and ``backend``."""

    __slots__ = ()
