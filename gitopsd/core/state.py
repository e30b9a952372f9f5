"""Persistent state: SQLite under ``state_dir`` (WAL, one writer thread, transactional).

Per application: the last applied revision, the inventory of objects it owns, a
sync history, and operator pins (suspended, rollback revision). Every write is one
transaction, so a crash never leaves a half-written inventory. The schema is
versioned with ``PRAGMA user_version`` and migrated forward on open.

Calls that arrive while the worker thread is busy are run together, in order, in the
next trip to that thread: a thread hop costs more than a small SQLite write, and hundreds
of apps syncing at once would otherwise pay one hop (and the GIL hand-over) per call.
A trip leaves one turn of the event loop after the call that starts it, so the calls of
the tasks that are ready at that moment go with it.
The thread is the store's own (:class:`_Worker`): a trip through ``anyio.to_thread`` (its
limiter, cancel scope, thread pool and ``queue.Queue``) cost 1.7 times the CPU of one through a
C ``SimpleQueue`` and one ``call_soon_threadsafe`` back (``python -m bench.state_trips``).
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import anyio
import anyio.to_thread

from gitopsd.core.errors import ConfigError
from gitopsd.core.models import HistoryEntry, ObjectRef

T = TypeVar("T")

HISTORY_KEPT = 100

_MIGRATIONS: list[str] = [
    # 1: initial schema
    """
    CREATE TABLE apps (
        name TEXT PRIMARY KEY,
        revision TEXT NOT NULL DEFAULT '',
        applied_digest TEXT NOT NULL DEFAULT '',
        updated TEXT NOT NULL
    );
    CREATE TABLE inventory (
        app TEXT NOT NULL,
        grp TEXT NOT NULL,
        version TEXT NOT NULL,
        kind TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (app, grp, kind, namespace, name)
    );
    CREATE TABLE history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        app TEXT NOT NULL,
        time TEXT NOT NULL,
        revision TEXT NOT NULL,
        result TEXT NOT NULL,
        message TEXT NOT NULL,
        counts TEXT NOT NULL
    );
    CREATE INDEX history_app ON history (app, id);
    """,
    # 2: operator pins survive restarts
    """
    CREATE TABLE pins (
        app TEXT PRIMARY KEY,
        suspended INTEGER NOT NULL DEFAULT 0,
        revision TEXT NOT NULL DEFAULT ''
    );
    """,
    # 3: the app's health after each sync (health events are sent once per transition,
    # across restarts and one-shot runs too)
    """
    ALTER TABLE history ADD COLUMN health TEXT NOT NULL DEFAULT '';
    """,
    # 4: what triggered each sync (the web page's history)
    """
    ALTER TABLE history ADD COLUMN triggered_by TEXT NOT NULL DEFAULT '';
    """,
    # 5: the pending approval of each app with `approval` (engine/approvals.py)
    """
    CREATE TABLE approvals (
        app TEXT PRIMARY KEY,
        revision TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        status TEXT NOT NULL,
        decided_by TEXT NOT NULL DEFAULT '',
        decided_at TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT ''
    );
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)


class AppRecord(NamedTuple):
    """What the state knows about one app."""

    name: str
    revision: str
    applied_digest: str
    updated: datetime


class ApprovalRecord(NamedTuple):
    """An app's latest approval request and its decision (see :mod:`gitopsd.engine.approvals`).

    ``status`` is ``awaiting-approval``, ``approved`` or ``rejected``; ``reason`` says why
    a request was rejected (``Rejected``, ``Timeout``).
    """

    app: str
    revision: str
    requested_at: datetime
    status: str
    decided_by: str = ""
    decided_at: datetime | None = None
    reason: str = ""


class Pin(NamedTuple):
    """An operator's hold on an app: suspended, and/or pinned to a revision (rollback)."""

    suspended: bool = False
    revision: str = ""


class AppStart(NamedTuple):
    """What the state knows about an app when it starts (see :meth:`StateStore.app_start`)."""

    record: AppRecord | None
    pin: Pin
    last_health: str | None
    """The health recorded with the last sync; None without history."""


class _Call:
    """One queued call of :meth:`StateStore._run` and its outcome."""

    __slots__ = ("done", "error", "func", "value")

    def __init__(self, func: Callable[[sqlite3.Connection], Any]) -> None:
        self.func = func
        self.value: Any = None
        self.error: Exception | None = None
        self.done = False


