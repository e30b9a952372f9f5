"""Simulated controllers: workloads roll out, Jobs finish, Services get IPs, PVCs bind, CRDs are Established.

Everything is event driven: the store calls :meth:`Controllers.on_change` after
each write, and work that should happen later is a single ``loop.call_later``
per object (re-scheduling cancels the previous one). Nothing polls.

Failure trigger (documented for users of the sandbox): the annotation
``sandbox.gitopsd.dev/fail: "true"`` on the object, or a container image whose
reference contains ``:fail`` (e.g. ``nginx:fail``), makes a Deployment reach
``Progressing=False/ProgressDeadlineExceeded``, a StatefulSet/DaemonSet/ReplicaSet
stay unready, a Job end ``Failed`` (BackoffLimitExceeded) and a Pod stay Pending
with ImagePullBackOff. A Pod that runs once (``restartPolicy: Never`` or ``OnFailure``)
ends ``Succeeded`` after the delay, or ``Failed`` with the trigger.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
from collections.abc import Callable
from typing import Any

from .api import Api, now_iso
from .kinds import Registry
from .store import Store

FAIL_ANNOTATION = "sandbox.gitopsd.dev/fail"

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
_WORKLOADS = {_DEPLOY, _RS, _STS, _DS}


def should_fail(obj: dict[str, Any]) -> bool:
    """Whether the documented failure trigger is present on a workload."""
    annotations = obj.get("metadata", {}).get("annotations") or {}
    if str(annotations.get(FAIL_ANNOTATION, "")).lower() == "true":
        return True
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Job":  # the Job's pod template may carry the trigger as well
        template_meta = (spec.get("template") or {}).get("metadata") or {}
        if str((template_meta.get("annotations") or {}).get(FAIL_ANNOTATION, "")).lower() == "true":
            return True
    pod_spec = (spec.get("template") or {}).get("spec") if "template" in spec else spec
    if obj.get("kind") == "CronJob":
        pod_spec = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec")
    for c in (pod_spec or {}).get("containers") or []:
        if isinstance(c, dict) and ":fail" in str(c.get("image", "")):
            return True
    return False


def _cond(ctype: str, status: str, reason: str, message: str, now: str, progress: bool = False) -> dict[str, Any]:
    c = {"type": ctype, "status": status, "reason": reason, "message": message,
         "lastTransitionTime": now}
    if progress:
        c["lastUpdateTime"] = now
    return c


def _revision(obj: dict[str, Any]) -> str:
    template = (obj.get("spec") or {}).get("template")
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
    return f"{obj['metadata']['name']}-{digest}"


class Controllers:
    """The simulated controller manager of one sandbox."""

    def __init__(self, api: Api, store: Store, registry: Registry, rollout_delay: float) -> None:
        self.api = api
        self.store = store
        self.registry = registry
        self.delay = rollout_delay
        self._timers: dict[tuple[str, str, str], asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        store.add_listener(self.on_change)
        api.on_namespace_delete = self._namespace_deleted

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the running loop and catch up with objects loaded from a state file."""
        self._loop = loop
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

    def pending(self) -> int:
        """Scheduled controller actions."""
        return len(self._timers)

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
            new = fn(copy.deepcopy(current))
            if new is not None and new != current:
                self.store.put(key, new, "MODIFIED")

        self._timers[ident] = self._loop.call_later(max(delay, 0.0), fire)

    def _now(self, key: str, obj: dict[str, Any], fn: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
        self._later(key, obj, 0.0, fn)

    # -- dispatch ------------------------------------------------------------------
    def on_change(self, key: str, etype: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """Store listener: react to one change."""
        if etype == "DELETED":
            self._deleted(key, obj)
            return
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return
        status = obj.get("status") or {}
        spec_changed = status.get("observedGeneration") != meta.get("generation")
        if key in _WORKLOADS:
            if spec_changed:
                self._now(key, obj, self._workload_progressing)
        elif key == _JOB:
            if etype == "ADDED" or (old is not None and not status):
                self._now(key, obj, self._job_started)
        elif key == _POD:
            if etype == "ADDED":
                run_once = (obj.get("spec") or {}).get("restartPolicy") in ("Never", "OnFailure")
                self._later(key, obj, self.delay, self._pod_finished if run_once else self._pod_ready)
        elif key == _SVC:
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

    # -- workloads -------------------------------------------------------------------
    def _workload_progressing(self, obj: dict[str, Any]) -> dict[str, Any]:
        key = {"Deployment": _DEPLOY, "ReplicaSet": _RS, "StatefulSet": _STS, "DaemonSet": _DS}[obj["kind"]]
        now = now_iso()
        spec = obj.get("spec") or {}
        gen = obj["metadata"].get("generation", 1)
        replicas = spec.get("replicas", 1) if obj["kind"] != "DaemonSet" else 1
        old = obj.get("status") or {}
        if obj["kind"] == "Deployment":
            conditions = [
                _cond("Available", "True" if old.get("availableReplicas", 0) >= replicas > 0 or replicas == 0 else "False",
                      "MinimumReplicasAvailable" if old.get("availableReplicas") else "MinimumReplicasUnavailable",
                      "Deployment does not have minimum availability.", now, True),
                _cond("Progressing", "True", "ReplicaSetUpdated",
                      f'ReplicaSet "{_revision(obj)}" is progressing.', now, True),
            ]
            obj["status"] = {"observedGeneration": gen, "replicas": replicas, "updatedReplicas": replicas,
                             "unavailableReplicas": replicas, "conditions": conditions}
        elif obj["kind"] == "DaemonSet":
            obj["status"] = {"observedGeneration": gen, "desiredNumberScheduled": 1, "currentNumberScheduled": 1,
                             "numberMisscheduled": 0, "numberReady": 0, "updatedNumberScheduled": 1,
                             "numberUnavailable": 1}
        elif obj["kind"] == "StatefulSet":
            rev = _revision(obj)
            obj["status"] = {"observedGeneration": gen, "replicas": replicas, "currentReplicas": 0,
                             "updatedReplicas": 0, "readyReplicas": 0, "availableReplicas": 0,
                             "currentRevision": old.get("currentRevision", rev), "updateRevision": rev,
                             "collisionCount": 0}
        else:
            obj["status"] = {"observedGeneration": gen, "replicas": replicas, "fullyLabeledReplicas": replicas}
        fail = should_fail(obj)
        delay = self.delay
        if fail and obj["kind"] == "Deployment":
            delay = min(self.delay, float(spec.get("progressDeadlineSeconds", 600)))
        self._later(key, obj, delay, self._workload_failed if fail else self._workload_ready)
        return obj

    def _workload_ready(self, obj: dict[str, Any]) -> dict[str, Any]:
        now = now_iso()
        kind = obj["kind"]
        spec = obj.get("spec") or {}
        status = obj.setdefault("status", {})
        replicas = spec.get("replicas", 1)
        if kind == "Deployment":
            status.update(replicas=replicas, updatedReplicas=replicas, readyReplicas=replicas,
                          availableReplicas=replicas)
            status.pop("unavailableReplicas", None)
            status["conditions"] = [
                _cond("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", now, True),
                _cond("Progressing", "True", "NewReplicaSetAvailable",
                      f'ReplicaSet "{_revision(obj)}" has successfully progressed.', now, True),
            ]
        elif kind == "DaemonSet":
            status.update(numberReady=1, numberAvailable=1, updatedNumberScheduled=1)
            status.pop("numberUnavailable", None)
        elif kind == "StatefulSet":
            status.update(replicas=replicas, currentReplicas=replicas, updatedReplicas=replicas,
                          readyReplicas=replicas, availableReplicas=replicas,
                          currentRevision=status.get("updateRevision", _revision(obj)))
        else:
            status.update(replicas=replicas, fullyLabeledReplicas=replicas, readyReplicas=replicas,
                          availableReplicas=replicas)
        for k in [k for k, v in status.items() if v == 0 and k.endswith("Replicas")]:
            del status[k]
        return obj

    def _workload_failed(self, obj: dict[str, Any]) -> dict[str, Any]:
        now = now_iso()
        if obj["kind"] == "Deployment":
            status = obj.setdefault("status", {})
            status["conditions"] = [
                _cond("Available", "False", "MinimumReplicasUnavailable",
                      "Deployment does not have minimum availability.", now, True),
                _cond("Progressing", "False", "ProgressDeadlineExceeded",
                      f'ReplicaSet "{_revision(obj)}" has timed out progressing.', now, True),
            ]
        return obj

    # -- jobs, pods ---------------------------------------------------------------------
    def _job_started(self, obj: dict[str, Any]) -> dict[str, Any]:
        spec = obj.get("spec") or {}
        if spec.get("suspend"):
            obj["status"] = {"conditions": [_cond("Suspended", "True", "JobSuspended", "Job suspended", now_iso())]}
            return obj
        obj["status"] = {"startTime": now_iso(), "active": spec.get("parallelism", 1), "ready": 0,
                         "terminating": 0, "uncountedTerminatedPods": {}}
        self._later(_JOB, obj, self.delay, self._job_done)
        return obj

    def _job_done(self, obj: dict[str, Any]) -> dict[str, Any]:
        now = now_iso()
        spec = obj.get("spec") or {}
        status = obj.setdefault("status", {})
        status.pop("active", None)
        status["ready"] = 0
        if should_fail(obj):
            status["failed"] = spec.get("backoffLimit", 6) + 1
            status["conditions"] = [
                _cond("FailureTarget", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit", now),
                _cond("Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit", now),
            ]
        else:
            status["succeeded"] = spec.get("completions", 1)
            status["completionTime"] = now
            status["conditions"] = [
                _cond("SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods", now),
                _cond("Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods", now),
            ]
        return obj

    def _pod_ready(self, obj: dict[str, Any]) -> dict[str, Any]:
        now = now_iso()
        containers = (obj.get("spec") or {}).get("containers") or []
        if should_fail(obj):
            obj["status"] = {"phase": "Pending", "containerStatuses": [
                {"name": c.get("name"), "image": c.get("image"), "ready": False, "restartCount": 0,
                 "state": {"waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{c.get("image")}"'}}}
                for c in containers]}
            return obj
        obj["status"] = {
            "phase": "Running", "podIP": "10.244.0.10", "hostIP": "172.18.0.2", "startTime": now,
            "conditions": [_cond(t, "True", "", "", now) for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
            "containerStatuses": [
                {"name": c.get("name"), "image": c.get("image"), "ready": True, "started": True, "restartCount": 0,
                 "state": {"running": {"startedAt": now}}} for c in containers],
        }
        for c in obj["status"]["conditions"]:
            del c["reason"], c["message"]
        return obj

    def _pod_finished(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A Pod that runs once (restartPolicy Never/OnFailure, e.g. a hook): Succeeded, or Failed."""
        now = now_iso()
        failed = should_fail(obj)
        exit_code = 1 if failed else 0
        containers = (obj.get("spec") or {}).get("containers") or []
        obj["status"] = {
            "phase": "Failed" if failed else "Succeeded", "startTime": now,
            "reason": "Error" if failed else "Completed",
            "containerStatuses": [
                {"name": c.get("name"), "image": c.get("image"), "ready": False, "started": False, "restartCount": 0,
                 "state": {"terminated": {"exitCode": exit_code, "reason": "Error" if failed else "Completed",
                                          "startedAt": now, "finishedAt": now}}} for c in containers],
        }
        return obj

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
