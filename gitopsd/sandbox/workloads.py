"""Workload controllers: Deployment -> ReplicaSets -> Pods, StatefulSet, DaemonSet and Job pods.

What ``kubectl get pods``, ``kubectl rollout history/undo/restart/status``,
``kubectl describe`` and ``kubectl logs`` rely on, simulated without containers:

- A Deployment owns one ReplicaSet per pod template (named ``<deployment>-<pod-template-hash>``,
  revision in ``deployment.kubernetes.io/revision``); the current one is scaled to
  ``spec.replicas`` and the others to 0 (no surge), old ones beyond
  ``revisionHistoryLimit`` are deleted. Going back to an earlier template (``rollout
  undo``) reuses its ReplicaSet with the next revision number.
- ReplicaSets, StatefulSets (``<name>-0..n-1``), DaemonSets (one pod: the sandbox has
  one node) and Jobs create and delete Pods to match, and take their status from them.
- A Pod becomes Running and Ready ``rollout_delay`` seconds after it is created; a Job's
  pod then Succeeds ``job_duration`` seconds later. The failure trigger (see
  :func:`should_fail`) makes pods stay Pending in ImagePullBackOff (Deployments then
  report ProgressDeadlineExceeded) and Job pods fail (the Job ends Failed,
  BackoffLimitExceeded).

Every write goes straight to the store, as a controller's status writes would, and a
sync is scheduled at most once per object at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import uuid
from collections.abc import Callable
from typing import Any

from .events import Recorder
from .store import Store, clone

FAIL_ANNOTATION = "sandbox.gitopsd.dev/fail"
REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
NODE = "sandbox-node"

DEPLOY = "deployments.apps"
RS = "replicasets.apps"
STS = "statefulsets.apps"
DS = "daemonsets.apps"
JOB = "jobs.batch"
POD = "pods"
_OWNER_KEYS = {"ReplicaSet": RS, "StatefulSet": STS, "DaemonSet": DS, "Job": JOB, "Deployment": DEPLOY}
_SAFE = "bcdfghjklmnpqrstvwxz2456789"

Obj = dict[str, Any]


def should_fail(obj: Obj) -> bool:
    """The documented failure trigger: the annotation ``sandbox.gitopsd.dev/fail: "true"`` on the
    object or its pod template, or a container image whose name contains ``fail``."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    if obj.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template = spec.get("template") if isinstance(spec.get("template"), dict) else None
    for marks in (meta.get("annotations"), ((template or {}).get("metadata") or {}).get("annotations")):
        if str((marks or {}).get(FAIL_ANNOTATION, "")).lower() == "true":
            return True
    pod_spec = (template or {}).get("spec") if template is not None else spec
    for c in (pod_spec or {}).get("containers") or []:
        if isinstance(c, dict) and "fail" in str(c.get("image", "")).rsplit("/", 1)[-1]:
            return True
    return False