def _run_batch(conn: sqlite3.Connection, batch: list[_Call]) -> None:
    """Run every call of ``batch`` in order (on the worker thread); each keeps its own result or error."""
    for call in batch:
        try:
            call.value = call.func(conn)
        except Exception as exc:
            call.error = exc
        call.done = True


_Trip = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]", sqlite3.Connection, list[_Call]]


class _Worker:
    """The store's thread: runs the batches it is given one after the other, and resolves
    each batch's future on its event loop when the batch has run."""

    def __init__(self) -> None:
        self._trips: queue.SimpleQueue[_Trip | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, trip: _Trip) -> None:
        if self._thread is None:
            # A daemon thread: a daemon that exits without closing the store does not wait for it
            # (SQLite's transactions keep the file whole, as after a kill).
            self._thread = threading.Thread(target=self._main, name="gitopsd-state", daemon=True)
            self._thread.start()
        self._trips.put(trip)

    def stop(self) -> None:
        """End the thread after the batches submitted so far."""
        if self._thread is not None:
            self._trips.put(None)
            self._thread = None

    def _main(self) -> None:
        while (trip := self._trips.get()) is not None:
            loop, done, conn, batch = trip
            try:
                _run_batch(conn, batch)
            finally:
                try:
                    loop.call_soon_threadsafe(_resolve, done)
                except RuntimeError:  # the loop was closed meanwhile: nobody waits for the batch
                    pass


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


