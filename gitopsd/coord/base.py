"""The contract of a coordination backend, and what it reports about members.

A backend keeps one *lease* for this member (etcd lease + member key, or a Lease object)
and named *locks* bound to that lease: an app lock says which member may write an app's
objects. A lock is only valid while the lease is: when the lease expires (the member died,
or could not reach the backend for ``lease_ttl``), its locks are free for others.

Fencing rests on one local rule (:meth:`Backend.valid`): a member counts its lease as
alive only until ``lease_ttl`` after it *sent* its last successful renewal. The backend
measures the same TTL from when it *received* that renewal, which is later, so a member
always stops writing before anyone else can take its locks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class CoordinationUnavailable(Exception):
    """The backend could not be reached or answered with an error; the lease may still be alive."""


class LeaseLost(Exception):
    """The backend says this member's lease no longer exists (it expired or was revoked)."""


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One live member as the backend knows it.

    Attributes:
        name: The member name (``[daemon.coordination] member``).
        advertise_url: Its API URL, or "".
        weight: Its share in shard mode.
        lease_age: Seconds since it last renewed its lease (as far as the backend tells), or None.
    """

    name: str
    advertise_url: str = ""
    weight: float = 1.0
    lease_age: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """What the daemon needs from etcd or Kubernetes Leases.

    Every method may raise :class:`CoordinationUnavailable`; ``keepalive`` also
    :class:`LeaseLost`. Lock names are app names, or ``"leader"`` in standby mode.
    """

    member: str
    ttl: float
    kind: str
    """``"etcd"`` or ``"kubernetes"`` (for messages and events)."""

    async def join(self) -> None:
        """Create a new lease and this member's record (advertise URL, weight) bound to it."""
        ...

    async def keepalive(self) -> None:
        """Renew the lease; on success :meth:`valid` stays true until ``ttl`` after this call started."""
        ...

    def valid(self, margin: float = 0.0) -> bool:
        """True while the lease is surely alive (locally: ``ttl - margin`` after the last renewal was sent)."""
        ...

    async def leave(self) -> None:
        """Give everything up at once: release the locks and end the lease (graceful stop)."""
        ...

    async def members(self, *, with_ages: bool = False) -> list[MemberInfo]:
        """The live members, this one included while its lease lives (``with_ages``: fill ``lease_age``, may cost a request per member)."""
        ...

    async def acquire(self, lock: str) -> bool:
        """Take ``lock`` for this member if it is free (or already ours); True if we hold it."""
        ...

    async def release(self, lock: str) -> None:
        """Free ``lock`` if this member holds it."""
        ...

    async def holders(self) -> dict[str, str]:
        """Every held lock and the member holding it (locks of expired members are absent)."""
        ...

    async def wait_change(self, timeout: float) -> None:
        """Return when members or locks may have changed, or after ``timeout`` seconds."""
        ...

    async def aclose(self) -> None:
        """Close connections (does not end the lease: see :meth:`leave`)."""
        ...
