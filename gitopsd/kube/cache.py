"""The per-cluster live-state cache: LIST + WATCH per kind in use, gitopsd-labelled objects only.

Each kind an app applies gets one informer: a paginated LIST filtered by
``app.kubernetes.io/managed-by=gitopsd``, then a WATCH from the list's resourceVersion
with bookmarks, resumed from the last resourceVersion when it ends, re-listed on 410
Expired, and restarted when it stays silent past its own inactivity deadline (watches can
hang silently). Readers (in_sync, health, drift, the apply decision) never send requests.

Objects are kept as compact JSON (UTF-8 bytes), not as dicts: a live Deployment as nested dicts,
lists and strings takes about three times the memory of its JSON (bench 1000x5: the live
cache was the largest holder of memory). :meth:`LiveCache.get` parses a fresh copy (a
caller may keep or change it); :meth:`LiveCache.version` answers without parsing, which is
all an idle app's check needs (:meth:`gitopsd.kube.desired.DesiredObjects.matches`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import structlog

from gitopsd.core import jsonio
from gitopsd.core.models import Manifest
from gitopsd.kube import admission
from gitopsd.kube.background import Background
from gitopsd.kube.client import ApiError, KubeClient, backoff
from gitopsd.kube.discovery import Resource
from gitopsd.kube.ignore import keeps_managed_fields

log = structlog.get_logger("gitopsd.kube.cache")

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "gitopsd"
APP_LABEL = "gitopsd.dev/app"
SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"

WATCH_TIMEOUT = (240, 290)
"""Server-side watch timeout range in seconds (kept under the 300 s a request may last)."""
IDLE_DEADLINE = 320.0
"""A watch that sends nothing for this long is assumed dead and restarted."""
_PAGE = 500

Key = tuple[str, str, str, str]
"""(group, kind, namespace, name): an object's identity whatever version serves it."""


_Stored = tuple[str, bytes]
"""(resourceVersion, the object as compact UTF-8 JSON)."""


def key_of(obj: Manifest) -> Key:
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    meta = obj.get("metadata") or {}
    return (
        group,
        str(obj.get("kind", "")),
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
    )


def _rv(obj: Manifest | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")


def _not_older(new: str, old: str) -> bool:
    """resourceVersions are opaque, but integers in practice: refuse only a provably older one."""
    try:
        return int(new) >= int(old)
    except ValueError:
        return True


class _Expired(Exception):
    pass


def _parse_event(line: bytes) -> Any:
    """One watch event, parsed (the echoes of applies are recognised without this: :meth:`LiveCache._echo`)."""
    return jsonio.loads(line)


_ECHO_TYPES = (b'{"type":"ADDED",', b'{"type":"MODIFIED",')
_RV_FIELD = b'"resourceVersion":'
_MAX_ECHOES = 8192
_MAX_FRESH = 256


def _sole_version(line: bytes) -> str | None:
    """The resourceVersion of an ADDED or MODIFIED watch line that names exactly one, else None."""
    if not line.startswith(_ECHO_TYPES):
        return None
    at = line.find(_RV_FIELD)
    if at < 0 or line.find(_RV_FIELD, at + len(_RV_FIELD)) >= 0:
        return None  # none, or another resourceVersion (an object reference in the spec, ...)
    start = at + len(_RV_FIELD)
    end = line.find(b'"', start + 1)
    if line[start : start + 1] != b'"' or end < 0:
        return None
    return line[start + 1 : end].decode("ascii", "replace")


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Informer:
    """LIST + WATCH of one resource, feeding the cache."""

    def __init__(self, cache: LiveCache, resource: Resource):
        self.cache = cache
        self.resource = resource
        self.synced = asyncio.Event()
        self.scope: anyio.CancelScope | None = None
        self.error = ""

    async def run(self) -> None:
        rv = ""
        attempt = 0
        while True:
            try:
                if not rv:
                    rv = await self._list()
                    self.synced.set()
                    self.error = ""
                started = time.monotonic()
                rv = await self._watch(rv)
                if time.monotonic() - started < 1.0:
                    # Ended at once (dropped): do not spin.
                    await asyncio.sleep(backoff(attempt, base=0.05, cap=5.0))
                    attempt += 1
                else:
                    attempt = 0
            except asyncio.CancelledError:
                raise
            except _Expired:
                rv = ""
            except Exception as exc:
                self.error = str(exc)
                if isinstance(exc, ApiError) and exc.status == 404:
                    # The kind is gone (CRD deleted): nothing of it exists any more.
                    self.cache._replace_kind(self.resource, [])
                    self.synced.set()
                log.debug(
                    "watch restarting",
                    cluster=self.cache.client.name,
                    kind=self.resource.kind,
                    error=str(exc),
                )
                await asyncio.sleep(backoff(attempt, base=0.2, cap=10.0))
                attempt += 1
                if isinstance(exc, ApiError) and not exc.transient:
                    rv = ""  # e.g. 403 or 404: start over with a LIST
                # Otherwise (5xx, 429, dropped connection, unreachable) resume from rv;
                # a resourceVersion too old by then comes back as 410 and re-lists.

    async def _list(self) -> str:
        items: list[Manifest] = []
        cont = ""
        api_version = self.resource.api_version
        while True:
            query = [("labelSelector", SELECTOR), ("limit", str(_PAGE))]
            if cont:
                query.append(("continue", cont))
            answer = await self.cache.client.request(
                "GET", self.resource.collection_path(), query=query
            )
            for item in answer.get("items") or []:
                # Items of a list carry no apiVersion/kind: put them back.
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", self.resource.kind)
                items.append(item)
            meta = answer.get("metadata") or {}
            cont = str(meta.get("continue") or "")
            if not cont:
                self.cache._replace_kind(self.resource, items)
                return str(meta.get("resourceVersion") or "")

    async def _watch(self, rv: str) -> str:
        query = [
            ("labelSelector", SELECTOR),
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", rv),
            ("timeoutSeconds", str(random.randint(*WATCH_TIMEOUT))),
        ]
        response = await self.cache.client.stream(
            self.resource.collection_path(), query, idle_timeout=IDLE_DEADLINE
        )
        async with response:
            while True:
                line = await response.readline()
                if not line:
                    return rv  # the server ended the watch: resume from rv
                if not line.strip():
                    continue
                echo = self.cache._echo(self.resource, line)
                if echo is not None:
                    rv = echo  # an applied object's own ADDED/MODIFIED event: already stored
                    continue
                event = _parse_event(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Expired()
                    raise ApiError(
                        int(obj.get("code") or 500),
                        str(obj.get("reason") or ""),
                        str(obj.get("message") or ""),
                    )
                new_rv = _rv(obj)
                if kind == "BOOKMARK":
                    rv = new_rv or rv
                    continue
                obj.setdefault("apiVersion", self.resource.api_version)
                obj.setdefault("kind", self.resource.kind)
                if kind in ("ADDED", "MODIFIED"):
                    self.cache._put(obj)
                elif kind == "DELETED":
                    self.cache._delete(key_of(obj), new_rv)
                rv = new_rv or rv


class LiveCache:
    """Live objects of one cluster, by :data:`Key`, fed by informers.

    Args:
        client: The cluster's client.
        on_change: Called with (key, object or None when deleted) after every change.
    """

    def __init__(
        self,
        client: KubeClient,
        on_change: Callable[[Key, Manifest | None], None],
        background: Background,
    ):
        self.client = client
        self._on_change = on_change
        self._background = background
        self._objects: dict[Key, _Stored] = {}
        # futures of the waits in wait_change: woken (result set) at a change of their keys / of any key
        self._key_waiters: dict[Key, set[asyncio.Future[None]]] = {}
        self._any_waiters: set[asyncio.Future[None]] = set()
        self._informers: dict[tuple[str, str], Informer] = {}
        # resourceVersion -> key of an object an apply answer stored, until its watch event comes
        self._echoes: dict[str, Key] = {}
        self.echoes_skipped = 0
        # key -> (resourceVersion, object) just stored for a health wait on that key: see get
        self._fresh: dict[Key, tuple[str, Manifest]] = {}
        self.fresh_reads = 0

    # -- reading (no requests) ------------------------------------------------------------

    def get(self, key: Key) -> Manifest | None:
        """The live object (a copy of its own: parsed at each call), or None."""
        stored = self._objects.get(key)
        if stored is None:
            return None
        fresh = self._fresh.pop(key, None) if self._fresh else None
        if fresh is not None and fresh[0] == stored[0]:
            self.fresh_reads += 1
            return fresh[1]
        return jsonio.loads(stored[1])  # type: ignore[no-any-return]

    def version(self, key: Key) -> str | None:
        """The cached object's resourceVersion ("" if it has none), or None when it is absent.

        Two reads with the same non-empty version saw the same object: a verdict about it
        (in sync or not) can be remembered until the version changes.
        """
        stored = self._objects.get(key)
        return None if stored is None else stored[0]

    def synced(self, group: str, kind: str) -> bool:
        informer = self._informers.get((group, kind))
        return informer is not None and informer.synced.is_set()

    # -- informers ------------------------------------------------------------------------

    def ensure(self, resource: Resource) -> Informer:
        """Start watching ``resource`` unless already watched."""
        ident = (resource.group, resource.kind)
        informer = self._informers.get(ident)
        if informer is None:
            informer = Informer(self, resource)
            informer.scope = self._background.start(
                informer.run, name=f"watch {self.client.name} {resource.kind}"
            )
            self._informers[ident] = informer
        return informer

    async def wait_synced(self, resources: list[Resource], within: float) -> bool:
        """Wait until every resource's first LIST is in; False on timeout."""
        informers = [self.ensure(r) for r in resources]
        pending = [i.synced.wait() for i in informers if not i.synced.is_set()]
        if not pending:
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*pending), within)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Stop every watch (their tasks end with the cluster's background group)."""
        for informer in self._informers.values():
            if informer.scope is not None:
                informer.scope.cancel()
        self._informers.clear()

    # -- changes --------------------------------------------------------------------------

    async def wait_change(self, at_most: float, keys: Iterable[Key] | None = None) -> None:
        """Return at the next change of any object (or of one of ``keys``), or after ``at_most`` seconds.

        With ``keys``, a change of another object does not wake the caller: a thousand apps
        waiting for their own objects' health are not all woken by every watch event.
        """
        admission.waiting()  # only waiting on the cluster now: the app's apply slot goes to the next app
        # One future and one timer: asyncio.wait_for(event.wait()) ran a task of its own per wait
        # (Python 3.11), and every change made a new Event for whoever waits without keys.
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        if keys is None:
            self._any_waiters.add(waiter)
        else:
            watched = list(keys)
            for key in watched:
                waiters = self._key_waiters.get(key)
                if waiters is None:
                    self._key_waiters[key] = {waiter}
                else:
                    waiters.add(waiter)
        timer = loop.call_later(at_most, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            if keys is None:
                self._any_waiters.discard(waiter)
            else:
                for key in watched:
                    waiters = self._key_waiters.get(key)
                    if waiters is not None:
                        waiters.discard(waiter)
                        if not waiters:
                            del self._key_waiters[key]

    def _keep_fresh(self, key: Key, rv: str, obj: Manifest) -> None:
        """Hand ``obj`` (a watch event just stored: nobody else keeps it) to the next :meth:`get` of
        ``key`` when a health wait is waiting for that key: it reads the object as soon as it
        wakes, and would otherwise parse the JSON just encoded. Objects nobody waits for are
        not kept (memory); nor are more than :data:`_MAX_FRESH`.
        """
        if rv and key in self._key_waiters:
            if len(self._fresh) >= _MAX_FRESH:
                del self._fresh[next(iter(self._fresh))]
            self._fresh[key] = (rv, obj)
        elif self._fresh:
            self._fresh.pop(key, None)

    def _signal(self, key: Key, obj: Manifest | None) -> None:
        if obj is None and self._fresh:
            self._fresh.pop(key, None)  # deleted
        for waiter in self._any_waiters:
            _wake(waiter)
        for waiter in self._key_waiters.get(key, ()):
            _wake(waiter)
        try:
            self._on_change(key, obj)
        except Exception:  # a listener bug must not kill the watch
            log.exception("cache listener failed", key=key)

    def record(self, obj: Manifest) -> None:
        """Store an object the API server just returned (an apply), unless the cache has newer."""
        key = self._put(obj, handed_over=False)  # the caller keeps its answer: not handed to get()
        rv = _rv(obj)
        if key is not None and rv:
            # Its watch event (same resourceVersion) is recognised without being parsed: _echo.
            if len(self._echoes) >= _MAX_ECHOES:
                del self._echoes[next(iter(self._echoes))]  # the oldest: its event never came
            self._echoes[rv] = key

    def _echo(self, resource: Resource, line: bytes) -> str | None:
        """The resourceVersion of ``line`` when it is the watch event of an object :meth:`record`
        stored and the cache still holds at that version (``_put`` would ignore it), else None.

        Half the events of a cold start are such echoes: each would be parsed only to be
        dropped. The line must be an ADDED or MODIFIED event naming exactly one
        resourceVersion (the object's own: a resourceVersion belongs to one write of one
        object), recorded for an object of this informer's kind whose name and namespace the
        line holds too; anything else is parsed as before.
        """
        if not self._echoes:
            return None
        rv = _sole_version(line)
        key = self._echoes.get(rv) if rv is not None else None
        if key is None or rv is None or key[0] != resource.group or key[1] != resource.kind:
            return None
        stored = self._objects.get(key)
        if stored is None or stored[0] != rv:
            return None
        if b'"name":' + jsonio.dumps(key[3]) not in line or (
            key[2] and b'"namespace":' + jsonio.dumps(key[2]) not in line
        ):
            return None
        del self._echoes[rv]
        self.echoes_skipped += 1
        return rv

    def _put(self, obj: Manifest, handed_over: bool = True) -> Key | None:
        """Store ``obj`` unless the cache holds it or a newer version; its key when stored.

        ``handed_over``: nobody else keeps ``obj`` (a parsed watch event), so it may serve the
        next :meth:`get` (see :meth:`_keep_fresh`).
        """
        key = key_of(obj)
        old = self._objects.get(key)
        rv = _rv(obj)
        if old is not None and (not _not_older(rv, old[0]) or (rv and rv == old[0])):
            # Older, or the very version the cache holds: every applied object comes back as a
            # watch event with the resourceVersion its apply answer already stored.
            return None
        obj = _slim(obj, in_place=handed_over)
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
            # No longer ours (label removed out of band): the selector would drop it too.
            if old is not None:
                del self._objects[key]
                self._signal(key, None)
            return None
        self._objects[key] = _stored(rv, obj)
        if old is None or old[0] != rv:
            self._signal(key, obj)
        if handed_over:
            self._keep_fresh(key, rv, obj)
        elif self._fresh:
            self._fresh.pop(key, None)
        return key

    def _delete(self, key: Key, rv: str = "") -> None:
        old = self._objects.get(key)
        if old is None or (rv and not _not_older(rv, old[0])):
            return
        del self._objects[key]
        self._signal(key, None)

    def forget(self, key: Key) -> None:
        """Drop an object confirmed deleted (a DELETE answered 404)."""
        self._delete(key)

    def _replace_kind(self, resource: Resource, items: list[Manifest]) -> None:
        fresh = {key_of(o): o for o in items}
        stale = [
            k
            for k in self._objects
            if k[0] == resource.group and k[1] == resource.kind and k not in fresh
        ]
        for key in stale:
            del self._objects[key]
            self._signal(key, None)
        for obj in items:
            self._put_listed(obj)

    def _put_listed(self, obj: Manifest) -> None:
        key = key_of(obj)
        old = self._objects.get(key)
        rv = _rv(obj)
        if old is not None and rv and old[0] == rv:
            return  # the same version (a re-list): nothing to store again
        obj = _slim(obj)
        self._objects[key] = _stored(rv, obj)
        if old is None or old[0] != rv:
            self._signal(key, obj)


def _stored(rv: str, obj: Manifest) -> _Stored:
    # UTF-8 bytes (orjson: ~10x faster than json.dumps), one byte per byte whatever the text,
    # copied once to an exact-size object: kept as orjson returns them, its shrunk output
    # buffers left the heap fragmented (5,000 Deployments: 20 MiB of RSS for 3.5 MiB of JSON,
    # 4 MiB with the copy; bench 1000x5: peak RSS 160 MiB, 141 MiB before orjson).
    return (rv, bytes(memoryview(jsonio.dumps(obj))))


def _slim(obj: Manifest, in_place: bool = False) -> Manifest:
    """``obj`` without ``metadata.managedFields`` (``in_place``: ``obj`` itself, nobody else holds it).

    Nothing reads managed fields from the cache, and they are often as large as the rest of
    the object (bench 1000x5: peak RSS 273 -> 246 MiB).
    """
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta and not keeps_managed_fields(obj):
        # Kept only where ignore_differences names field managers (gitopsd.kube.ignore).
        if in_place:
            del meta["managedFields"]
        else:
            obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return obj


def object_labels(obj: Manifest) -> dict[str, Any]:
    return dict((obj.get("metadata") or {}).get("labels") or {})
