"""Inventory records in the target cluster: what each app of each installation owns.

Besides the daemon's SQLite state, every app's inventory is kept in its own cluster as the
ConfigMap ``gitopsd-inventory.<instance>.<app>`` (:func:`record_name`) in
``[daemon] inventory_namespace`` (default ``gitopsd-system``, created on first use), so any
gitopsd that can read the cluster knows what an app owns (:func:`read_record`,
:func:`list_records`), whatever happened to the disk of the daemon that applied it.

:class:`ClusterInventory` implements :class:`gitopsd.engine.protocols.Inventory` over the
engine's own (SQLite) inventory: ``add`` and ``remove`` write both, SQLite first, and only
when the content changes (so a sync that changes no ownership writes nothing). Once an app's
inventory is reconciled, :class:`InventoryRecords` keeps its content in memory (the record and
SQLite hold the same), so ``current`` and an ``add`` of refs already owned cost no read or
write. The applier calls ``add`` before the apply that may create objects, so the record never
misses a live object. Records are written with the daemon's own credentials, never impersonated: a tenant
needs no rights in the inventory namespace.

On an app's first sync after start (before anything is applied or pruned), SQLite and the
record are reconciled: the record wins (SQLite lost or behind is rebuilt from it); without a
record, one is written from SQLite (installations that predate records).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

import anyio

from gitopsd.core.errors import ApplyError
from gitopsd.core.models import Manifest, ObjectRef
from gitopsd.engine.protocols import Inventory
from gitopsd.kube.client import APPLY_PATCH, ApiError, KubeClient

RECORD_PREFIX = "gitopsd-inventory"
RECORD_LABEL = "gitopsd.dev/inventory"
INSTANCE_LABEL = "gitopsd.dev/instance"
APP_NAME_LABEL = "gitopsd.dev/inventory-app"
RECORD_MANAGER = "gitopsd-inventory"
_MAX_NAME = 253
_INVALID = re.compile(r"[^a-z0-9.-]+")


def record_name(instance: str, app: str) -> str:
    """``gitopsd-inventory.<instance>.<app>``, made a valid object name when it is not one.

    An invalid or too long name is lower-cased, stripped of other characters and shortened,
    with a short hash of the original appended, so two different pairs never share a record.
    """
    name = f"{RECORD_PREFIX}.{instance}.{app}"
    clean = _INVALID.sub("-", name.lower()).strip("-.")
    if clean == name and len(name) <= _MAX_NAME:
        return name
    suffix = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{clean[: _MAX_NAME - len(suffix) - 1].rstrip('-.')}-{suffix}"


@dataclass(frozen=True, slots=True)
class InventoryRecord:
    """One app's inventory as the cluster keeps it."""

    instance: str
    app: str
    refs: frozenset[ObjectRef]


def encode(namespace: str, record: InventoryRecord) -> Manifest:
    """The ConfigMap that holds ``record``."""
    rows = sorted(record.refs)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": record_name(record.instance, record.app),
            "namespace": namespace,
            "labels": {
                RECORD_LABEL: "true",
                INSTANCE_LABEL: record.instance,
                APP_NAME_LABEL: record.app,
            },
        },
        "data": {
            "instance": record.instance,
            "app": record.app,
            # One object per line: [group, version, kind, namespace, name].
            "objects": "".join(
                json.dumps([r.group, r.version, r.kind, r.namespace, r.name]) + "\n" for r in rows
            ),
        },
    }


def decode(obj: Manifest) -> InventoryRecord:
    """The record a ConfigMap made by :func:`encode` holds (ValueError if it is not one)."""
    data = obj.get("data") or {}
    refs = set()
    for line in str(data.get("objects") or "").splitlines():
        if line.strip():
            fields = json.loads(line)
            if not isinstance(fields, list) or len(fields) != 5:
                raise ValueError(f"invalid inventory line {line!r}")
            refs.add(ObjectRef(*(str(f) for f in fields)))
    return InventoryRecord(str(data.get("instance") or ""), str(data.get("app") or ""), frozenset(refs))


