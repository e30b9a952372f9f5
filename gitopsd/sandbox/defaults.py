"""Defaulting done by the API server on write (a small, useful subset)."""

from __future__ import annotations

import base64
import itertools
from typing import Any

from .kinds import ResourceType


def _ip(prefix: str, n: int) -> str:
    return f"{prefix}.{(n // 250) % 250}.{n % 250 + 1}"


class Allocator:
    """Hands out ClusterIPs, NodePorts and load-balancer IPs, deterministically."""

    def __init__(self) -> None:
        self._cluster = itertools.count(10)
        self._lb = itertools.count(0)
        self._node_port = itertools.count(30000)

    def cluster_ip(self) -> str:
        return _ip("10.96", next(self._cluster))

    def lb_ip(self) -> str:
        return _ip("172.18", next(self._lb))

    def node_port(self) -> int:
        return 30000 + (next(self._node_port) - 30000) % 2768


def _pod_template(template: Any) -> None:
    if not isinstance(template, dict):
        return
    spec = template.get("spec")
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if not isinstance(c, dict):
            continue
        image = str(c.get("image", ""))
        c.setdefault("imagePullPolicy", "Always" if image.endswith(":latest") or ":" not in image.split("/")[-1] else "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        for p in c.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")


def apply_defaults(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None, alloc: Allocator) -> None:
    """Fill in defaults in place (``old`` is the stored object on update)."""
    if rt.crd:
        return
    kind = rt.kind
    raw_spec = obj.get("spec")
    if kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod") and not isinstance(raw_spec, dict):
        return
    spec: dict[str, Any] = raw_spec if isinstance(raw_spec, dict) else {}
    if kind == "Deployment":
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault("strategy", {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        _pod_template(spec.get("template"))
    elif kind in ("ReplicaSet", "StatefulSet"):
        spec.setdefault("replicas", 1)
        if kind == "StatefulSet":
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        _pod_template(spec.get("template"))
    elif kind == "DaemonSet":
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("updateStrategy", {"type": "RollingUpdate",
                                           "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})
        _pod_template(spec.get("template"))
    elif kind == "Job":
        spec.setdefault("parallelism", 1)
        spec.setdefault("completions", 1)
        spec.setdefault("backoffLimit", 6)
        template = spec.get("template")
        if isinstance(template, dict) and isinstance(template.get("spec"), dict):
            template["spec"].setdefault("restartPolicy", "Never")
        _pod_template(template)
    elif kind == "CronJob":
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
    elif kind == "Pod":
        _pod_template({"spec": spec})
    elif kind == "Service":
        _service(obj, old, alloc)
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = dict(obj.get("data") or {})
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
    elif kind == "Namespace":
        meta = obj.setdefault("metadata", {})
        labels = dict(meta.get("labels") or {})
        labels.setdefault("kubernetes.io/metadata.name", meta.get("name", ""))
        meta["labels"] = labels
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
    elif kind == "PersistentVolumeClaim" and isinstance(raw_spec, dict):
        spec.setdefault("volumeMode", "Filesystem")


def _service(obj: dict[str, Any], old: dict[str, Any] | None, alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    old_spec = (old or {}).get("spec") or {}
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        if not spec.get("clusterIP"):
            spec["clusterIP"] = old_spec.get("clusterIP") or alloc.cluster_ip()
        if spec["clusterIP"] != "None":
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    old_ports = {p.get("port"): p for p in old_spec.get("ports") or [] if isinstance(p, dict)}
    for p in spec.get("ports") or []:
        if not isinstance(p, dict):
            continue
        p.setdefault("protocol", "TCP")
        p.setdefault("targetPort", p.get("port"))
        if spec["type"] in ("NodePort", "LoadBalancer") and not p.get("nodePort"):
            p["nodePort"] = old_ports.get(p.get("port"), {}).get("nodePort") or alloc.node_port()
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
