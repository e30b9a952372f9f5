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

Reading the records: an app is announced with :meth:`InventoryRecords.expect`
(``Cluster.started``, before its first reconcile in this process). When many announced apps
still need their record (a cold start, a takeover of many apps), the first one to need it reads
every record of the inventory namespace with one paged LIST, shared by all of them
(single-flight); a lone app (a reload, the CLI, an app forgotten and started again) sends one
GET. A LIST serves only the apps announced before it was sent: from its announcement (under
coordination, after its lock was taken) until it stops (``forget``), nothing but this process
writes an app's record, so what the LIST saw is still the record when the app's first sync
comes, however late; an app announced later is served by the next LIST or a GET.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _encode_string

import anyio

from gitopsd.core.errors import ApplyError
from gitopsd.core.models import Manifest, ObjectRef
from gitopsd.engine.protocols import Inventory
from gitopsd.kube.client import APPLY_PATCH, ApiError, KubeClient, Unreachable

RECORD_PREFIX = "gitopsd-inventory"
RECORD_LABEL = "gitopsd.dev/inventory"
INSTANCE_LABEL = "gitopsd.dev/instance"
APP_NAME_LABEL = "gitopsd.dev/inventory-app"
RECORD_MANAGER = "gitopsd-inventory"
_MAX_NAME = 253
_INVALID = re.compile(r"[^a-z0-9.-]+")
LIST_PAGE = 500
"""Records per page of the shared LIST (``limit``; the rest follows with ``continue``)."""
LIST_MIN_APPS = 4
"""A shared LIST is sent when at least this many announced apps still need their record ..."""
LIST_ITEMS_PER_GET = 32
"""... and at least one per this many ConfigMaps the previous LIST returned (else: GETs)."""


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
            "objects": "".join(map(_row, rows)),
        },
    }


def _row(ref: ObjectRef) -> str:
    """``json.dumps([group, version, kind, namespace, name]) + "\\n"``, the same text, without
    json.dumps's encoder set-up for each of an app's objects: each field is a string, encoded as
    json.dumps encodes strings (ASCII, escaped), joined with its default separator."""
    return "[" + ", ".join(map(_encode_string, (ref.group, ref.version, ref.kind, ref.namespace, ref.name))) + "]\n"


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


