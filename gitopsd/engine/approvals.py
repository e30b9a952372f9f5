"""Approval gates: a new revision of an app with ``approval`` is applied only once a person says yes.

One :class:`ApprovalGate` per app keeps the app's latest request in the state store
(table ``approvals``), so a restart neither forgets a pending request nor asks twice.

- A new desired revision makes a request (``approval-requested``, with the commit and a
  diff summary) and is *held*: the reconciler keeps reconciling the revision already
  applied, so self-heal goes on working.
- A newer revision supersedes a pending request (``approval-superseded``) and asks again.
- ``approve`` (Slack button, ``gitopsd approve``) lets exactly that revision through,
  once: a second approval of the same revision changes nothing. ``reject`` or the
  timeout leave the app where it is (``approval-rejected``, reason ``Rejected`` or ``Timeout``).

Decisions are compare-and-set in the store, so two clicks at the same moment decide once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from gitopsd.core import events as ev
from gitopsd.core.errors import GitopsdError
from gitopsd.core.models import Manifest, ObjectRef
from gitopsd.core.state import ApprovalRecord, StateStore
from gitopsd.plugin.config import AppConfig

if TYPE_CHECKING:
    # Annotations only: engine.protocols (two frozen dataclasses) comes with the Kubernetes layer, after ready.
    from gitopsd.engine.protocols import ObjectDiff

AWAITING = "awaiting-approval"
APPROVED = "approved"
REJECTED = "rejected"

DIFF_LINES = 12
"""Diff lines shown in a request (the rest is summed up as a count)."""


class ApprovalError(GitopsdError):
    """A decision that cannot be taken: no such pending revision, app without approval, ..."""

    reason = "ApprovalRefused"


class EmitEvent(Protocol):
    """``emit(EventClass, revision=..., reason=..., message=..., data=...)`` for the gate's app."""

    def __call__(self, cls: type[ev.Event], *, data: dict[str, Any] | None = None, **fields: Any) -> None: ...


def summarize(
    diffs: Sequence[ObjectDiff], manifests: Sequence[Manifest], inventory: Iterable[ObjectRef], namespace: str, prune: bool
) -> dict[str, Any]:
    """Objects created, changed and deleted by a render, and a few diff lines.

    Secrets show no diff lines at all (the kube layer masks their values already; this is
    the second lock on that door).
    """
    created = [str(d.ref) for d in diffs if not d.live_exists]
    changed = [str(d.ref) for d in diffs if d.live_exists]
    deleted: list[str] = []
    if prune:
        wanted = set()
        for manifest in manifests:
            ref = ObjectRef.from_manifest(manifest)
            wanted.add((ref.group, ref.kind, ref.name, ref.namespace or namespace))
            wanted.add((ref.group, ref.kind, ref.name, ""))
        deleted = [str(r) for r in inventory if (r.group, r.kind, r.name, r.namespace) not in wanted]
    lines: list[str] = []
    for d in diffs:
        if not d.live_exists or d.ref.kind == "Secret":
            continue
        body = [line for line in d.diff.splitlines() if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))]
        if body:
            lines.append(f"{d.ref}:")
            lines.extend(body)
    more = max(0, len(lines) - DIFF_LINES)
    return {"created": created, "changed": changed, "deleted": deleted, "lines": lines[:DIFF_LINES], "more_lines": more}


def matches(wanted: str, revision: str) -> bool:
    """True when ``wanted`` names ``revision``: equal, or a prefix of it or of its hash (7+ characters)."""
    if wanted == revision:
        return True
    digest = revision.rpartition(":")[2]
    return len(wanted) >= 7 and (revision.startswith(wanted) or digest.startswith(wanted))


