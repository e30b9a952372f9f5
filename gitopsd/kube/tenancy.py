"""The sync pipeline's tenancy gates: the app's policy, then each object's owner.

:func:`policy_refusals` runs on the prepared render before any request that changes
something (rules in :mod:`gitopsd.engine.policy`). :class:`OwnershipGate` runs per step on
the objects about to be sent: it finds their live copies (the live cache, or one GET for an
object the cache does not hold: the cache sees gitopsd-labelled objects only) and applies the
rules of :mod:`gitopsd.kube.ownership`.

Between that check and the apply, another app of this daemon could pass the same check for the
same absent (or unowned) object: the gate keeps a claim per object being created or adopted
until the caller calls :meth:`OwnershipGate.release` (after the apply, when the live cache holds
the answer), and refuses the object to every other app meanwhile. Two installations creating
the same object at the same instant can still both pass; the last apply's owner annotation
wins, and the other one's next sync reports SharedResource (prune never deletes it, since it
checks the live owner).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import anyio

from gitopsd.core.events import Adopted, Event
from gitopsd.core.models import Health, Manifest, ObjectRef, ObjectResult
from gitopsd.engine.policy import Candidate, violations
from gitopsd.kube.apply import Desired, impersonation, is_shared
from gitopsd.kube.cache import Key, LiveCache
from gitopsd.kube.client import ApiError, KubeClient
from gitopsd.kube.ownership import SHARED_RESOURCE, Admission, admit, owner_value
from gitopsd.plugin.config import AppConfig


def policy_refusals(app: AppConfig, desired: list[Desired]) -> list[ObjectResult]:
    """A failed result per object that breaks the app's policy (empty: the render may go on)."""
    found = violations(app, [Candidate(d.ref, d.resource.namespaced) for d in desired])
    by_ref: dict[ObjectRef, list[str]] = {}
    for v in found:
        by_ref.setdefault(v.ref, []).append(v.message)
    return [ObjectResult(ref, "failed", Health.UNKNOWN, "; ".join(msgs)) for ref, msgs in by_ref.items()]


@dataclass(frozen=True, slots=True)
class Checked:
    """One object to send, its live copy and what the owner rules said."""

    desired: Desired
    live: Manifest | None
    admission: Admission


class OwnershipGate:
    """Owner checks for one cluster's installation ``instance`` (see :mod:`gitopsd.kube.ownership`)."""

    def __init__(
        self,
        client: KubeClient,
        cache: LiveCache,
        instance: str,
        cluster: str,
        emit: Callable[[Event], None],
    ):
        self.client = client
        self.cache = cache
        self.instance = instance
        self.cluster = cluster
        self._emit = emit
        self._claims: dict[Key, str] = {}  # object being created/adopted -> owner, until released

    def owner(self, app: AppConfig) -> str:
        """``<instance>/<app>``: the owner annotation the app's objects carry."""
        return owner_value(self.instance, app.name)

    async def check(
        self,
        app: AppConfig,
        objects: list[tuple[Desired, Manifest | None]],
        owned: set[Key],
        new_namespaces: frozenset[str] = frozenset(),
    ) -> list[Checked]:
        """The live copy of each object and whether the app may apply it.

        ``objects`` are (desired, live copy from the cache or None); an object the cache does not
        hold is asked for (impersonated as the app), since it may exist without our labels,
        except in ``new_namespaces`` (created by this sync: nothing can be in them yet). A
        failed GET is a refusal naming the API server's answer.
        """
        out: list[Checked | None] = [None] * len(objects)
        owner = self.owner(app)

        async def one(i: int, d: Desired, live: Manifest | None) -> None:
            if is_shared(d.obj):
                out[i] = Checked(d, live, Admission(True))
                return
            if live is None and str(d.obj["metadata"].get("namespace") or "") not in new_namespaces:
                try:
                    live = await self._get(app, d)
                except ApiError as exc:
                    out[i] = Checked(d, None, Admission(False, action="failed", message=str(exc)))
                    return
            admission = admit(d.obj, live, owner=owner, app_name=app.name, adopt=app.adopt, in_inventory=d.key in owned)
            if admission.allowed and (live is None or admission.adopted):
                holder = self._claims.setdefault(d.key, owner)
                if holder != owner:
                    admission = Admission(
                        False,
                        action="failed",
                        message=f"{SHARED_RESOURCE}: being applied by {holder}, not by {owner}: "
                        "two apps render this object; remove it from one of them",
                    )
            out[i] = Checked(d, live, admission)

        async with anyio.create_task_group() as tg:
            for i, (d, live) in enumerate(objects):
                tg.start_soon(one, i, d, live)
        return [c for c in out if c is not None]

    def release(self, app: AppConfig, keys: list[Key]) -> None:
        """Drop the app's claims on ``keys`` (their applies are done: the live cache knows)."""
        owner = self.owner(app)
        for key in keys:
            if self._claims.get(key) == owner:
                del self._claims[key]

    async def _get(self, app: AppConfig, d: Desired) -> Manifest | None:
        meta = d.obj["metadata"]
        try:
            live: Manifest = await self.client.request(
                "GET",
                d.resource.object_path(str(meta.get("namespace") or ""), str(meta["name"])),
                headers=impersonation(app),
            )
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return live

    def adopted(self, app: AppConfig, refs: list[ObjectRef]) -> None:
        """Send the ``adopted`` event for objects the app has just taken over."""
        if not refs:
            return
        names = [str(r) for r in refs]
        self._emit(
            Adopted.make(
                app=app.name,
                cluster=self.cluster,
                reason="Adopted",
                message=f"{app.name} adopted {len(refs)} existing object(s): " + ", ".join(names[:10]),
                data={"objects": names, "namespace": app.namespace, "owner": self.owner(app)},
            )
        )
