"""The interface between the engine and the Kubernetes layer (implemented in ``gitopsd.kube``).

The engine knows clusters only through these protocols and passes plain data:
the app's config, manifests as dicts, object refs. ``gitopsd.kube`` implements
them on kubernetes-asyncio; nothing else imports that library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gitopsd.core.models import Health, HealthStatus, Manifest, ObjectRef, Rendered, SyncResult
from gitopsd.plugin.config import AppConfig


class Inventory(Protocol):
    """An app's persisted inventory, as the applier sees it.

    The applier calls ``add`` *before* the apply that may create objects and ``remove``
    only once objects are confirmed gone, so the inventory never misses a live object.
    """

    async def current(self) -> list[ObjectRef]:
        """Objects the app owned after its previous sync."""
        ...

    async def add(self, refs: Iterable[ObjectRef]) -> None:
        """Persist ``refs`` as owned by the app (one transaction)."""
        ...

    async def remove(self, refs: Iterable[ObjectRef]) -> None:
        """Forget ``refs`` (one transaction)."""
        ...


@dataclass(frozen=True, slots=True)
class ObjectDiff:
    """Desired vs live for one object, managed fields only (``gitopsd diff``)."""

    ref: ObjectRef
    diff: str  # unified diff of the YAML; "" when equal
    live_exists: bool


DriftCallback = Callable[[list[ObjectRef]], None]
"""Called (on the event loop, must not block) with the objects that drifted."""


class Cluster(Protocol):
    """One cluster: a client, a live-state cache and an apply pipeline, shared by its apps.

    ``in_sync``, ``health`` and ``track`` are called with the same :class:`Rendered` until
    the next render; an implementation may memoise per app by ``rendered.key``.
    """

    name: str

    @property
    def reachable(self) -> bool:
        """False while the API server cannot be reached."""
        ...

    async def sync(
        self,
        app: AppConfig,
        rendered: Rendered,
        inventory: Inventory,
        *,
        dry_run: bool = False,
        run_hooks: bool = True,
        fence: Callable[[], bool] | None = None,
    ) -> SyncResult:
        """Make the cluster match ``rendered``: order, apply what differs, prune, wait for health.

        ``fence``: when given, called before each apply step, hook phase and prune; once it
        returns False nothing more is written and the result fails with "fenced" (a
        coordination member that lost its app lock; see :mod:`gitopsd.coord`).

        ``run_hooks``: run the sync hooks among the manifests (PreSync, Sync, PostSync,
        SyncFail; see :mod:`gitopsd.kube.hooks`). The engine passes False when it only
        re-applies the same desired state (self-heal of drift). Hooks are never desired
        state: ``in_sync``, ``health``, ``diff`` and ``track`` leave them out.

        Returns a SyncResult (with ``rendered.revision``) listing each object's action and
        health; failures are in the result (``ok=False``), not raised, except when the
        cluster is unreachable (:class:`gitopsd.ApplyError` with reason ``ClusterUnreachable``).
        """
        ...

    async def diff(self, app: AppConfig, rendered: Rendered) -> list[ObjectDiff]:
        """Desired vs live per object, for objects that differ or are missing."""
        ...

    def in_sync(self, app: AppConfig, rendered: Rendered) -> bool | None:
        """From the live cache only, with no API request: True if every object matches.

        None when the cache cannot tell yet (not listed yet, cluster unreachable).
        """
        ...

    def health(self, app: AppConfig, rendered: Rendered) -> Health:
        """App health from the live cache, with no API request."""
        ...

    def track(self, app: AppConfig, rendered: Rendered, on_drift: DriftCallback) -> None:
        """Watch ``rendered``'s live objects; call ``on_drift`` when they stop matching (or vanish).

        Replaces any earlier tracking for the app.
        """
        ...

    def untrack(self, app_name: str) -> None:
        """Stop watching for the app's drift."""
        ...

    def started(self, app_name: str) -> None:
        """The app runs here from now on, until :meth:`untrack`: nobody else writes for it meanwhile.

        The Reconciler calls it before its first reconcile (under coordination, the app's lock
        is held by then). The cluster may then read what it keeps for the app (its inventory
        record) together with other started apps'.
        """
        ...


@runtime_checkable
class PrunesRemovedApps(Protocol):
    """Optional part of :class:`Cluster`: delete everything a removed app owned.

    The daemon calls it when an app with ``prune_on_remove = true`` leaves the config
    (checked with ``isinstance``: a cluster without it logs an error and prunes nothing).
    """

    async def prune_all(self, app: AppConfig, inventory: Inventory) -> SyncResult:
        """Delete every object in ``inventory`` (the app was removed with ``prune_on_remove``).

        Same rules as prune during a sync: only inventory objects, each removed from the
        inventory once confirmed gone. Failures are in the result (``ok=False``), not raised,
        except when the cluster is unreachable (ApplyError, reason ``ClusterUnreachable``).
        Each deleted object is an ObjectResult with action ``pruned``.
        """
        ...


class ClusterPool(Protocol):
    """Every configured cluster, one client each. An async context manager owning the clients."""

    async def __aenter__(self) -> ClusterPool: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def get(self, name: str) -> Cluster:
        """The cluster called ``name`` in the config."""
        ...


@dataclass(frozen=True, slots=True)
class ObjectState:
    """One desired object as the live cache sees it (the web page's objects table).

    ``step`` is its place in the apply order (``foundation``, ``early``, ``wave N``);
    ``in_sync`` is None while the cache cannot tell (kind not listed yet, cluster unreachable).
    """

    ref: ObjectRef
    step: str
    wave: int
    health: HealthStatus
    in_sync: bool | None
    live_exists: bool


@runtime_checkable
class DescribesObjects(Protocol):
    """Optional part of :class:`Cluster`: per-object health and sync, from the live cache only."""

    def object_states(self, app: AppConfig, manifests: list[Manifest]) -> list[ObjectState] | None:
        """Every object of ``manifests`` in apply order; None when a kind is not discovered yet.

        Sends no API request.
        """
        ...