class ApprovalGate:
    """The approval state of one app (see the module docstring).

    Args:
        app: The app's config (its ``approval`` must be set).
        store: The state store holding the ``approvals`` table.
        emit: Emits an event for the app (the reconciler's ``_event``).
        clock: The current time (aware UTC); tests pass a fake one.
        wake: Called after an approval, to reconcile at once.
    """

    def __init__(self, app: AppConfig, store: StateStore, emit: EmitEvent, clock: Callable[[], datetime], wake: Callable[[], None]):
        assert app.approval is not None
        self.app = app
        self.config = app.approval
        self.store = store
        self.emit = emit
        self.clock = clock
        self.wake = wake
        self.record: ApprovalRecord | None = None
        self._lock = anyio.Lock()

    async def load(self) -> None:
        self.record = await self.store.approval(self.app.name)

    def expires_at(self) -> datetime | None:
        """When the pending request times out (None when nothing is pending)."""
        if self.record is None or self.record.status != AWAITING:
            return None
        return self.record.requested_at + timedelta(seconds=self.config.timeout)

    async def admit(self, revision: str, previous: str, details: Callable[[], Awaitable[dict[str, Any]]]) -> bool:
        """True when ``revision`` was approved; else make sure a request for it is out and hold it.

        ``details()`` gives the request's ``commit`` and ``diff``; it runs before anything is
        stored, so a failure (render error) leaves no half-made request behind.
        """
        async with self._lock:
            record = self.record
            if record is not None and record.revision == revision:
                if record.status == APPROVED:
                    return True
                if record.status == AWAITING and self.clock() >= record.requested_at + timedelta(seconds=self.config.timeout):
                    await self._decide(record, REJECTED, by="timeout", reason="Timeout")
                return False
            info = await details()
            now = self.clock()
            new = ApprovalRecord(self.app.name, revision, now, AWAITING)
            await self.store.set_approval(new)
            self.record = new
            if record is not None and record.status == AWAITING:
                self.emit(
                    ev.ApprovalSuperseded,
                    revision=record.revision,
                    message=f"{self.app.name}: {record.revision} was superseded by {revision}; asking again",
                    data={"by": revision},
                )
            expires = now + timedelta(seconds=self.config.timeout)
            self.emit(
                ev.ApprovalRequested,
                revision=revision,
                message=f"{self.app.name}: {revision} waits for approval (still at {previous or 'nothing'})",
                data={**info, "approvers": list(self.config.approvers), "expires": expires.isoformat(), "previous": previous},
            )
            return False

    async def decide(self, wanted: str, *, approve: bool, by: str) -> str:
        """Approve or reject the pending revision ``wanted`` names; returns what happened, in words.

        Idempotent: approving an approved revision (or rejecting a rejected one) says so and
        changes nothing. Raises :class:`ApprovalError` when ``wanted`` is not the pending revision.
        """
        async with self._lock:
            record = await self.store.approval(self.app.name)  # the store is the truth (CAS below)
            self.record = record
            if record is None or not matches(wanted, record.revision):
                pending = f"the pending revision is {record.revision} ({record.status})" if record else "nothing is pending"
                self.emit(
                    ev.ApprovalRefused,
                    revision=wanted,
                    reason="NotPending",
                    message=f"{self.app.name}: {wanted} is not pending approval; {pending}",
                    data={"by": by},
                )
                raise ApprovalError(f"{self.app.name}: {wanted} is not pending approval; {pending}")
            if approve:
                if record.status == APPROVED:
                    return f"{self.app.name}: {record.revision} was already approved by {record.decided_by}"
                await self._decide(record, APPROVED, by=by)
                self.wake()
                return f"{self.app.name}: {record.revision} approved by {by}"
            if record.status == REJECTED:
                return f"{self.app.name}: {record.revision} was already rejected by {record.decided_by}"
            if record.status == APPROVED:
                raise ApprovalError(f"{self.app.name}: {record.revision} is already approved by {record.decided_by}")
            await self._decide(record, REJECTED, by=by, reason="Rejected")
            return f"{self.app.name}: {record.revision} rejected by {by}"

    async def _decide(self, record: ApprovalRecord, status: str, *, by: str, reason: str = "") -> None:
        decided = record._replace(status=status, decided_by=by, decided_at=self.clock(), reason=reason)
        if not await self.store.set_approval(decided, expect=(record.revision, record.status)):
            self.record = await self.store.approval(self.app.name)
            return
        self.record = decided
        if status == APPROVED:
            self.emit(
                ev.ApprovalGranted, revision=record.revision, message=f"{self.app.name}: {record.revision} approved by {by}", data={"by": by}
            )
        else:
            why = "nobody decided in time" if reason == "Timeout" else f"rejected by {by}"
            self.emit(
                ev.ApprovalRejected,
                revision=record.revision,
                reason=reason,
                message=f"{self.app.name}: {record.revision} not applied: {why}",
                data={"by": by},
            )