def _path(namespace: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    return f"{base}/{name}" if name else base


async def read_record(
    client: KubeClient, namespace: str, instance: str, app: str
) -> InventoryRecord | None:
    """The inventory record of ``app`` of installation ``instance``, or None if there is none."""
    try:
        obj = await client.request("GET", _path(namespace, record_name(instance, app)))
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    try:
        return decode(obj)
    except ValueError as exc:
        raise ApplyError(
            f"inventory record {namespace}/{record_name(instance, app)} is unreadable: {exc}",
            reason="InventoryUnavailable",
        ) from None


async def list_records(client: KubeClient, namespace: str, instance: str) -> list[InventoryRecord]:
    """Every inventory record of installation ``instance`` (one LIST)."""
    try:
        answer = await client.request(
            "GET", _path(namespace), query=[("labelSelector", f"{RECORD_LABEL}=true,{INSTANCE_LABEL}={instance}")]
        )
    except ApiError as exc:
        if exc.status == 404:
            return []
        raise
    return [decode(item) for item in answer.get("items") or []]


async def write_record(client: KubeClient, namespace: str, record: InventoryRecord) -> None:
    """Write ``record`` (server-side apply); creates ``namespace`` the first time it is missing.

    A record without objects is deleted instead.
    """
    name = record_name(record.instance, record.app)
    if not record.refs:
        try:
            await client.request("DELETE", _path(namespace, name))
        except ApiError as exc:
            if exc.status != 404:
                raise
        return
    query = [("fieldManager", RECORD_MANAGER), ("force", "true")]
    body = encode(namespace, record)
    try:
        await client.request("PATCH", _path(namespace, name), query=query, body=body, content_type=APPLY_PATCH)
        return
    except ApiError as exc:
        if exc.status != 404:
            raise
    # The namespace does not exist yet (first record of this cluster).
    namespace_body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    await client.request(
        "PATCH", f"/api/v1/namespaces/{namespace}", query=query, body=namespace_body, content_type=APPLY_PATCH
    )
    await client.request("PATCH", _path(namespace, name), query=query, body=body, content_type=APPLY_PATCH)


class InventoryRecords:
    """The inventory records of one installation in one cluster, and what was last written."""

    def __init__(self, client: KubeClient, namespace: str, instance: str):
        self.client = client
        self.namespace = namespace
        self.instance = instance
        self._known: dict[str, frozenset[ObjectRef]] = {}  # app -> content of its record
        self._locks: dict[str, anyio.Lock] = {}

    def wrap(self, app: str, local: Inventory, *, dry_run: bool = False) -> ClusterInventory:
        """``local`` (the engine's inventory of ``app``) kept in step with the app's record."""
        return ClusterInventory(self, app, local, dry_run=dry_run)

    def lock(self, app: str) -> anyio.Lock:
        return self._locks.setdefault(app, anyio.Lock())

    def forget(self, app: str) -> None:
        """Read the app's record again before its next use (the app stopped; its state may change)."""
        self._known.pop(app, None)

    def known(self, app: str) -> frozenset[ObjectRef] | None:
        """What the app's record and its SQLite inventory both hold; None until reconciled."""
        return self._known.get(app)

    async def reconcile(self, app: str, local: Inventory, *, dry_run: bool) -> frozenset[ObjectRef] | None:
        """Once per app and process: the record wins over ``local``; no record: written from it.

        A dry run changes neither: it gets the reconciled content (None: ``local``'s).
        """
        if app in self._known:
            return None
        try:
            record = await read_record(self.client, self.namespace, self.instance, app)
        except ApiError as exc:
            raise self._error("read", app, exc) from None
        if dry_run:
            return record.refs if record is not None else None
        mine = frozenset(await local.current())
        if record is not None:
            if mine != record.refs:
                await local.remove(mine - record.refs)
                await local.add(record.refs - mine)
            self._known[app] = record.refs
        elif mine:
            await self.write(app, mine)
        else:
            self._known[app] = frozenset()
        return None

    async def write(self, app: str, refs: frozenset[ObjectRef]) -> None:
        """Write the app's record when ``refs`` differ from what it holds."""
        if self._known.get(app) == refs:
            return
        try:
            await write_record(self.client, self.namespace, InventoryRecord(self.instance, app, refs))
        except ApiError as exc:
            self._known.pop(app, None)  # unknown now: read it again next time
            raise self._error("write", app, exc) from None
        self._known[app] = refs

    def _error(self, verb: str, app: str, exc: ApiError) -> ApplyError:
        return ApplyError(
            f"cannot {verb} the inventory record {self.namespace}/{record_name(self.instance, app)}: {exc}",
            reason="InventoryUnavailable",
        )


class ClusterInventory:
    """An app's :class:`~gitopsd.engine.protocols.Inventory`: the engine's own, plus the cluster record."""

    def __init__(self, records: InventoryRecords, app: str, local: Inventory, *, dry_run: bool):
        self._records = records
        self._app = app
        self._local = local
        self._dry_run = dry_run

    async def current(self) -> list[ObjectRef]:
        async with self._records.lock(self._app):
            view = await self._records.reconcile(self._app, self._local, dry_run=self._dry_run)
            if view is not None:
                return sorted(view)
            known = self._records.known(self._app)
            return sorted(known) if known is not None else await self._local.current()

    async def add(self, refs: Iterable[ObjectRef]) -> None:
        refs = list(refs)
        async with self._records.lock(self._app):
            known = self._records.known(self._app)
            if known is None:  # not reconciled (or its last write failed): what SQLite holds counts
                await self._local.add(refs)
                await self._records.write(self._app, frozenset(await self._local.current()))
                return
            merged = _merged(known, refs)
            if merged != known:
                await self._change(self._local.add(refs), merged)

    async def remove(self, refs: Iterable[ObjectRef]) -> None:
        refs = list(refs)
        async with self._records.lock(self._app):
            known = self._records.known(self._app)
            if known is None:
                await self._local.remove(refs)
                await self._records.write(self._app, frozenset(await self._local.current()))
                return
            gone = {_key(r) for r in refs}
            left = frozenset(r for r in known if _key(r) not in gone)
            if left != known:
                await self._change(self._local.remove(refs), left)

    async def _change(self, local_write: Awaitable[None], content: frozenset[ObjectRef]) -> None:
        """SQLite first, then the record; if either fails (or is cancelled), both are read again next time."""
        try:
            await local_write
            await self._records.write(self._app, content)
        except BaseException:
            self._records.forget(self._app)
            raise


def _key(ref: ObjectRef) -> tuple[str, str, str, str]:
    """What identifies an inventory row (the version is not part of it: a newer one replaces it)."""
    return (ref.group, ref.kind, ref.namespace, ref.name)


def _merged(known: frozenset[ObjectRef], refs: Iterable[ObjectRef]) -> frozenset[ObjectRef]:
    """``known`` with ``refs`` added, as the inventory stores them (one row per object, the last version)."""
    rows = {_key(r): r for r in known}
    rows.update((_key(r), r) for r in refs)
    return frozenset(rows.values())