def _normal(value: Any) -> Any:
    """Drop nulls and empty maps/lists: ``{"resources": {}, "creationTimestamp": null}`` is no change."""
    if isinstance(value, dict):
        out = {k: _normal(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def template_hash(template: Any) -> str:
    """A stable pod-template-hash (10 characters from Kubernetes' safe alphabet).

    Semantically equal templates hash the same, as the real controller compares them
    (what ``kubectl rollout undo`` sends back carries empty fields the original lacked).
    """
    digest = hashlib.sha256(json.dumps(_normal(template), sort_keys=True).encode()).digest()
    return "".join(_SAFE[b % len(_SAFE)] for b in digest[:10])


def controller_of(obj: Obj) -> Obj | None:
    """The ownerReference with ``controller: true``, if any."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref  # type: ignore[no-any-return]
    return None


def _owner_ref(owner: Obj) -> Obj:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def _cond(ctype: str, status: str, reason: str, message: str, now: str, old: list[Obj] | None,
          progress: bool = False) -> Obj:
    prev = next((c for c in old or [] if c.get("type") == ctype), None)
    since = prev["lastTransitionTime"] if prev and prev.get("status") == status and prev.get("lastTransitionTime") else now
    c: Obj = {"type": ctype, "status": status}
    if progress:
        same = prev is not None and prev.get("reason") == reason and prev.get("status") == status
        c["lastUpdateTime"] = prev.get("lastUpdateTime", now) if same and prev else now
    c.update(lastTransitionTime=since, reason=reason, message=message)
    return c


def pod_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def pod_failing(pod: Obj) -> bool:
    return any(((cs.get("state") or {}).get("waiting") or {}).get("reason") in ("ImagePullBackOff", "ErrImagePull")
               for cs in (pod.get("status") or {}).get("containerStatuses") or [])


def log_text(pod: Obj, container: str | None) -> str | None:
    """What ``kubectl logs`` prints for a simulated container: one fixed line (None: no such container)."""
    containers = ((pod.get("spec") or {}).get("containers") or []) + ((pod.get("spec") or {}).get("initContainers") or [])
    names = [c.get("name") for c in containers]
    name = container or (names[0] if names else None)
    if name not in names:
        return None
    image = next(c.get("image", "") for c in containers if c.get("name") == name)
    meta = pod["metadata"]
    return (f"gitopsd sandbox: container {name} (image {image}) of pod {meta.get('namespace')}/{meta['name']} "
            "is simulated: no process runs, so this line is all its log\n")


class Workloads:
    """The simulated workload controllers of one sandbox (driven by :class:`~gitopsd.sandbox.controllers.Controllers`)."""

    def __init__(self, store: Store, now: Callable[[], str], delay: float, job_duration: float,
                 max_events: int, seed: int = 0) -> None:
        self.store = store
        self.now = now
        self.delay = delay
        self.job_duration = job_duration
        self.events = Recorder(store, now, max_events, seed)
        self._rand = random.Random(seed ^ 0x5EED)
        self._ip = 10
        self._pending: dict[tuple[str, str, str, str], asyncio.Handle] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- scheduling ---------------------------------------------------------------
    def schedule(self, key: str, ns: str, name: str, what: str = "sync", delay: float = 0.0) -> None:
        """Run the ``what`` step of ``key/ns/name`` once, soon (later calls before it runs are merged)."""
        if self.loop is None:
            return
        ident = (key, ns, name, what)
        if what == "sync" and ident in self._pending:
            return
        old = self._pending.pop(ident, None)
        if old is not None:
            old.cancel()

        def fire() -> None:
            self._pending.pop(ident, None)
            self.run(key, ns, name, what)

        self._pending[ident] = (self.loop.call_later(delay, fire) if delay > 0 else self.loop.call_soon(fire))

    def run(self, key: str, ns: str, name: str, what: str) -> None:
        obj = self.store.get(key, ns, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        step = {
            (DEPLOY, "sync"): self._sync_deployment, (RS, "sync"): self._sync_replicaset,
            (STS, "sync"): self._sync_statefulset, (DS, "sync"): self._sync_daemonset,
            (JOB, "sync"): self._sync_job, (POD, "start"): self._start_pod, (POD, "finish"): self._finish_pod,
        }.get((key, what))
        if step is not None:
            step(obj)

    def stop(self) -> None:
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()

    def pending(self) -> int:
        return len(self._pending)

    # -- dispatch from the store listener ------------------------------------------
    def on_change(self, key: str, etype: str, obj: Obj, old: Obj | None) -> None:
        meta = obj["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        if key == POD:
            if etype == "ADDED" and not meta.get("deletionTimestamp"):
                self.schedule(POD, ns, name, "start", self.delay)
            ref = controller_of(obj)
            owner_key = _OWNER_KEYS.get(ref.get("kind", "")) if ref else None
            if ref and owner_key:
                self.schedule(owner_key, ns, ref["name"])
                if owner_key == RS:  # a failing pod changes its Deployment's Progressing condition
                    rs = self.store.get(RS, ns, ref["name"])
                    dep = controller_of(rs) if rs is not None else None
                    if dep and dep.get("kind") == "Deployment":
                        self.schedule(DEPLOY, ns, dep["name"])
            return
        if etype == "DELETED":
            if key == RS:
                ref = controller_of(obj)
                if ref and ref.get("kind") == "Deployment":
                    self.schedule(DEPLOY, ns, ref["name"])
            return
        if key == RS:
            self.schedule(RS, ns, name)
            ref = controller_of(obj)
            if ref and ref.get("kind") == "Deployment":
                self.schedule(DEPLOY, ns, ref["name"])
        elif key in (DEPLOY, STS, DS, JOB):
            if old is None or old.get("spec") != obj.get("spec") \
                    or old["metadata"].get("annotations") != meta.get("annotations"):
                self.schedule(key, ns, name)

    # -- writes -----------------------------------------------------------------------
    def _put(self, key: str, obj: Obj) -> Obj:
        return self.store.put(key, obj, "MODIFIED")

    def _create(self, key: str, obj: Obj) -> Obj | None:
        meta = obj["metadata"]
        if self.store.get(key, meta.get("namespace", ""), meta["name"]) is not None:
            return None
        meta["uid"] = str(uuid.UUID(int=self._rand.getrandbits(128), version=4))
        meta["creationTimestamp"] = self.now()
        meta.setdefault("generation", 1)
        return self.store.put(key, obj, "ADDED")

    def _delete(self, key: str, obj: Obj) -> None:
        current = self.store.get(key, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if current is not None:
            self.store.remove(key, current)

    def _owned(self, owner: Obj, key: str) -> list[Obj]:
        uid = owner["metadata"].get("uid", "")
        out = []
        for k, ns, name in self.store.dependents(uid):
            if k != key:
                continue
            obj = self.store.get(k, ns, name)
            if obj is not None and (controller_of(obj) or {}).get("uid") == uid:
                out.append(obj)
        return out

    def _set_status(self, key: str, obj: Obj, status: Obj, meta_update: Obj | None = None) -> None:
        meta = obj["metadata"]
        annotations_changed = meta_update and any(meta.get(k) != v for k, v in meta_update.items())
        if obj.get("status") == status and not annotations_changed:
            return
        new = dict(obj, status=status, metadata=dict(meta, **(meta_update or {})))
        self._put(key, new)

    # -- pods -------------------------------------------------------------------------------
    def _new_pod(self, owner: Obj, template: Obj, name: str, labels: Obj | None = None) -> Obj:
        tmeta = template.get("metadata") or {}
        spec = dict(template.get("spec") or {})  # shallow: the containers are shared, never mutated
        spec["nodeName"] = NODE
        meta: Obj = {"name": name, "namespace": owner["metadata"].get("namespace", ""),
                     "labels": dict(tmeta.get("labels") or {}, **(labels or {})),
                     "ownerReferences": [_owner_ref(owner)]}
        annotations = dict(tmeta.get("annotations") or {})
        if should_fail(owner):
            annotations[FAIL_ANNOTATION] = "true"
        if annotations:
            meta["annotations"] = annotations
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
                "status": {"phase": "Pending", "qosClass": "BestEffort"}}

    def _suffix(self) -> str:
        return "".join(self._rand.choice(_SAFE) for _ in range(5))

    def _start_pod(self, pod: Obj) -> None:
        now = self.now()
        meta = pod["metadata"]
        containers = (pod.get("spec") or {}).get("containers") or []
        if (pod.get("status") or {}).get("phase") not in (None, "Pending") or pod_failing(pod):
            return
        self.events.emit(pod, "Normal", "Scheduled", f"Successfully assigned {meta.get('namespace')}/{meta['name']} to {NODE}",
                         "default-scheduler")
        # A Job's pod, or any pod that runs once (restartPolicy Never/OnFailure), runs and then
        # ends: Succeeded, or Failed (exit code 1) with the failure trigger.
        run_once = (controller_of(pod) or {}).get("kind") == "Job" or (pod.get("spec") or {}).get("restartPolicy") in (
            "Never",
            "OnFailure",
        )
        if should_fail(pod) and not run_once:
            statuses = [{"name": c.get("name"), "image": c.get("image"), "imageID": "", "ready": False,
                         "restartCount": 0, "started": False,
                         "state": {"waiting": {"reason": "ImagePullBackOff",
                                               "message": f'Back-off pulling image "{c.get("image")}"'}}}
                        for c in containers]
            status = {"phase": "Pending", "hostIP": "172.18.0.2", "startTime": now, "qosClass": "BestEffort",
                      "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                                     {"type": "Ready", "status": "False", "lastTransitionTime": now,
                                      "reason": "ContainersNotReady",
                                      "message": "containers with unready status: [" + " ".join(str(c.get("name")) for c in containers) + "]"}],
                      "containerStatuses": statuses}
            for c in containers:
                self.events.emit(pod, "Warning", "Failed", f'Failed to pull image "{c.get("image")}": not found (sandbox failure trigger)',
                                 "kubelet", f"spec.containers{{{c.get('name')}}}")
            self._set_status(POD, pod, status)
            return
        self._ip += 1
        ip = f"10.244.{(self._ip // 250) % 250}.{self._ip % 250 + 1}"
        statuses = [{"name": c.get("name"), "image": c.get("image"), "imageID": f"{c.get('image')}@sha256:" + "0" * 64,
                     "containerID": f"containerd://{hashlib.sha256((meta['name'] + str(c.get('name'))).encode()).hexdigest()}",
                     "ready": True, "started": True, "restartCount": 0, "state": {"running": {"startedAt": now}}}
                    for c in containers]
        status = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "172.18.0.2",
                  "startTime": now, "qosClass": "BestEffort",
                  "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                                 for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")],
                  "containerStatuses": statuses}
        for c in containers:
            where = f"spec.containers{{{c.get('name')}}}"
            self.events.emit(pod, "Normal", "Pulled", f'Container image "{c.get("image")}" already present on machine', "kubelet", where)
            self.events.emit(pod, "Normal", "Created", f"Created container: {c.get('name')}", "kubelet", where)
            self.events.emit(pod, "Normal", "Started", f"Started container {c.get('name')}", "kubelet", where)
        self._set_status(POD, pod, status)
        if run_once:
            self.schedule(POD, meta.get("namespace", ""), meta["name"], "finish", self.job_duration)

    def _finish_pod(self, pod: Obj) -> None:
        """A pod that runs once ends: Succeeded, or Failed with the failure trigger."""
        now = self.now()
        failed = should_fail(pod)
        status = clone(pod.get("status") or {})
        status["phase"] = "Failed" if failed else "Succeeded"
        for c in status.get("conditions") or []:
            if c["type"] in ("Ready", "ContainersReady"):
                c.update(status="False", reason="PodFailed" if failed else "PodCompleted", lastTransitionTime=now)
        for cs in status.get("containerStatuses") or []:
            started = (cs.get("state") or {}).get("running", {}).get("startedAt", now)
            cs.update(ready=False, started=False, state={"terminated": {
                "exitCode": 1 if failed else 0, "reason": "Error" if failed else "Completed",
                "startedAt": started, "finishedAt": now, "containerID": cs.get("containerID", "")}})
        self._set_status(POD, pod, status)

    # -- deployments --------------------------------------------------------------------------
    def _sync_deployment(self, dep: Obj) -> None:
        now = self.now()
        meta = dep["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        spec = dep.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        template = clone(spec.get("template") or {})
        tlabels = (template.get("metadata") or {}).get("labels") or {}
        h = template_hash(template)
        rss = self._owned(dep, RS)

        def rev(rs: Obj) -> int:
            try:
                return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
            except ValueError:
                return 0

        max_rev = max((rev(r) for r in rss), default=0)
        new = next((r for r in rss if (r["metadata"].get("labels") or {}).get(HASH_LABEL) == h), None)
        carried = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k not in (REVISION, "kubectl.kubernetes.io/last-applied-configuration")}
        if new is None and not spec.get("paused"):
            template.setdefault("metadata", {})["labels"] = dict(tlabels, **{HASH_LABEL: h})
            selector = clone(spec.get("selector") or {})
            selector.setdefault("matchLabels", {})[HASH_LABEL] = h
            fresh: Obj = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                  "metadata": {"name": f"{name}-{h}", "namespace": ns, "labels": dict(tlabels, **{HASH_LABEL: h}),
                               "annotations": dict(carried, **{REVISION: str(max_rev + 1),
                                                               "deployment.kubernetes.io/desired-replicas": str(replicas),
                                                               "deployment.kubernetes.io/max-replicas": str(replicas + 1)}),
                               "ownerReferences": [_owner_ref(dep)]},
                  "spec": {"replicas": replicas, "minReadySeconds": spec.get("minReadySeconds", 0),
                           "selector": selector, "template": template}}
            created = self._create(RS, fresh)
            if created is not None:
                new = created
                rss.append(created)
                max_rev += 1
                self.events.emit(dep, "Normal", "ScalingReplicaSet",
                                 f"Scaled up replica set {name}-{h} from 0 to {replicas}", "deployment-controller")
        elif new is not None:
            want_rev = rev(new) if rev(new) == max_rev else max_rev + 1
            nmeta = new["metadata"]
            annotations = dict(nmeta.get("annotations") or {}, **carried)
            annotations.update({REVISION: str(want_rev), "deployment.kubernetes.io/desired-replicas": str(replicas)})
            old_replicas = (new.get("spec") or {}).get("replicas", 0)
            if old_replicas != replicas or annotations != nmeta.get("annotations"):
                changed = dict(new, metadata=dict(nmeta, annotations=annotations),
                               spec=dict(new["spec"], replicas=replicas))
                changed["metadata"]["generation"] = nmeta.get("generation", 1) + (old_replicas != replicas)
                new = self._put(RS, changed)
                rss = [new if r["metadata"]["name"] == new["metadata"]["name"] else r for r in rss]
                if old_replicas != replicas:
                    verb = "up" if replicas > old_replicas else "down"
                    self.events.emit(dep, "Normal", "ScalingReplicaSet",
                                     f"Scaled {verb} replica set {nmeta['name']} from {old_replicas} to {replicas}",
                                     "deployment-controller")
        for i, rs in enumerate(rss):
            if new is not None and rs["metadata"]["name"] == new["metadata"]["name"]:
                continue
            old_replicas = (rs.get("spec") or {}).get("replicas", 0)
            if old_replicas and new is not None:
                scaled = dict(rs, spec=dict(rs["spec"], replicas=0),
                              metadata=dict(rs["metadata"], generation=rs["metadata"].get("generation", 1) + 1))
                rss[i] = self._put(RS, scaled)
                self.events.emit(dep, "Normal", "ScalingReplicaSet",
                                 f"Scaled down replica set {rs['metadata']['name']} from {old_replicas} to 0",
                                 "deployment-controller")
        limit = int(spec.get("revisionHistoryLimit", 10))
        old = sorted((r for r in rss if new is None or r["metadata"]["name"] != new["metadata"]["name"]), key=rev)
        idle = [r for r in old if not (r.get("spec") or {}).get("replicas") and not (r.get("status") or {}).get("replicas")]
        for rs in idle[: max(len(idle) - limit, 0)]:
            self._delete(RS, rs)
            rss = [r for r in rss if r["metadata"]["name"] != rs["metadata"]["name"]]
        # status
        current = [self.store.get(RS, ns, r["metadata"]["name"]) or r for r in rss]
        st = lambda r, k: int((r.get("status") or {}).get(k, 0))  # noqa: E731
        total = sum(st(r, "replicas") for r in current)
        ready = sum(st(r, "readyReplicas") for r in current)
        available = sum(st(r, "availableReplicas") for r in current)
        new_now = next((r for r in current if new is not None and r["metadata"]["name"] == new["metadata"]["name"]), None)
        updated = st(new_now, "replicas") if new_now else 0
        failing = new_now is not None and any(pod_failing(p) for p in self._owned(new_now, POD))
        old_conds = (dep.get("status") or {}).get("conditions")
        rs_name = new["metadata"]["name"] if new is not None else name
        complete = updated == replicas and total == replicas and available >= replicas
        conditions = [
            _cond("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", now, old_conds, True)
            if available >= replicas else
            _cond("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.", now, old_conds, True),
            _cond("Progressing", "False", "ProgressDeadlineExceeded", f'ReplicaSet "{rs_name}" has timed out progressing.', now, old_conds, True)
            if failing else
            _cond("Progressing", "True", "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.', now, old_conds, True)
            if complete else
            _cond("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.', now, old_conds, True),
        ]
        status: Obj = {"observedGeneration": meta.get("generation", 1), "replicas": total, "updatedReplicas": updated,
                       "readyReplicas": ready, "availableReplicas": available,
                       "unavailableReplicas": max(replicas - available, 0), "conditions": conditions}
        status = {k: v for k, v in status.items() if v != 0 or k == "observedGeneration"}
        revision = str(rev(new_now) if new_now is not None else max_rev)
        annotations = {"annotations": dict(meta.get("annotations") or {}, **{REVISION: revision})}
        self._set_status(DEPLOY, self.store.get(DEPLOY, ns, name) or dep, status, annotations)

    # -- replica sets, stateful sets, daemon sets --------------------------------------------------
    def _sync_replicaset(self, rs: Obj) -> None:
        spec = rs.get("spec") or {}
        want = int(spec.get("replicas", 1))
        pods = [p for p in self._owned(rs, POD) if not p["metadata"].get("deletionTimestamp")]
        name = rs["metadata"]["name"]
        if len(pods) < want:
            template = spec.get("template") or {}
            for _ in range(want - len(pods)):
                pod = self._create(POD, self._new_pod(rs, template, f"{name}-{self._suffix()}"))
                if pod is not None:
                    pods.append(pod)
                    self.events.emit(rs, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
                                     "replicaset-controller")
        elif len(pods) > want:
            pods.sort(key=lambda p: (pod_ready(p), p["metadata"].get("creationTimestamp", "")))
            for pod in pods[: len(pods) - want]:
                self._delete(POD, pod)
                self.events.emit(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}",
                                 "replicaset-controller")
            pods = pods[len(pods) - want:]
        ready = sum(1 for p in pods if pod_ready(p))
        status: Obj = {"replicas": len(pods), "fullyLabeledReplicas": len(pods), "readyReplicas": ready,
                       "availableReplicas": ready, "observedGeneration": rs["metadata"].get("generation", 1)}
        status = {k: v for k, v in status.items() if v != 0 or k in ("replicas", "observedGeneration")}
        self._set_status(RS, self.store.get(RS, rs["metadata"].get("namespace", ""), name) or rs, status)

    def _sync_statefulset(self, sts: Obj) -> None:
        spec = sts.get("spec") or {}
        want = int(spec.get("replicas", 1))
        name, ns = sts["metadata"]["name"], sts["metadata"].get("namespace", "")
        revision = f"{name}-{template_hash(spec.get('template'))}"
        pods = {p["metadata"]["name"]: p for p in self._owned(sts, POD)}
        for pname, pod in list(pods.items()):
            index = pname.rsplit("-", 1)[-1]
            stale = (pod["metadata"].get("labels") or {}).get("controller-revision-hash") != revision
            if not index.isdigit() or int(index) >= want or stale:
                self._delete(POD, pod)
                self.events.emit(sts, "Normal", "SuccessfulDelete", f"delete Pod {pname} in StatefulSet {name} successful",
                                 "statefulset-controller")
                del pods[pname]
        for i in range(want):
            pname = f"{name}-{i}"
            if pname not in pods:
                made = self._create(POD, self._new_pod(sts, spec.get("template") or {}, pname, {
                    "controller-revision-hash": revision, "statefulset.kubernetes.io/pod-name": pname,
                    "apps.kubernetes.io/pod-index": str(i)}))
                if made is not None:
                    pods[pname] = made
                    self.events.emit(sts, "Normal", "SuccessfulCreate",
                                     f"create Pod {pname} in StatefulSet {name} successful", "statefulset-controller")
        ready = sum(1 for p in pods.values() if pod_ready(p))
        status = {"observedGeneration": sts["metadata"].get("generation", 1), "replicas": len(pods),
                  "readyReplicas": ready, "currentReplicas": len(pods), "updatedReplicas": len(pods),
                  "availableReplicas": ready, "currentRevision": revision, "updateRevision": revision,
                  "collisionCount": 0}
        self._set_status(STS, self.store.get(STS, ns, name) or sts, status)

    def _sync_daemonset(self, ds: Obj) -> None:
        spec = ds.get("spec") or {}
        name, ns = ds["metadata"]["name"], ds["metadata"].get("namespace", "")
        h = template_hash(spec.get("template"))
        pods = self._owned(ds, POD)
        for pod in pods:
            if (pod["metadata"].get("labels") or {}).get("controller-revision-hash") != h:
                self._delete(POD, pod)
        pods = [p for p in pods if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == h]
        if not pods:
            made = self._create(POD, self._new_pod(ds, spec.get("template") or {}, f"{name}-{self._suffix()}",
                                                   {"controller-revision-hash": h}))
            if made is not None:
                pods.append(made)
                self.events.emit(ds, "Normal", "SuccessfulCreate", f"Created pod: {made['metadata']['name']}",
                                 "daemonset-controller")
        ready = sum(1 for p in pods if pod_ready(p))
        status = {"observedGeneration": ds["metadata"].get("generation", 1), "desiredNumberScheduled": 1,
                  "currentNumberScheduled": len(pods), "numberMisscheduled": 0, "numberReady": ready,
                  "updatedNumberScheduled": len(pods), "numberAvailable": ready}
        if ready < 1:
            status["numberUnavailable"] = 1
        self._set_status(DS, self.store.get(DS, ns, name) or ds, status)

    # -- jobs ---------------------------------------------------------------------------------------
    def _sync_job(self, job: Obj) -> None:
        now = self.now()
        spec = job.get("spec") or {}
        meta = job["metadata"]
        name, ns = meta["name"], meta.get("namespace", "")
        old = job.get("status") or {}
        done = {c.get("type") for c in old.get("conditions") or [] if c.get("status") == "True"} & {"Complete", "Failed"}
        if done:
            return
        if spec.get("suspend"):
            self._set_status(JOB, job, {"conditions": [_cond("Suspended", "True", "JobSuspended", "Job suspended", now,
                                                             old.get("conditions"))]})
            return
        pods = self._owned(job, POD)
        if not pods:
            template = spec.get("template") or {}
            labels = {"batch.kubernetes.io/controller-uid": meta.get("uid", ""), "batch.kubernetes.io/job-name": name,
                      "controller-uid": meta.get("uid", ""), "job-name": name}
            pod = self._create(POD, self._new_pod(job, template, f"{name}-{self._suffix()}", labels))
            if pod is not None:
                pods = [pod]
                self.events.emit(job, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
                                 "job-controller")
        phases = [(p.get("status") or {}).get("phase") for p in pods]
        status: Obj = {"startTime": old.get("startTime", now), "terminating": 0, "uncountedTerminatedPods": {}}
        if "Failed" in phases or any(pod_failing(p) for p in pods):
            status.update(failed=int(spec.get("backoffLimit", 6)) + 1, ready=0)
            msg = "Job has reached the specified backoff limit"
            status["conditions"] = [_cond("FailureTarget", "True", "BackoffLimitExceeded", msg, now, None),
                                    _cond("Failed", "True", "BackoffLimitExceeded", msg, now, None)]
            self.events.emit(job, "Warning", "BackoffLimitExceeded", msg, "job-controller")
        elif "Succeeded" in phases:
            status.update(succeeded=int(spec.get("completions", 1)), ready=0, completionTime=now)
            msg = "Reached expected number of succeeded pods"
            status["conditions"] = [_cond("SuccessCriteriaMet", "True", "CompletionsReached", msg, now, None),
                                    _cond("Complete", "True", "CompletionsReached", msg, now, None)]
            self.events.emit(job, "Normal", "Completed", "Job completed", "job-controller")
        else:
            status.update(active=len(pods), ready=sum(1 for p in pods if pod_ready(p)))
        self._set_status(JOB, self.store.get(JOB, ns, name) or job, status)
