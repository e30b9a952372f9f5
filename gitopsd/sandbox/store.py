"""Object storage: one global resourceVersion, a bounded event history, watch fan-out.

Stored objects are treated as immutable: every write stores a new dict, so an
event can keep a reference to its object and serialise it once for every
watcher (the line is cached per apiVersion).
"""

from __future__ import annotations

import asyncio
import json
import pickle
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from .status import expired

Listener = Callable[[str, str, dict[str, Any], dict[str, Any] | None], None]


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON bytes.

    orjson writes them several times faster than :mod:`json` (every write and every response
    body goes through here); what it refuses (integers over 64 bits) the standard library writes.
    """
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def clone(obj: Any) -> Any:
    """A deep copy of plain data (an object to change before it is stored).

    A pickle round trip: the same result as ``copy.deepcopy`` for JSON-like values, about
    three times faster, which matters on every write.
    """
    return pickle.loads(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))


@dataclass(eq=False, slots=True)
class Event:
    """One change: ADDED, MODIFIED or DELETED of one object at ``rv``."""

    type: str
    key: str
    namespace: str
    rv: int
    obj: dict[str, Any]
    _av: str | None = None
    _line: bytes = b""
    _more: dict[str, bytes] | None = None  # lines for other apiVersions (rare)

    def line(self, api_version: str | None = None) -> bytes:
        """The watch line ``{"type":..,"object":..}\\n``, cached per apiVersion."""
        av = api_version or self.obj.get("apiVersion", "")
        if av == self._av:
            return self._line
        cached = self._more.get(av) if self._more is not None else None
        if cached is None:
            obj = self.obj if self.obj.get("apiVersion") == av else dict(self.obj, apiVersion=av)
            cached = b'{"type":"' + self.type.encode() + b'","object":' + dumps(obj) + b"}\n"
            if self._av is None:
                self._av, self._line = av, cached
            else:
                if self._more is None:
                    self._more = {}
                self._more[av] = cached
        return cached

    def object_json(self, api_version: str | None = None) -> bytes:
        """The object's JSON: a slice of the watch line, so both are serialised once."""
        return self.line(api_version)[len(self.type) + 20 : -2]


Sink = Callable[[list[Event]], bool]


