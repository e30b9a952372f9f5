"""The Kubernetes Leases backend of coordination (coordination.k8s.io/v1), on a cluster's client.

Objects, in ``[daemon.coordination] namespace`` of the cluster named by ``cluster``:

- ``gitopsd-member-<member>``: one Lease per member, label ``gitopsd.dev/coordination=member``;
  ``spec.holderIdentity`` is the member's *session* (``<member>/<random>``, new at every
  join), ``renewTime`` is renewed every ``lease_ttl / 3``; annotations carry the advertise URL
  and weight. A member is live while ``renewTime + leaseDurationSeconds`` is in the future.
- ``gitopsd-lock-<app>`` (and ``gitopsd-lock-leader``): one Lease per lock, label
  ``gitopsd.dev/coordination=lock``; ``holderIdentity`` is the holder's session. A lock is
  bound to its holder's member Lease: it is free once that session is no longer live, so
  a member renews one object, not one per app.

Every take-over is an update carrying the observed ``resourceVersion``: when two members
race, the API server accepts one and answers 409 Conflict to the other, so a lock never
has two holders. Liveness compares the API server's ``renewTime`` values with this host's
clock: the members' clocks must agree (NTP) to well under ``lease_ttl``. Membership is
polled once a second.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

import anyio

from gitopsd.coord.base import CoordinationUnavailable, LeaseLost, MemberInfo
from gitopsd.kube.client import ApiError, KubeClient, Unreachable

ROLE_LABEL = "gitopsd.dev/coordination"
MEMBER_LABEL = "gitopsd.dev/member"
URL_ANNOTATION = "gitopsd.dev/advertise-url"
WEIGHT_ANNOTATION = "gitopsd.dev/weight"
POLL = 1.0


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _live(lease: dict[str, Any], now: float) -> bool:
    spec = lease.get("spec") or {}
    renewed = _parse(spec.get("renewTime"))
    return renewed is not None and renewed + float(spec.get("leaseDurationSeconds") or 0) > now


class LeaseBackend:
    """:class:`gitopsd.coord.base.Backend` on Lease objects.

    Args:
        client: The (opened) client of the cluster holding the Leases.
        namespace: Namespace of the Leases (must exist).
        member: This member's name (a DNS subdomain).
        ttl: ``leaseDurationSeconds`` of the member Lease.
        advertise_url: This member's API URL.
        weight: Its share of the apps in shard mode.
    """

    kind = "kubernetes"

    def __init__(self, client: KubeClient, namespace: str, member: str, ttl: float, *, advertise_url: str = "", weight: float = 1.0):
        self.client = client
        self.namespace = namespace
        self.member = member
        self.ttl = ttl
        self.advertise_url = advertise_url
        self.weight = weight
        self.session: str | None = None
        self._rv = ""
        self._valid_until = 0.0
        self._live_sessions: dict[str, str] = {}  # session -> member, as of the last members()

    # -- transport ------------------------------------------------------------------------

    def _path(self, name: str = "") -> str:
        base = f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"
        return f"{base}/{name}" if name else base

    async def _call(self, method: str, name: str = "", **kw: Any) -> dict[str, Any]:
        try:
            return await self.client.request(method, self._path(name), budget=max(0.5, self.ttl / 4), **kw)
        except Unreachable as exc:
            raise CoordinationUnavailable(f"Leases in {self.namespace}: {exc}") from None
        except ApiError as exc:
            if exc.status in (404, 409):
                raise
            raise CoordinationUnavailable(f"Leases in {self.namespace}: {exc}") from None

    def _lease(self, name: str, role: str, holder: str, rv: str = "", transitions: int = 0) -> dict[str, Any]:
        stamp = _now()
        meta: dict[str, Any] = {"name": name, "namespace": self.namespace, "labels": {ROLE_LABEL: role, MEMBER_LABEL: self.member}}
        if role == "member":
            meta["annotations"] = {URL_ANNOTATION: self.advertise_url, WEIGHT_ANNOTATION: str(self.weight)}
        if rv:
            meta["resourceVersion"] = rv
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": max(1, round(self.ttl)),
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": transitions,
            },
        }

    # -- lease ----------------------------------------------------------------------------

    @property
    def _member_lease(self) -> str:
        return f"gitopsd-member-{self.member}"

    async def join(self) -> None:
        """See :meth:`gitopsd.coord.base.Backend.join`: a new session in this member's Lease."""
        session = f"{self.member}/{secrets.token_hex(4)}"
        started = time.monotonic()
        try:
            current = await self._call("GET", self._member_lease)
        except ApiError as exc:
            if exc.status != 404:
                raise CoordinationUnavailable(str(exc)) from None
            try:
                created = await self._call("POST", body=self._lease(self._member_lease, "member", session))
            except ApiError as exc2:
                raise CoordinationUnavailable(f"creating Lease {self._member_lease}: {exc2}") from None
        else:
            transitions = int((current.get("spec") or {}).get("leaseTransitions") or 0) + 1
            body = self._lease(self._member_lease, "member", session, current["metadata"]["resourceVersion"], transitions)
            try:
                created = await self._call("PUT", self._member_lease, body=body)
            except ApiError as exc2:
                raise CoordinationUnavailable(f"taking Lease {self._member_lease}: {exc2}") from None
        self._rv = created["metadata"]["resourceVersion"]
        self.session = session
        self._valid_until = started + self.ttl

    async def keepalive(self) -> None:
        """Renew ``renewTime`` with the observed resourceVersion; LeaseLost if the Lease changed hands."""
        if self.session is None:
            raise LeaseLost("not joined")
        started = time.monotonic()
        try:
            current = await self._call("GET", self._member_lease)
            if (current.get("spec") or {}).get("holderIdentity") != self.session:
                raise LeaseLost(f"Lease {self._member_lease} is held by another session")
            spec = dict(current["spec"], renewTime=_now())
            renewed = await self._call("PUT", self._member_lease, body=dict(current, spec=spec))
        except ApiError as exc:
            self.session = None
            raise LeaseLost(f"Lease {self._member_lease}: {exc}") from None
        self._rv = renewed["metadata"]["resourceVersion"]
        self._valid_until = started + self.ttl

    def valid(self, margin: float = 0.0) -> bool:
        """See :meth:`gitopsd.coord.base.Backend.valid`."""
        return self.session is not None and time.monotonic() < self._valid_until - margin

    async def leave(self) -> None:
        """Delete our lock Leases, then the member Lease: others see us gone at once."""
        session, self.session = self.session, None
        self._valid_until = 0.0
        if session is None:
            return
        locks = await self._list("lock")
        async with anyio.create_task_group() as tg:
            for lease in locks:
                if (lease.get("spec") or {}).get("holderIdentity") == session:
                    tg.start_soon(self._delete, lease)
        try:
            await self._call("DELETE", self._member_lease)
        except ApiError:
            pass

    async def _delete(self, lease: dict[str, Any]) -> None:
        pre = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": lease["metadata"]["resourceVersion"]}}
        try:
            await self._call("DELETE", lease["metadata"]["name"], body=pre)
        except ApiError:
            pass  # taken or gone meanwhile

    # -- members and locks ----------------------------------------------------------------

    async def _list(self, role: str) -> list[dict[str, Any]]:
        answer = await self._call("GET", query=[("labelSelector", f"{ROLE_LABEL}={role}")])
        return list(answer.get("items") or [])

    async def members(self, *, with_ages: bool = False) -> list[MemberInfo]:
        """Members whose Lease is live now (ages always known: from ``renewTime``)."""
        now = time.time()
        out, sessions = [], {}
        for lease in await self._list("member"):
            if not _live(lease, now):
                continue
            meta, spec = lease["metadata"], lease.get("spec") or {}
            name = (meta.get("labels") or {}).get(MEMBER_LABEL) or meta["name"].removeprefix("gitopsd-member-")
            annotations = meta.get("annotations") or {}
            try:
                weight = float(annotations.get(WEIGHT_ANNOTATION) or 1.0)
            except ValueError:
                weight = 1.0
            renewed = _parse(spec.get("renewTime")) or now
            sessions[str(spec.get("holderIdentity"))] = name
            out.append(MemberInfo(name, annotations.get(URL_ANNOTATION, ""), weight, max(0.0, now - renewed)))
        self._live_sessions = sessions  # a session seen dead stays dead: a rejoin makes a new one
        return sorted(out, key=lambda m: m.name)

    async def holders(self) -> dict[str, str]:
        """Locks whose holder session is live (as of this call)."""
        await self.members()
        out = {}
        for lease in await self._list("lock"):
            holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
            if holder in self._live_sessions:
                out[lease["metadata"]["name"].removeprefix("gitopsd-lock-")] = self._live_sessions[holder]
        return out

    async def acquire(self, lock: str) -> bool:
        """Create the lock Lease, or take it over from a dead session with a resourceVersion precondition."""
        if self.session is None or not self.valid():
            return False
        name = f"gitopsd-lock-{lock}"
        try:
            current = await self._call("GET", name)
        except ApiError as exc:
            if exc.status != 404:
                return False
            try:
                await self._call("POST", body=self._lease(name, "lock", self.session))
                return True
            except ApiError:
                return False  # 409: another member created it first
        holder = str((current.get("spec") or {}).get("holderIdentity") or "")
        if holder == self.session:
            return True
        if holder and holder not in self._live_sessions:
            await self.members()  # the holder may have joined since the last list: look again
        if holder in self._live_sessions:  # held by a live session (perhaps an older one of ours)
            return False
        transitions = int((current.get("spec") or {}).get("leaseTransitions") or 0) + 1
        body = self._lease(name, "lock", self.session, current["metadata"]["resourceVersion"], transitions)
        try:
            await self._call("PUT", name, body=body)
        except ApiError:
            return False  # 409 Conflict: someone else won
        return True

    async def release(self, lock: str) -> None:
        """Delete the lock Lease if this session holds it."""
        try:
            current = await self._call("GET", f"gitopsd-lock-{lock}")
        except ApiError:
            return
        if (current.get("spec") or {}).get("holderIdentity") == self.session:
            await self._delete(current)

    async def wait_change(self, timeout: float) -> None:
        """Leases are polled: wait ``min(timeout, 1 s)``."""
        await anyio.sleep(min(timeout, POLL))

    async def aclose(self) -> None:
        """Nothing to close: the cluster pool owns the client."""
