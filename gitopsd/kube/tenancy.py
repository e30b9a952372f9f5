"""The sync pipeline's tenancy gates: the app's policy, then each object's owner.

:func:`policy_refusals` runs on the prepared render before any request that changes
something (rules in :mod:`gitopsd.engine.policy`). :class:`OwnershipGate` runs per step on
the objects about to be sent: it finds their live copies (the live cache, or one GET for an
object the cache does not hold: the cache sees gitopsd-labelled objects only) and applies the
rules of :mod:`gitopsd.kube.ownership` (one LIST per kind and namespace when several objects
need a look-up).

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

from gitopsd.core.events import Adopted, Event
from gitopsd.core.fanout import run_all
from gitopsd.core.models import Health, Manifest, ObjectRef, ObjectResult
from gitopsd.engine.policy import Candidate, violations
from gitopsd.kube.apply import Desired, impersonation, is_shared
from gitopsd.kube.cache import Key, LiveCache
from gitopsd.kube.client import ApiError, KubeClient, Unreachable
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

        ``objects`` are (desired, live copy from the cache or None). An object the cache does not
        hold is looked up (impersonated as the app), since it may exist without our labels,
        except in ``new_namespaces`` (created by this sync: nothing can be in them yet): one GET
        for a lone object, one LIST per kind and namespace for several (per-object GETs again
        if the LIST is refused). A failed lookup is a refusal naming the API server's answer.
        """
        owner = self.owner(app)
        lives: dict[Key, Manifest | None] = {}
        errors: dict[Key, str] = {}
        groups: dict[tuple[str, str, str], list[Desired]] = {}
        for d, live in objects:
            namespace = str(d.obj["metadata"].get("namespace") or "")
            lives[d.key] = live
            if live is None and not is_shared(d.obj) and namespace not in new_namespaces:
                groups.setdefault((d.resource.group, d.resource.kind, namespace), []).append(d)
        if groups:
            unreachable: list[Unreachable] = []

            async def look_up(group: list[Desired]) -> None:
                try:
                    await self._look_up(app, group, lives, errors)
                except Unreachable as exc:  # raised as itself below, not inside an exception group
                    unreachable.append(exc)

            await run_all([look_up(group) for group in groups.values()])
            if unreachable:
                raise unreachable[0]
        out = []
        for d, _ in objects:
            live = lives[d.key]
            if is_shared(d.obj):
                out.append(Checked(d, live, Admission(True)))
                continue
            if d.key in errors:
                out.append(Checked(d, None, Admission(False, action="failed", message=errors[d.key])))
                continue
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
            out.append(Checked(d, live, admission))
        return out

    def release(self, app: AppConfig, keys: list[Key]) -> None:
        """Drop the app's claims on ``keys`` (their applies are done: the live cache knows)."""
        owner = self.owner(app)
        for key in keys:
            if self._claims.get(key) == owner:
                del self._claims[key]

    async def _look_up(
        self, app: AppConfig, group: list[Desired], lives: dict[Key, Manifest | None], errors: dict[Key, str]
    ) -> None:
        """Fill ``lives`` (or ``errors``) for objects of one kind in one namespace."""
        if len(group) > 1:
            try:
                found = await self._list(app, group[0])
            except ApiError:
                pass  # e.g. no right to list: ask for each object, for a message per object
            else:
                for d in group:
                    lives[d.key] = found.get(d.key[3])
                return

        unreachable: list[Unreachable] = []

        async def one(d: Desired) -> None:
            try:
                lives[d.key] = await self._get(app, d)
            except ApiError as exc:
                errors[d.key] = str(exc)
            except Unreachable as exc:
                unreachable.append(exc)

        await run_all([one(d) for d in group])
        if unreachable:
            raise unreachable[0]

    async def _list(self, app: AppConfig, d: Desired) -> dict[str, Manifest]:
        """Every object of ``d``'s kind in its namespace, by name (paged LIST, no selector)."""
        found: dict[str, Manifest] = {}
        path = d.resource.collection_path(str(d.obj["metadata"].get("namespace") or ""))
        cont = ""
        while True:
            query = [("limit", "500")] + ([("continue", cont)] if cont else [])
            answer = await self.client.request("GET", path, query=query, headers=impersonation(app))
            for item in answer.get("items") or []:
                found[str((item.get("metadata") or {}).get("name") or "")] = item
            cont = str((answer.get("metadata") or {}).get("continue") or "")
            if not cont:
                return found

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
