"""Drift: watch events compared with what each tracked app wants, callbacks within milliseconds.

The cache calls :meth:`DriftTracker.on_change` for every change it sees. Each app that
tracks the changed object has its desired copy compared with the new live object (no
request); when it no longer matches, or the object is gone, the app's callback is
scheduled on the event loop with every drifted ref gathered in that loop iteration.
While an app syncs, its drift is held back (its own applies are not drift) and the objects
that changed meanwhile are re-checked when the sync ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from gitopsd.core.models import Manifest, ObjectRef
from gitopsd.engine.protocols import DriftCallback
from gitopsd.kube.cache import Key
from gitopsd.kube.normalize import matches

log = structlog.get_logger("gitopsd.kube.drift")


@dataclass(slots=True)
class _Tracked:
    desired: dict[Key, Manifest]
    on_drift: DriftCallback | None
    paused: int = 0
    # None until needed: two empty sets per tracked app were ~0.4 KiB each app kept
    changed_while_paused: set[Key] | None = None
    pending: set[Key] | None = None
    scheduled: bool = False


class DriftTracker:
    """Per-cluster registry of tracked apps and their desired objects."""

    def __init__(self) -> None:
        self._apps: dict[str, _Tracked] = {}
        # key -> the app tracking it, or the apps (rare: two apps render one object); a set
        # per key would cost ~200 bytes per tracked object
        self._by_key: dict[Key, str | set[str]] = {}
        self.matcher: Callable[[Key, Manifest, Manifest | None], bool] = lambda key, desired, live: matches(desired, live)
        """How a tracked object is compared (the cluster shares its verdicts with ``in_sync``)."""

    def track(self, app: str, desired: dict[Key, Manifest], on_drift: DriftCallback | None) -> None:
        """Track ``desired`` for ``app`` (replacing what it tracked); keeps a pause in progress."""
        old = self._apps.get(app)
        self.untrack(app)
        entry = _Tracked(desired, on_drift)
        if old is not None:
            entry.paused = old.paused
            entry.changed_while_paused = old.changed_while_paused
            if on_drift is None:
                entry.on_drift = old.on_drift
        self._apps[app] = entry
        for key in desired:
            held = self._by_key.get(key)
            if held is None or held == app:
                self._by_key[key] = app
            elif isinstance(held, str):
                self._by_key[key] = {held, app}
            else:
                held.add(app)

    def untrack(self, app: str) -> None:
        entry = self._apps.pop(app, None)
        if entry is None:
            return
        for key in entry.desired:
            apps = self._by_key.get(key)
            if apps == app:
                del self._by_key[key]
            elif isinstance(apps, set):
                apps.discard(app)
                if len(apps) == 1:
                    self._by_key[key] = apps.pop()

    def tracked(self, app: str) -> bool:
        return app in self._apps

    def pause(self, app: str) -> None:
        entry = self._apps.get(app)
        if entry is not None:
            entry.paused += 1

    def resume(self, app: str, live: Callable[[Key], Manifest | None]) -> None:
        """End a pause; objects that changed during it are checked against ``live(key)`` now."""
        entry = self._apps.get(app)
        if entry is None or entry.paused == 0:
            return
        entry.paused -= 1
        if entry.paused:
            return
        changed, entry.changed_while_paused = entry.changed_while_paused, None
        for key in changed or ():
            if key in entry.desired:
                self._check(app, entry, key, live(key))

    def on_change(self, key: Key, obj: Manifest | None) -> None:
        held = self._by_key.get(key)
        for app in (held,) if isinstance(held, str) else tuple(held or ()):
            entry = self._apps[app]
            if entry.paused:
                if entry.changed_while_paused is None:
                    entry.changed_while_paused = set()
                entry.changed_while_paused.add(key)
                continue
            self._check(app, entry, key, obj)

    def _check(self, app: str, entry: _Tracked, key: Key, obj: Manifest | None) -> None:
        if self.matcher(key, entry.desired[key], obj) or entry.on_drift is None:
            return
        if entry.pending is None:
            entry.pending = set()
        entry.pending.add(key)
        if not entry.scheduled:
            entry.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush, app)

    def _flush(self, app: str) -> None:
        entry = self._apps.get(app)
        if entry is None:
            return
        entry.scheduled = False
        keys, entry.pending = entry.pending or set(), None
        refs = sorted(ObjectRef.from_manifest(entry.desired[k]) for k in keys if k in entry.desired)
        if refs and entry.on_drift is not None and not entry.paused:
            try:
                entry.on_drift(refs)
            except Exception:
                log.exception("drift callback failed", app=app)
        elif refs and entry.paused:
            if entry.changed_while_paused is None:
                entry.changed_while_paused = set()
            entry.changed_while_paused.update(keys)
