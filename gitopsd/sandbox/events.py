"""Core v1 Events written by the simulated controllers (``kubectl get events``, ``kubectl describe``).

Events are capped (``max_events``, oldest deleted first), as a real cluster expires
them after an hour: a benchmark creating thousands of pods must not keep every
"Started" event.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

from .store import Store

EVENTS = "events"


class Recorder:
    """Writes Events about objects, as the controller manager and kubelet do."""

    def __init__(self, store: Store, now: Any, max_events: int = 2000, seed: int = 0) -> None:
        self.store = store
        self.now = now
        self.max_events = max_events
        self._rand = random.Random(seed)
        self._order: deque[tuple[str, str]] = deque()

    def emit(self, obj: dict[str, Any], etype: str, reason: str, message: str, component: str,
             field_path: str = "") -> None:
        """Record one Event about ``obj`` (Normal or Warning)."""
        if self.max_events <= 0:
            return
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        now = self.now()
        name = f"{meta['name']}.{self._rand.getrandbits(64):016x}"
        involved = {"kind": obj.get("kind", ""), "namespace": meta.get("namespace", ""), "name": meta["name"],
                    "uid": meta.get("uid", ""), "apiVersion": obj.get("apiVersion", ""),
                    "resourceVersion": meta.get("resourceVersion", "")}
        if field_path:
            involved["fieldPath"] = field_path
        event = {
            "kind": "Event", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": ns, "uid": f"{self._rand.getrandbits(128):032x}",
                         "creationTimestamp": now},
            "involvedObject": involved, "reason": reason, "message": message,
            "source": {"component": component}, "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "type": etype, "eventTime": None, "reportingComponent": component, "reportingInstance": "",
        }
        self.store.put(EVENTS, event, "ADDED")
        self._order.append((ns, name))
        while len(self._order) > self.max_events:
            old_ns, old_name = self._order.popleft()
            old = self.store.get(EVENTS, old_ns, old_name)
            if old is not None:
                self.store.remove(EVENTS, old)