class Watcher:
    """A subscription to one storage key, optionally one namespace, with a filter.

    Events wait in ``pending`` until the stream takes them. While the stream sleeps in
    :meth:`wait` it may lend a ``sink``: a function that writes events straight to its
    connection. Then an event does not wake the stream's task at all: one loop callback per
    batch of writes (:meth:`Store.flush`, after the writing request's response has gone out)
    hands each watcher's pending events to its sink. A sink that refuses (the connection's
    write buffer is full, or it is closing) is dropped and the task wakes to write with flow
    control. Without a sink, an event wakes the task. One timer, armed for the next bookmark or
    the end of the watch, wakes the task when nothing happens.
    """

    __slots__ = ("_schedule", "_timer", "_timer_at", "_waiter", "key", "namespace", "pending", "predicate", "sink")

    def __init__(self, key: str, namespace: str | None,
                 predicate: Callable[[dict[str, Any]], bool] | None,
                 schedule: Callable[[Watcher], None] | None = None) -> None:
        self.key, self.namespace, self.predicate = key, namespace, predicate
        self.pending: list[Event] = []
        self.sink: Sink | None = None
        self._schedule = schedule
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def offer(self, event: Event) -> None:
        """Queue ``event`` if it passes the filter (the store matched key and namespace)."""
        if self.predicate is not None and not self.predicate(event.obj):
            return
        self.pending.append(event)
        if self.sink is not None and self._schedule is not None:
            if len(self.pending) == 1:
                self._schedule(self)
        else:
            self._wake()

    def take(self) -> list[Event]:
        """The pending events, oldest first; none remain pending."""
        out, self.pending = self.pending, []
        return out

    def flush(self) -> None:
        """Give the pending events to the sink; if there is none, or it refuses or fails, wake the task."""
        if not self.pending:
            return
        sink = self.sink
        try:
            if sink is not None and sink(self.pending):
                self.pending = []
                return
        except Exception:  # the task writes them instead, and meets the error in its own context
            pass
        self.sink = None
        self._wake()

    async def wait(self, until: float) -> None:
        """Return once an event is pending, or at the loop time ``until`` (perhaps a little earlier)."""
        if self.pending:
            return
        loop = asyncio.get_running_loop()
        if self._timer is None or self._timer_at > until:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = loop.call_at(until, self._ring), until
        self._waiter = loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        """Cancel the timer and drop the sink (the stream ended)."""
        self.sink = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _ring(self) -> None:
        self._timer = None
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Store:
    """All objects, indexed ``key -> namespace -> name``, plus history and watchers."""

    def __init__(self, history: int = 10_000) -> None:
        self.rv = 1
        self._objects: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        self._history: deque[Event] = deque()
        self._history_size = history
        self.window_start = 1
        """Oldest resourceVersion a watch may start from (older ones are Expired)."""
        self._watchers: dict[str, dict[str | None, set[Watcher]]] = {}
        """key -> namespace (None: all namespaces) -> watchers."""
        self._listeners: list[Listener] = []
        self._owners: dict[str, set[tuple[str, str, str]]] = {}
        self._latest: dict[tuple[str, str, str], Event] = {}
        """The event that stored each current object: its JSON is cached there (see :meth:`json_of`)."""
        self._dirty: list[Watcher] = []
        self._flush_handle: asyncio.Handle | None = None

    # -- reads --------------------------------------------------------------
    def get(self, key: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One object or None."""
        return self._objects.get(key, {}).get(namespace, {}).get(name)

    def iter(self, key: str, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        """Objects of a key, in (namespace, name) order; one namespace if given."""
        by_ns = self._objects.get(key, {})
        spaces = [namespace] if namespace is not None else sorted(by_ns)
        for ns in spaces:
            objs = by_ns.get(ns, {})
            for name in sorted(objs):
                yield objs[name]

    def json_of(self, key: str, obj: dict[str, Any]) -> bytes:
        """``obj`` as compact JSON; a stored object is serialised once per version (and
        shares those bytes with its watch events)."""
        meta = obj.get("metadata") or {}
        event = self._latest.get((key, meta.get("namespace", ""), meta.get("name", "")))
        if event is not None and event.obj is obj:
            return event.object_json()
        return dumps(obj)

    def count(self, key: str | None = None) -> int:
        """Number of stored objects (of one key, or all)."""
        keys = [key] if key else list(self._objects)
        return sum(len(o) for k in keys for o in self._objects.get(k, {}).values())

    def keys(self) -> list[str]:
        """Storage keys that hold objects."""
        return [k for k, v in self._objects.items() if any(v.values())]

    def namespaced_in(self, namespace: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every object in one namespace, with its key."""
        for key, by_ns in list(self._objects.items()):
            for obj in list(by_ns.get(namespace, {}).values()):
                yield key, obj

    def dependents(self, uid: str) -> list[tuple[str, str, str]]:
        """``(key, namespace, name)`` of objects whose ownerReferences name ``uid``."""
        return sorted(self._owners.get(uid, ()))

    # -- writes -------------------------------------------------------------
    def next_rv(self) -> int:
        """Allocate the next resourceVersion."""
        self.rv += 1
        return self.rv

    def put(self, key: str, obj: dict[str, Any], event_type: str) -> dict[str, Any]:
        """Store ``obj`` (ADDED or MODIFIED) under a new resourceVersion; returns it."""
        meta = obj["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        rv = self.next_rv()
        meta["resourceVersion"] = str(rv)
        bucket = self._objects.setdefault(key, {}).setdefault(ns, {})
        old = bucket.get(name)
        bucket[name] = obj
        self._index_owners(key, old, obj)
        event = Event(event_type, key, ns, rv, obj)
        self._latest[(key, ns, name)] = event
        self._emit(event, old)
        return obj

    def remove(self, key: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Delete an object; the DELETED event carries a new resourceVersion."""
        meta = obj["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        bucket = self._objects.get(key, {}).get(ns, {})
        old = bucket.pop(name, None)
        if not bucket:
            self._objects.get(key, {}).pop(ns, None)
        self._latest.pop((key, ns, name), None)
        rv = self.next_rv()
        gone = dict(obj, metadata=dict(meta, resourceVersion=str(rv)))
        self._index_owners(key, old, None)
        self._emit(Event("DELETED", key, ns, rv, gone), old)
        return gone

    def _index_owners(self, key: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        for obj, add in ((old, False), (new, True)):
            if obj is None:
                continue
            refs = obj["metadata"].get("ownerReferences") or ()
            ident = (key, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            for ref in refs:
                uid = ref.get("uid", "") if isinstance(ref, dict) else ""
                if add:
                    self._owners.setdefault(uid, set()).add(ident)
                else:
                    owned = self._owners.get(uid)
                    if owned:
                        owned.discard(ident)
                        if not owned:
                            del self._owners[uid]

    def _emit(self, event: Event, old: dict[str, Any] | None) -> None:
        self._history.append(event)
        if len(self._history) > self._history_size:
            self.window_start = self._history.popleft().rv
        by_ns = self._watchers.get(event.key)
        if by_ns:
            for ns in (None, event.namespace):
                for watcher in by_ns.get(ns, ()):
                    watcher.offer(event)
        for listener in self._listeners:
            listener(event.key, event.type, event.obj, old)

    # -- watch and listeners -----------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(key, type, obj, old)`` after every change (controllers)."""
        self._listeners.append(listener)

    def watch(
        self,
        key: str,
        namespace: str | None,
        predicate: Callable[[dict[str, Any]], bool] | None,
        since: int | None,
    ) -> tuple[Watcher, list[Event]]:
        """Subscribe; returns the watcher and the backlog to send first.

        ``since`` None means "from now, starting with ADDED for every current
        object"; otherwise the events after ``since`` from the history. A
        ``since`` older than the history window raises a 410 Expired error.
        """
        if since is not None and since < self.window_start:
            raise expired(f"too old resource version: {since} ({self.window_start})")
        watcher = Watcher(key, namespace, predicate, self._flush_later)
        backlog: list[Event] = []
        if since is None:
            for obj in self.iter(key, namespace):
                if predicate is None or predicate(obj):
                    meta = obj["metadata"]
                    backlog.append(Event("ADDED", key, meta.get("namespace", ""), int(meta["resourceVersion"]), obj))
        else:
            for event in self._history:
                if event.rv > since and event.key == key:
                    if namespace is not None and event.namespace != namespace:
                        continue
                    if predicate is None or predicate(event.obj):
                        backlog.append(event)
        self._watchers.setdefault(key, {}).setdefault(namespace, set()).add(watcher)
        return watcher, backlog

    def _flush_later(self, watcher: Watcher) -> None:
        self._dirty.append(watcher)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write the events queued since the last flush to the watchers that lent a sink.

        Scheduled with ``call_soon`` by the first such event: it runs after the task that
        wrote (a request's handler) has sent its response, and writes each stream's batch at once.
        """
        self._flush_handle = None
        dirty, self._dirty = self._dirty, []
        for watcher in dirty:
            watcher.flush()

    def unwatch(self, watcher: Watcher) -> None:
        """End a subscription."""
        watcher.close()
        by_ns = self._watchers.get(watcher.key, {})
        watchers = by_ns.get(watcher.namespace)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del by_ns[watcher.namespace]

    def watcher_count(self) -> int:
        """Open watches."""
        return sum(len(w) for by_ns in self._watchers.values() for w in by_ns.values())

    def drop_key(self, key: str) -> list[dict[str, Any]]:
        """Delete every object of a key (a CRD went away); returns the deleted objects."""
        gone = []
        for obj in list(self.iter(key)):
            gone.append(self.remove(key, obj))
        self._objects.pop(key, None)
        return gone

    # -- persistence ---------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        """Everything needed to restore the store (``--state``)."""
        return {"resourceVersion": self.rv, "objects": {k: list(self.iter(k)) for k in self._objects}}

    def load(self, data: dict[str, Any]) -> None:
        """Restore from :meth:`dump` output (no events are emitted)."""
        for key, objs in (data.get("objects") or {}).items():
            for obj in objs:
                meta = obj["metadata"]
                self._objects.setdefault(key, {}).setdefault(meta.get("namespace", ""), {})[meta["name"]] = obj
                self._index_owners(key, None, obj)
        self.rv = max(self.rv, int(data.get("resourceVersion", 1)))
        self.window_start = self.rv