async def write_record(
    client: KubeClient,
    namespace: str,
    record: InventoryRecord,
    *,
    create_namespace: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Write ``record`` (server-side apply); creates ``namespace`` the first time it is missing
    (with ``create_namespace`` when given: see :meth:`InventoryRecords.write`).

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
    await (create_namespace() if create_namespace is not None else create_records_namespace(client, namespace))
    await client.request("PATCH", _path(namespace, name), query=query, body=body, content_type=APPLY_PATCH)


async def create_records_namespace(client: KubeClient, namespace: str) -> None:
    """Create (server-side apply) the namespace that holds the inventory records."""
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    await client.request(
        "PATCH", f"/api/v1/namespaces/{namespace}", query=[("fieldManager", RECORD_MANAGER), ("force", "true")],
        body=body, content_type=APPLY_PATCH,
    )


@dataclass(eq=False)
class _Listing:
    """One LIST of the inventory namespace in flight, and what it ended with."""

    seq: int  # apps announced up to this number are served by it
    done: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None  # ApiError or Unreachable; None: served (or cancelled)


_Ahead = InventoryRecord | ApplyError | None
"""What a LIST found for an app: its record, None (no record) or why it cannot be read."""


class InventoryRecords:
    """The inventory records of one installation in one cluster, and what was last written.

    See the module docstring for when a record is read with others' (one LIST) or alone (GET).
    """

    def __init__(self, client: KubeClient, namespace: str, instance: str):
        self.client = client
        self.namespace = namespace
        self.instance = instance
        self._known: dict[str, frozenset[ObjectRef]] = {}  # app -> content of its record
        # asyncio's locks: no checkpoint when free (anyio's yields twice per acquire, twice per sync)
        self._locks: dict[str, asyncio.Lock] = {}
        self._seq = itertools.count(1)
        self._expected: dict[str, int] = {}  # app announced (running here) -> its announcement number
        self._unread: set[str] = set()  # announced apps whose record was neither read nor written since
        self._ahead: dict[str, _Ahead] = {}  # what a LIST read for an announced app, until its first use
        self._listing: _Listing | None = None
        self._may_list = True  # False once a LIST was refused (403): GETs, as before LIST was used
        self._last_listed = 0  # ConfigMaps the last LIST returned (a LIST pays off for enough apps)
        self.lists = 0  # LISTs sent (tests and metrics)
        # Until a record write succeeded, the namespace may be missing: one write at a time
        # then (see write), and one app creates the namespace for all (_create_namespace).
        self._namespace_seen = False
        self._first_write: anyio.Event | None = None
        self._creating_namespace: anyio.Event | None = None

    def wrap(self, app: str, local: Inventory, *, dry_run: bool = False) -> ClusterInventory:
        """``local`` (the engine's inventory of ``app``) kept in step with the app's record."""
        return ClusterInventory(self, app, local, dry_run=dry_run)

    def lock(self, app: str) -> asyncio.Lock:
        return self._locks.get(app) or self._locks.setdefault(app, asyncio.Lock())

    def expect(self, app: str) -> None:
        """``app`` runs here from now on (until :meth:`forget`): its record may be read by a shared LIST.

        The caller promises that, until then, only this object writes the app's record (the
        daemon calls it when it starts the app's runner: under coordination, after taking its lock).
        """
        self._expected[app] = next(self._seq)
        self._ahead.pop(app, None)
        if app not in self._known:
            self._unread.add(app)

    def forget(self, app: str) -> None:
        """Read the app's record again before its next use (the app stopped; its state may change)."""
        self._known.pop(app, None)
        self._expected.pop(app, None)
        self._unread.discard(app)
        self._ahead.pop(app, None)

    def known(self, app: str) -> frozenset[ObjectRef] | None:
        """What the app's record and its SQLite inventory both hold; None until reconciled."""
        return self._known.get(app)

    async def reconcile(self, app: str, local: Inventory, *, dry_run: bool) -> frozenset[ObjectRef] | None:
        """Once per app and process: the record wins over ``local``; no record: written from it.

        A dry run changes neither: it gets the reconciled content (None: ``local``'s).
        """
        if app in self._known:
            return None
        if dry_run:
            try:
                record = await read_record(self.client, self.namespace, self.instance, app)
            except ApiError as exc:
                raise self._error("read", app, exc) from None
            return record.refs if record is not None else None
        record = await self._read(app)
        mine = frozenset(await local.current())
        if record is not None:
            self._namespace_seen = True  # it holds a record: no write needs to wait for another
            if mine != record.refs:
                await local.remove(mine - record.refs)
                await local.add(record.refs - mine)
            self._known[app] = record.refs
        elif mine:
            await self.write(app, mine)
        else:
            self._known[app] = frozenset()
        return None

    async def _read(self, app: str) -> InventoryRecord | None:
        """The app's record: from a shared LIST when it serves the app, else one GET."""
        while True:
            if app in self._ahead:
                found = self._ahead.pop(app)
                if isinstance(found, ApplyError):
                    raise found
                return found
            listing = self._listing
            announced = self._expected.get(app)
            if listing is not None and announced is not None and app in self._unread:
                await listing.done.wait()  # it serves the app, or the next one will
                if listing.error is not None and announced < listing.seq:
                    raise self._list_error(app, listing.error)
                continue
            if self._worth_listing(app):
                listing = await self._list()
                if listing.error is not None:
                    raise self._list_error(app, listing.error)
                continue
            self._unread.discard(app)
            try:
                return await read_record(self.client, self.namespace, self.instance, app)
            except ApiError as exc:
                raise self._error("read", app, exc) from None

    def _worth_listing(self, app: str) -> bool:
        return (
            self._may_list
            and app in self._unread
            and len(self._unread) >= max(LIST_MIN_APPS, self._last_listed // LIST_ITEMS_PER_GET)
        )

    async def _list(self) -> _Listing:
        """One paged LIST of the namespace's ConfigMaps; what it finds goes to the apps announced before it.

        A failure (ApiError, Unreachable) is kept in the returned listing for every app it served.
        """
        listing = self._listing = _Listing(next(self._seq))
        wanted = {record_name(self.instance, app): app for app in self._unread}
        found: dict[str, _Ahead] = {}
        listed = 0
        self.lists += 1
        try:
            cont = ""
            while True:
                query = [("limit", str(LIST_PAGE))] + ([("continue", cont)] if cont else [])
                try:
                    answer = await self.client.request("GET", _path(self.namespace), query=query)
                except ApiError as exc:
                    if exc.status == 404:  # no namespace yet: no record
                        break
                    if exc.status == 403:  # no right to list: one GET per app, as before
                        self._may_list = False
                        return listing
                    raise
                items = answer.get("items") or []
                listed += len(items)
                for item in items:
                    app = wanted.get(str((item.get("metadata") or {}).get("name") or ""))
                    if app is not None:
                        found[app] = self._decode(app, item)
                cont = str((answer.get("metadata") or {}).get("continue") or "")
                if not cont:
                    break
            self._last_listed = listed
            for app in wanted.values():
                announced = self._expected.get(app)
                if app in self._unread and announced is not None and announced < listing.seq:
                    self._ahead[app] = found.get(app)
                    self._unread.discard(app)
        except (ApiError, Unreachable) as exc:
            listing.error = exc
        finally:
            self._listing = None
            listing.done.set()
        return listing

    def _decode(self, app: str, item: Manifest) -> _Ahead:
        try:
            return decode(item)
        except ValueError as exc:
            return ApplyError(
                f"inventory record {self.namespace}/{record_name(self.instance, app)} is unreadable: {exc}",
                reason="InventoryUnavailable",
            )

    def _list_error(self, app: str, exc: BaseException) -> BaseException:
        if isinstance(exc, Unreachable):
            return Unreachable(str(exc))  # one per app: raised in each app's task
        return ApplyError(
            f"cannot list the inventory records in {self.namespace} "
            f"(for {record_name(self.instance, app)}): {exc}",
            reason="InventoryUnavailable",
        )

    async def write(self, app: str, refs: frozenset[ObjectRef]) -> None:
        """Write the app's record when ``refs`` differ from what it holds."""
        if self._known.get(app) == refs:
            return
        self._unread.discard(app)  # what a LIST read before this write is stale
        self._ahead.pop(app, None)
        # At a cold start on a new cluster every app writes its first record at once, and the
        # namespace is not there: each write would fail, create it and write again (at 100
        # apps: ~100 more requests, and two more round trips before each app applied anything).
        # So until one write succeeded, writes go one at a time.
        while not self._namespace_seen and self._first_write is not None:
            await self._first_write.wait()
        first = not self._namespace_seen
        if first:
            self._first_write = anyio.Event()
        try:
            await write_record(self.client, self.namespace, InventoryRecord(self.instance, app, refs),
                               create_namespace=self._create_namespace)
        except ApiError as exc:
            self._known.pop(app, None)  # unknown now: read it again next time
            raise self._error("write", app, exc) from None
        finally:
            if first and self._first_write is not None:
                self._first_write.set()
                self._first_write = None
        self._namespace_seen = True
        self._known[app] = refs

    async def _create_namespace(self) -> None:
        """Create the records' namespace once, however many writes found it missing at once."""
        creating = self._creating_namespace
        if creating is not None:
            await creating.wait()  # if that creation failed, the write that follows says so
            return
        self._creating_namespace = creating = anyio.Event()
        try:
            await create_records_namespace(self.client, self.namespace)
        finally:
            self._creating_namespace = None
            creating.set()

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
