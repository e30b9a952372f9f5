"""Health of live objects (rules in REFERENCE.md), worst-of for an app.

Order of rules for one object: deletion in progress; the built-in kinds (Deployment,
StatefulSet, DaemonSet, Job, PVC, Service, CRD, Namespace); then the generic kstatus
conditions (``status.conditions`` Ready/Stalled/Reconciling, ``observedGeneration``); then
the ``gitopsd_health`` plugin hook (as its hookspec says); else Healthy once it exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gitopsd.core.models import Health, HealthStatus, Manifest

HealthHook = Callable[[Manifest], HealthStatus | None]


def _conditions(obj: Manifest) -> dict[str, dict[str, Any]]:
    conds = (obj.get("status") or {}).get("conditions") or []
    return {str(c.get("type")): c for c in conds if isinstance(c, dict)}


def _generation_current(obj: Manifest) -> bool:
    generation = (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    if generation is None:
        return True
    return observed is not None and int(generation) <= int(observed)


def _progressing(message: str) -> HealthStatus:
    return HealthStatus(Health.PROGRESSING, message)


def _deployment(obj: Manifest) -> HealthStatus:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if spec.get("paused"):
        return HealthStatus(Health.SUSPENDED, "deployment is paused")
    if not _generation_current(obj):
        return _progressing("waiting for the rollout to be observed")
    progressing = _conditions(obj).get("Progressing") or {}
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return HealthStatus(
            Health.DEGRADED,
            f"rollout failed: {progressing.get('message') or 'progress deadline exceeded'}",
        )
    replicas = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    if updated < replicas:
        return _progressing(f"{updated} of {replicas} replicas updated")
    if int(status.get("replicas") or 0) > updated:
        return _progressing(
            f"{int(status.get('replicas') or 0) - updated} old replicas pending termination"
        )
    available = int(status.get("availableReplicas") or 0)
    if available < updated:
        return _progressing(f"{available} of {updated} updated replicas available")
    return HealthStatus(Health.HEALTHY)


def _daemonset(obj: Manifest) -> HealthStatus:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") != "RollingUpdate":
        return HealthStatus(Health.HEALTHY)
    if not _generation_current(obj):
        return _progressing("waiting for the rollout to be observed")
    desired = int(status.get("desiredNumberScheduled") or 0)
    if int(status.get("updatedNumberScheduled") or 0) < desired:
        return _progressing(
            f"{status.get('updatedNumberScheduled') or 0} of {desired} pods updated"
        )
    if int(status.get("numberAvailable") or 0) < desired:
        return _progressing(f"{status.get('numberAvailable') or 0} of {desired} pods available")
    return HealthStatus(Health.HEALTHY)


def _statefulset(obj: Manifest) -> HealthStatus:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") == "OnDelete":
        return HealthStatus(Health.HEALTHY)
    if not status.get("observedGeneration") or not _generation_current(obj):
        return _progressing("waiting for the rollout to be observed")
    replicas = int(spec.get("replicas", 1))
    if int(status.get("readyReplicas") or 0) < replicas:
        return _progressing(f"{status.get('readyReplicas') or 0} of {replicas} pods ready")
    partition = (strategy.get("rollingUpdate") or {}).get("partition")
    if partition:
        if int(status.get("updatedReplicas") or 0) < replicas - int(partition):
            return _progressing("partitioned rollout in progress")
        return HealthStatus(Health.HEALTHY)
    if status.get("updateRevision") != status.get("currentRevision"):
        return _progressing("rolling update in progress")
    return HealthStatus(Health.HEALTHY)


def _job(obj: Manifest) -> HealthStatus:
    conds = _conditions(obj)
    failed = conds.get("Failed") or {}
    if failed.get("status") == "True":
        return HealthStatus(
            Health.DEGRADED,
            f"job failed: {failed.get('message') or failed.get('reason') or ''}".rstrip(": "),
        )
    if (conds.get("Complete") or {}).get("status") == "True":
        return HealthStatus(Health.HEALTHY)
    return _progressing("job running")


def _pvc(obj: Manifest) -> HealthStatus:
    phase = (obj.get("status") or {}).get("phase")
    if phase == "Bound":
        return HealthStatus(Health.HEALTHY)
    if phase == "Lost":
        return HealthStatus(Health.DEGRADED, "claim lost its volume")
    return _progressing(f"claim is {phase or 'Pending'}")


def _service(obj: Manifest) -> HealthStatus:
    if (obj.get("spec") or {}).get("type") != "LoadBalancer":
        return HealthStatus(Health.HEALTHY)
    if ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress"):
        return HealthStatus(Health.HEALTHY)
    return _progressing("waiting for a load balancer address")


def _crd(obj: Manifest) -> HealthStatus:
    conds = _conditions(obj)
    if (conds.get("NamesAccepted") or {}).get("status") == "False":
        return HealthStatus(
            Health.DEGRADED, f"names not accepted: {conds['NamesAccepted'].get('message', '')}"
        )
    if (conds.get("Established") or {}).get("status") == "True":
        return HealthStatus(Health.HEALTHY)
    return _progressing("waiting for the CRD to be established")


def _namespace(obj: Manifest) -> HealthStatus:
    phase = (obj.get("status") or {}).get("phase")
    if phase in (None, "Active"):
        return HealthStatus(Health.HEALTHY)
    return _progressing(f"namespace is {phase}")


_BUILTIN: dict[tuple[str, str], Callable[[Manifest], HealthStatus]] = {
    ("apps", "Deployment"): _deployment,
    ("apps", "DaemonSet"): _daemonset,
    ("apps", "StatefulSet"): _statefulset,
    ("batch", "Job"): _job,
    ("", "PersistentVolumeClaim"): _pvc,
    ("", "Service"): _service,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _crd,
    ("", "Namespace"): _namespace,
}


def _generic(obj: Manifest) -> HealthStatus | None:
    """kstatus-style conditions; None when the object has nothing to say."""
    status = obj.get("status") or {}
    conds = _conditions(obj)
    if "observedGeneration" in status and not _generation_current(obj):
        return _progressing("waiting for the controller to observe the latest generation")
    if (conds.get("Stalled") or {}).get("status") == "True":
        return HealthStatus(Health.DEGRADED, str(conds["Stalled"].get("message") or "stalled"))
    if (conds.get("Reconciling") or {}).get("status") == "True":
        return _progressing(str(conds["Reconciling"].get("message") or "reconciling"))
    ready = conds.get("Ready")
    if ready is not None:
        if ready.get("status") == "True":
            return HealthStatus(Health.HEALTHY)
        if ready.get("status") == "False":
            return HealthStatus(
                Health.DEGRADED, str(ready.get("message") or ready.get("reason") or "not ready")
            )
        return _progressing(str(ready.get("message") or "readiness unknown"))
    return None


def object_health(obj: Manifest | None, hook: HealthHook | None = None) -> HealthStatus:
    """Health of one live object (``None``: it does not exist -> Missing)."""
    if obj is None:
        return HealthStatus(Health.MISSING, "does not exist")
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return _progressing("being deleted")
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    rule = _BUILTIN.get((group, str(obj.get("kind", ""))))
    if rule is not None:
        try:
            return rule(obj)
        except (TypeError, ValueError) as exc:
            return HealthStatus(Health.UNKNOWN, f"cannot read status: {exc}")
    generic = _generic(obj)
    if generic is not None:
        return generic
    if hook is not None:
        result = hook(obj)
        if result is not None:
            return result
    return HealthStatus(Health.HEALTHY)