class StateStore:
    """The state database. Open with ``await StateStore.open(state_dir)``; all methods are async.

    Calls run on one worker thread at a time (a capacity-1 limiter), so SQLite sees a
    single writer and the event loop never blocks on disk. Calls made while a batch is on
    that thread are queued and run, in order, as the next batch (one thread hop for all).
    """

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self._conn = conn
        self.path = path
        self._worker = _Worker()
        weakref.finalize(self, self._worker.stop)  # a store dropped without close() ends its thread
        self._preloaded: dict[str, AppStart] = {}
        self._owns_nothing: set[str] = set()
        """Apps :meth:`preload` found without inventory rows and not written to since: their
        :meth:`inventory` is empty without a trip (this store is the database's only writer)."""
        self._added_while_preloading: set[str] | None = None
        self._queue: list[_Call] = []
        self._busy = False
        self._batch_done: asyncio.Event | None = None
        self.calls = 0
        """Calls made so far (tests and benchmarks compare it with :attr:`batches`)."""
        self.batches = 0
        """Trips to the worker thread so far."""

    @classmethod
    async def open(cls, state_dir: Path) -> StateStore:
        path = state_dir / "state.db"
        try:
            conn = await anyio.to_thread.run_sync(_connect, path)
        except (sqlite3.Error, OSError) as exc:  # a full disk, a read-only or corrupt file: say which
            raise ConfigError([f"daemon.state_dir: cannot open the state database {path}: {exc}"]) from None
        return cls(conn, path)

    async def _run(self, func: Callable[[sqlite3.Connection], T]) -> T:
        """``func(connection)`` on the worker thread, in the next batch; its result or its error."""
        call = _Call(func)
        self._queue.append(call)
        self.calls += 1
        try:
            while not call.done:
                if self._busy:
                    assert self._batch_done is not None
                    await self._batch_done.wait()
                else:
                    await self._run_queued()
        except BaseException:
            if not call.done and call in self._queue:
                self._queue.remove(call)  # cancelled before its batch left: it never runs
            raise
        if call.error is not None:
            raise call.error
        return call.value  # type: ignore[no-any-return]

    async def _run_queued(self) -> None:
        """Take every queued call to the worker thread in one trip; wake the callers waiting on it."""
        self._busy = True
        done = self._batch_done = asyncio.Event()
        try:
            await asyncio.sleep(0)  # the calls of the tasks ready now join this trip
            batch, self._queue = self._queue, []
            loop = asyncio.get_running_loop()
            ran = loop.create_future()
            self._worker.submit((loop, ran, self._conn, batch))
            self.batches += 1
            with anyio.CancelScope(shield=True):  # the batch runs to its end: its callers learn how
                await ran
        finally:
            self._busy = False
            done.set()

    async def close(self) -> None:
        try:
            await self._run(lambda c: c.close())
        finally:
            self._worker.stop()

    # -- reads ---------------------------------------------------------------------------

    async def app(self, name: str) -> AppRecord | None:
        def read(c: sqlite3.Connection) -> AppRecord | None:
            row = c.execute("SELECT name, revision, applied_digest, updated FROM apps WHERE name = ?", (name,)).fetchone()
            return AppRecord(row[0], row[1], row[2], datetime.fromisoformat(row[3])) if row else None

        return await self._run(read)

    async def inventory(self, app: str) -> list[ObjectRef]:
        if app in self._owns_nothing:
            return []

        def read(c: sqlite3.Connection) -> list[ObjectRef]:
            rows = c.execute(
                "SELECT grp, version, kind, namespace, name FROM inventory WHERE app = ? ORDER BY grp, kind, namespace, name",
                (app,),
            )
            return [ObjectRef(*row) for row in rows]

        return await self._run(read)

    async def history(self, app: str, limit: int = 20) -> list[HistoryEntry]:
        def read(c: sqlite3.Connection) -> list[HistoryEntry]:
            rows = c.execute(
                "SELECT time, revision, result, message, counts, health, triggered_by FROM history "
                "WHERE app = ? ORDER BY id DESC LIMIT ?",
                (app, limit),
            )
            return [HistoryEntry(datetime.fromisoformat(r[0]), r[1], r[2], r[3], json.loads(r[4]), r[5], r[6]) for r in rows]

        return await self._run(read)

    async def preload(self, apps: Iterable[str]) -> None:
        """Read what :meth:`app_start` returns for every app in ``apps`` in one go (daemon start-up),
        and which of them own nothing (their first sync then reads no inventory)."""
        names = set(apps)

        def read(c: sqlite3.Connection) -> tuple[dict[str, AppStart], set[str]]:
            records = {
                r[0]: AppRecord(r[0], r[1], r[2], datetime.fromisoformat(r[3]))
                for r in c.execute("SELECT name, revision, applied_digest, updated FROM apps")
                if r[0] in names
            }
            pins = {r[0]: Pin(bool(r[1]), r[2]) for r in c.execute("SELECT app, suspended, revision FROM pins") if r[0] in names}
            health = {
                r[0]: r[1]
                for r in c.execute(
                    "SELECT app, health FROM history WHERE id IN (SELECT MAX(id) FROM history GROUP BY app)"
                )
                if r[0] in names
            }
            owners = {r[0] for r in c.execute("SELECT DISTINCT app FROM inventory")}
            return {n: AppStart(records.get(n), pins.get(n, Pin()), health.get(n)) for n in names}, names - owners

        added = self._added_while_preloading = set()  # an add queued after the read: not empty any more
        try:
            self._preloaded, empty = await self._run(read)
        finally:
            self._added_while_preloading = None
        self._owns_nothing = empty - added

    async def app_start(self, app: str) -> AppStart:
        """What an app needs when it starts: its record, its pin and the health of its last sync.

        Served once from :meth:`preload` when it ran, else read now.
        """
        start = self._preloaded.pop(app, None)
        if start is not None:
            return start
        last = await self.history(app, 1)
        return AppStart(await self.app(app), await self.pin(app), last[0].health if last else None)

    async def pin(self, app: str) -> Pin:
        def read(c: sqlite3.Connection) -> Pin:
            row = c.execute("SELECT suspended, revision FROM pins WHERE app = ?", (app,)).fetchone()
            return Pin(bool(row[0]), row[1]) if row else Pin()

        return await self._run(read)

    async def approval(self, app: str) -> ApprovalRecord | None:
        def read(c: sqlite3.Connection) -> ApprovalRecord | None:
            row = c.execute(
                "SELECT app, revision, requested_at, status, decided_by, decided_at, reason FROM approvals WHERE app = ?",
                (app,),
            ).fetchone()
            if not row:
                return None
            decided = datetime.fromisoformat(row[5]) if row[5] else None
            return ApprovalRecord(row[0], row[1], datetime.fromisoformat(row[2]), row[3], row[4], decided, row[6])

        return await self._run(read)

    # -- writes (each one transaction) ---------------------------------------------------

    async def set_approval(self, record: ApprovalRecord, *, expect: tuple[str, str] | None = None) -> bool:
        """Write an app's approval record; with ``expect=(revision, status)``, only if the stored
        one still has them (compare-and-set: two clicks at once decide once). True if written."""

        def write(c: sqlite3.Connection) -> bool:
            with c:
                if expect is not None:
                    row = c.execute("SELECT revision, status FROM approvals WHERE app = ?", (record.app,)).fetchone()
                    if row is None or tuple(row) != expect:
                        return False
                c.execute(
                    "INSERT OR REPLACE INTO approvals (app, revision, requested_at, status, decided_by, decided_at, reason) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.app,
                        record.revision,
                        record.requested_at.isoformat(),
                        record.status,
                        record.decided_by,
                        record.decided_at.isoformat() if record.decided_at else "",
                        record.reason,
                    ),
                )
                return True

        return await self._run(write)

    async def add_to_inventory(self, app: str, refs: Iterable[ObjectRef]) -> None:
        """Record objects *before* the apply that may create them, so prune can always find them."""
        rows = [(app, r.group, r.version, r.kind, r.namespace, r.name) for r in refs]
        self._owns_nothing.discard(app)  # before the write is queued: a read from now on waits for it
        if self._added_while_preloading is not None:
            self._added_while_preloading.add(app)

        def write(c: sqlite3.Connection) -> None:
            with c:
                c.executemany("INSERT OR REPLACE INTO inventory VALUES (?, ?, ?, ?, ?, ?)", rows)

        await self._run(write)

    async def remove_from_inventory(self, app: str, refs: Iterable[ObjectRef]) -> None:
        """Forget objects once they are confirmed gone from the cluster."""
        rows = [(app, r.group, r.kind, r.namespace, r.name) for r in refs]

        def write(c: sqlite3.Connection) -> None:
            with c:
                c.executemany(
                    "DELETE FROM inventory WHERE app = ? AND grp = ? AND kind = ? AND namespace = ? AND name = ?", rows
                )

        await self._run(write)

    async def record_sync(
        self,
        app: str,
        *,
        revision: str,
        result: str,
        message: str,
        counts: dict[str, int],
        applied_digest: str | None = None,
        health: str = "",
        trigger: str = "",
    ) -> None:
        """Append a history entry and, on success, set the applied revision, in one transaction."""
        now = datetime.now(UTC).isoformat()

        def write(c: sqlite3.Connection) -> None:
            with c:
                c.execute(
                    "INSERT INTO history (app, time, revision, result, message, counts, health, triggered_by) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (app, now, revision, result, message, json.dumps(counts), health, trigger),
                )
                c.execute(
                    "DELETE FROM history WHERE app = ? AND id NOT IN "
                    "(SELECT id FROM history WHERE app = ? ORDER BY id DESC LIMIT ?)",
                    (app, app, HISTORY_KEPT),
                )
                if applied_digest is not None:
                    c.execute(
                        "INSERT INTO apps (name, revision, applied_digest, updated) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT(name) DO UPDATE SET revision = excluded.revision, "
                        "applied_digest = excluded.applied_digest, updated = excluded.updated",
                        (app, revision, applied_digest, now),
                    )

        await self._run(write)

    async def move_revision(self, app: str, revision: str, applied_digest: str) -> None:
        """Set the applied revision of an app whose manifests a new revision left as they were (no history entry)."""
        now = datetime.now(UTC).isoformat()

        def write(c: sqlite3.Connection) -> None:
            with c:
                c.execute(
                    "UPDATE apps SET revision = ?, applied_digest = ?, updated = ? WHERE name = ?",
                    (revision, applied_digest, now, app),
                )

        await self._run(write)

    async def set_pin(self, app: str, pin: Pin) -> None:
        def write(c: sqlite3.Connection) -> None:
            with c:
                c.execute(
                    "INSERT INTO pins (app, suspended, revision) VALUES (?, ?, ?) "
                    "ON CONFLICT(app) DO UPDATE SET suspended = excluded.suspended, revision = excluded.revision",
                    (app, int(pin.suspended), pin.revision),
                )

        await self._run(write)

    async def forget_app(self, app: str) -> None:
        """Drop everything about an app (after it was removed from the config)."""

        def write(c: sqlite3.Connection) -> None:
            with c:
                for table, column in (
                    ("apps", "name"),
                    ("inventory", "app"),
                    ("history", "app"),
                    ("pins", "app"),
                    ("approvals", "app"),
                ):
                    c.execute(f"DELETE FROM {table} WHERE {column} = ?", (app,))

        await self._run(write)

    async def integrity_check(self) -> str:
        return await self._run(lambda c: str(c.execute("PRAGMA integrity_check").fetchone()[0]))


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    _migrate(conn)
    # isolation_level=None + `with conn` would not open transactions: use deferred mode.
    conn.isolation_level = "DEFERRED"
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"state schema {version} is newer than this gitopsd ({SCHEMA_VERSION})")
    for number in range(version, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _MIGRATIONS[number].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number + 1}")
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise

