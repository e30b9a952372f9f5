"""Work shared between applications: single-flight calls and the render cache."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

import anyio

from gitopsd.core.models import Manifest

T = TypeVar("T")


class _Flight(Generic[T]):
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class SingleFlight:
    """Run one call per key at a time; concurrent callers with the same key share its outcome.

    Apps that use the same source and revision fetch once. The result is not cached after
    the call finishes: caching is the source's business (its mirror, its artifact cache).
    """

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight[Any]] = {}

    async def do(self, key: Hashable, func: Callable[[], Awaitable[T]]) -> T:
        flight = self._flights.get(key)
        if flight is not None:
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.result  # type: ignore[return-value]
        flight = self._flights[key] = _Flight()
        try:
            flight.result = await func()
            return flight.result
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            del self._flights[key]
            flight.done.set()


class RenderCache:
    """Rendered manifests by (artifact digest, renderer cache key, app-specific inputs), LRU-bounded.

    Entries are the renderer's output *before* post-render hooks; callers get a list they
    must not mutate (the engine deep-copies before transforming).
    """

    def __init__(self, max_entries: int = 512):
        self._entries: OrderedDict[Hashable, list[Manifest]] = OrderedDict()
        self._max = max_entries
        self.misses = 0  # renders not found in the cache (tests check that sharing works)

    def get(self, key: Hashable) -> list[Manifest] | None:
        manifests = self._entries.get(key)
        if manifests is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        return manifests

    def put(self, key: Hashable, manifests: list[Manifest]) -> None:
        self._entries[key] = manifests
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
