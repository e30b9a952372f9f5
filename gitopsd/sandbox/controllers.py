"""Simulated controllers: Services get IPs, PVCs bind, CRDs are Established, namespaces finalize.

Workloads (Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs and their Pods,
with Events) are in :mod:`gitopsd.sandbox.workloads`; this module dispatches store
changes to them.

Everything is event driven: the store calls :meth:`Controllers.on_change` after
each write, and work that should happen later is a single ``loop.call_later``
per object (re-scheduling cancels the previous one). Nothing polls.

Failure trigger (documented for users of the sandbox): the annotation
``sandbox.gitopsd.dev/fail: "true"`` on the object or its pod template, or a container
image whose name contains ``fail`` (e.g. ``nginx:fail``), makes pods stay Pending in
ImagePullBackOff, a Deployment reach ``Progressing=False/ProgressDeadlineExceeded``,
StatefulSets/DaemonSets/ReplicaSets stay unready and a Job end ``Failed``
(BackoffLimitExceeded).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .api import Api, now_iso
from .kinds import Registry
from .store import Store, clone
from .workloads import FAIL_ANNOTATION, Workloads, should_fail

_DEPLOY = "deployments.apps"
_RS = "replicasets.apps"
_STS = "statefulsets.apps"
_DS = "daemonsets.apps"
_JOB = "jobs.batch"
_POD = "pods"
_SVC = "services"
_PVC = "persistentvolumeclaims"
_PV = "persistentvolumes"
_CRD = "customresourcedefinitions.apiextensions.k8s.io"
_NS = "namespaces"
_WORKLOADS = {_DEPLOY, _RS, _STS, _DS, _JOB, _POD}


def _cond(ctype: str, status: str, reason: str, message: str, now: str, progress: bool = False) -> dict[str, Any]:
    c = {"type": ctype, "status": status, "reason": reason, "message": message,
         "lastTransitionTime": now}
    if progress:
        c["lastUpdateTime"] = now
    return c


class Controllers:
    """The simulated controller manager of one sandbox."""

    def __init__(self, api: Api, store: Store, registry: Registry, rollout_delay: float,
                 job_duration: float | None = None, max_events: int = 2000, seed: int = 0) -> None:
        self.api = api
        self.store = store
        self.registry = registry
        self.delay = rollout_delay
        self.workloads = Workloads(store, now_iso, rollout_delay,
                                   rollout_delay if job_duration is None else job_duration, max_events, seed)
        self._timers: dict[tuple[str, str, str], asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        store.add_listener(self.on_change)
        api.on_namespace_delete = self._namespace_deleted

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the running loop and catch up with objects loaded from a state file."""
        self._loop = loop
        self.workloads.loop = loop
        for key in (_CRD,):
            for obj in list(self.store.iter(key)):
                self.registry.add_crd(obj)
        for key in list(self.store.keys()):
            for obj in list(self.store.iter(key)):
                self.on_change(key, "ADDED", obj, None)
        for ns in list(self.store.iter(_NS)):
            if ns["metadata"].get("deletionTimestamp"):
                self._namespace_deleted(ns["metadata"]["name"])

    def stop(self) -> None:
        """Cancel pending work."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self.workloads.stop()

    def pending(self) -> int:
        """Scheduled controller actions."""
        return len(self._timers) + self.workloads.pending()

    # -- scheduling ------------------------------------------------------------
    def _later(self, key: str, obj: dict[str, Any], delay: float, fn: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
        """After ``delay``, run ``fn(current_object)`` and store the object it returns."""
        if self._loop is None:
            return
        meta = obj["metadata"]
        ident = (key, meta.get("namespace", ""), meta["name"])
        old = self._timers.pop(ident, None)
        if old is not None:
            old.cancel()
        generation = meta.get("generation")
        uid = meta.get("uid")

        def fire() -> None:
            self._timers.pop(ident, None)
            current = self.store.get(*ident)
            if current is None or current["metadata"].get("uid") != uid:
                return
            if current["metadata"].get("generation") != generation:
                return
            new = fn(clone(current))
            if new is not None and new != current:
                self.store.put(key, new, "MODIFIED")

        self._timers[ident] = self._loop.call_later(max(delay, 0.0), fire)

    def _now(self, key: str, obj: dict[str, Any], fn: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
        self._later(key, obj, 0.0, fn)

    # -- dispatch ------------------------------------------------------------------
    def on_change(self, key: str, etype: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """Store listener: react to one change."""
        if key in _WORKLOADS:
            self.workloads.on_change(key, etype, obj, old)
        if etype == "DELETED":
            self._deleted(key, obj)
            return
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return
        status = obj.get("status") or {}
        if key in _WORKLOADS:
            return
        if key == _SVC:
            spec = obj.get("spec") or {}
            if spec.get("type") == "LoadBalancer" and not (status.get("loadBalancer") or {}).get("ingress"):
                self._later(key, obj, self.delay, self._lb_ready)
        elif key == _PVC:
            if status.get("phase") != "Bound":
                self._later(key, obj, self.delay, self._pvc_bound)
        elif key == _PV:
            if not status.get("phase"):
                self._now(key, obj, lambda o: dict(o, status={"phase": "Available"}))
        elif key == _CRD:
            self._crd(obj, old)

    def _deleted(self, key: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        handle = self._timers.pop((key, meta.get("namespace", ""), meta["name"]), None)
        if handle is not None:
            handle.cancel()
        if key == _CRD:
            for rt in self.registry.remove_crd(meta["name"]):
                if not self.registry.by_key(rt.key):
                    self.store.drop_key(rt.key)
        ns_name = meta.get("namespace")
        if ns_name:
            ns = self.store.get(_NS, "", ns_name)
            if ns is not None and ns["metadata"].get("deletionTimestamp") and self._loop is not None:
                self._loop.call_soon(self.api.finalize_namespace, ns_name)

    def _namespace_deleted(self, name: str) -> None:
        if self._loop is not None:
            self._loop.call_soon(self.api.finalize_namespace, name)
        else:
            self.api.finalize_namespace(name)

    # -- services, volumes, CRDs ----------------------------------------------------------
    def _lb_ready(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": self.api.alloc.lb_ip(), "ipMode": "VIP"}]}}
        return obj

    def _pvc_bound(self, obj: dict[str, Any]) -> dict[str, Any]:
        spec = obj.get("spec") or {}
        if not spec.get("volumeName"):
            spec["volumeName"] = "pvc-" + obj["metadata"].get("uid", "")
        obj["spec"] = spec
        obj["status"] = {"phase": "Bound", "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                         "capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")}}
        return obj

    def _crd(self, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        conditions = {c.get("type"): c.get("status") for c in (obj.get("status") or {}).get("conditions") or []}
        if old is not None and old.get("spec") == obj.get("spec") and conditions.get("Established") == "True":
            return

        def establish(o: dict[str, Any]) -> dict[str, Any]:
            self.registry.add_crd(o)
            now = now_iso()
            spec = o.get("spec") or {}
            names = dict(spec.get("names") or {})
            names.setdefault("singular", names.get("kind", "").lower())
            names.setdefault("listKind", names.get("kind", "") + "List")
            o["status"] = {
                "acceptedNames": names,
                "conditions": [
                    _cond("NamesAccepted", "True", "NoConflicts", "no conflicts found", now),
                    _cond("Established", "True", "InitialNamesAccepted", "the initial names have been accepted", now),
                ],
                "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
            }
            return o

        if self._loop is None:
            self.registry.add_crd(obj)
        else:
            self._now(_CRD, obj, establish)


__all__ = ["FAIL_ANNOTATION", "Controllers", "should_fail"]
