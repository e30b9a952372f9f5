"""Server-side Table output (``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``).

kubectl asks every ``get`` for a Table and prints its columns as they come, so the
columns here are the real API server's (k8s.io/kubernetes pkg/printers/internalversion):
READY/UP-TO-DATE/AVAILABLE for Deployments, STATUS/RESTARTS for Pods, and a custom
resource's ``additionalPrinterColumns``. Kinds without a printer get NAME and AGE.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .kinds import ResourceType

Row = list[Any]
Obj = dict[str, Any]


def table_version(accept: str) -> str | None:
    """``meta.k8s.io/v1`` (or v1beta1) when the Accept header asks for a Table, else None."""
    if "as=Table" not in accept:
        return None
    for part in accept.split(","):
        params = {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in part.split(";")[1:])}
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            return "meta.k8s.io/" + params["v"]
    return None


def human_duration(seconds: float) -> str:
    """Go's ``duration.HumanDuration`` (what the AGE column shows)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _since(ts: str | None, now: datetime) -> str:
    if not ts:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration((now - then).total_seconds())


# -- column helpers -------------------------------------------------------------------

def _col(name: str, ctype: str = "string", priority: int = 0, fmt: str = "", desc: str = "") -> dict[str, Any]:
    return {"name": name, "type": ctype, "format": fmt, "description": desc or name, "priority": priority}


_NAME = _col("Name", fmt="name", desc="Name must be unique within a namespace.")
_AGE = _col("Age", desc="CreationTimestamp is a timestamp representing the server time when this object was created.")


def _containers(pod_spec: Obj) -> tuple[str, str]:
    cs = pod_spec.get("containers") or []
    return ",".join(str(c.get("name", "")) for c in cs), ",".join(str(c.get("image", "")) for c in cs)


def _selector(sel: Obj | None) -> str:
    if not sel:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        op, key, vals = e.get("operator"), e.get("key"), ",".join(e.get("values") or [])
        parts.append({"In": f"{key} in ({vals})", "NotIn": f"{key} notin ({vals})", "Exists": f"{key}",
                      "DoesNotExist": f"!{key}"}.get(op, key))
    return ",".join(parts) or "<none>"


def _template(o: Obj) -> Obj:
    return ((o.get("spec") or {}).get("template") or {}).get("spec") or {}


def pod_status(o: Obj) -> str:
    """The STATUS column of a Pod (the waiting/terminated reason wins over the phase)."""
    st = o.get("status") or {}
    reason = st.get("reason") or st.get("phase") or "Pending"
    for cs in st.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
    if (o.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _pod(o: Obj, now: datetime) -> Row:
    st = o.get("status") or {}
    spec = o.get("spec") or {}
    total = len(spec.get("containers") or [])
    statuses = st.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    return [f"{ready}/{total}", pod_status(o), str(restarts), _since(o["metadata"].get("creationTimestamp"), now),
            st.get("podIP") or "<none>", spec.get("nodeName") or "<none>", st.get("nominatedNodeName") or "<none>",
            "<none>"]


def _deployment(o: Obj, now: datetime) -> Row:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    names, images = _containers(_template(o))
    return [f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}", st.get("updatedReplicas", 0),
            st.get("availableReplicas", 0), _since(o["metadata"].get("creationTimestamp"), now),
            names, images, _selector(spec.get("selector"))]


def _replicaset(o: Obj, now: datetime) -> Row:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    names, images = _containers(_template(o))
    return [spec.get("replicas", 1), st.get("replicas", 0), st.get("readyReplicas", 0),
            _since(o["metadata"].get("creationTimestamp"), now), names, images, _selector(spec.get("selector"))]


def _statefulset(o: Obj, now: datetime) -> Row:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    names, images = _containers(_template(o))
    return [f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            _since(o["metadata"].get("creationTimestamp"), now), names, images]


def _daemonset(o: Obj, now: datetime) -> Row:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    names, images = _containers(_template(o))
    node_sel = ",".join(f"{k}={v}" for k, v in sorted((_template(o).get("nodeSelector") or {}).items()))
    return [st.get("desiredNumberScheduled", 0), st.get("currentNumberScheduled", 0), st.get("numberReady", 0),
            st.get("updatedNumberScheduled", 0), st.get("numberAvailable", 0), node_sel or "<none>",
            _since(o["metadata"].get("creationTimestamp"), now), names, images, _selector(spec.get("selector"))]


def _ports(spec: Obj) -> str:
    out = []
    for p in spec.get("ports") or []:
        text = f"{p.get('port')}"
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        out.append(f"{text}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def _service(o: Obj, now: datetime) -> Row:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    stype = spec.get("type", "ClusterIP")
    external = [i.get("ip") or i.get("hostname") for i in (st.get("loadBalancer") or {}).get("ingress") or []]
    external += spec.get("externalIPs") or []
    if stype == "ExternalName":
        external = [spec.get("externalName", "")]
    ext = ",".join(e for e in external if e) or ("<pending>" if stype == "LoadBalancer" else "<none>")
    sel = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items())) or "<none>"
    return [stype, spec.get("clusterIP") or "<none>", ext, _ports(spec),
            _since(o["metadata"].get("creationTimestamp"), now), sel]


def _configmap(o: Obj, now: datetime) -> Row:
    return [len(o.get("data") or {}) + len(o.get("binaryData") or {}), _since(o["metadata"].get("creationTimestamp"), now)]


def _secret(o: Obj, now: datetime) -> Row:
    return [o.get("type", "Opaque"), len(o.get("data") or {}) + len(o.get("stringData") or {}),
            _since(o["metadata"].get("creationTimestamp"), now)]


def _namespace(o: Obj, now: datetime) -> Row:
    return [(o.get("status") or {}).get("phase", "Active"), _since(o["metadata"].get("creationTimestamp"), now)]


def job_status(o: Obj) -> str:
    """The STATUS column of a Job (kubectl 1.30+)."""
    st = o.get("status") or {}
    conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
    if conds.get("Complete") == "True":
        return "Complete"
    if conds.get("Failed") == "True":
        return "Failed"
    if (o.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    if conds.get("SuccessCriteriaMet") == "True":
        return "SuccessCriteriaMet"
    if conds.get("FailureTarget") == "True":
        return "FailureTarget"
    if conds.get("Suspended") == "True":
        return "Suspended"
    return "Running"


def _job(o: Obj, now: datetime) -> Row:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    completions = spec.get("completions")
    comp = f"{st.get('succeeded', 0)}/{completions}" if completions is not None else f"{st.get('succeeded', 0)}/1 of {spec.get('parallelism', 1)}"
    duration = ""
    if st.get("startTime"):
        start = datetime.fromisoformat(st["startTime"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(st["completionTime"].replace("Z", "+00:00")) if st.get("completionTime") else now
        duration = human_duration((end - start).total_seconds())
    names, images = _containers(_template(o))
    return [job_status(o), comp, duration, _since(o["metadata"].get("creationTimestamp"), now), names, images,
            _selector(spec.get("selector"))]


def _cronjob(o: Obj, now: datetime) -> Row:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    last = st.get("lastScheduleTime")
    return [spec.get("schedule", ""), spec.get("timeZone") or "<none>", str(bool(spec.get("suspend"))),
            len(st.get("active") or []), _since(last, now) if last else "<none>",
            _since(o["metadata"].get("creationTimestamp"), now)]


def _event(o: Obj, now: datetime) -> Row:
    inv = o.get("involvedObject") or {}
    last = o.get("lastTimestamp") or o.get("eventTime") or o["metadata"].get("creationTimestamp")
    first = o.get("firstTimestamp") or o.get("eventTime") or o["metadata"].get("creationTimestamp")
    source = (o.get("source") or {}).get("component") or o.get("reportingComponent") or ""
    obj = f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}"
    return [_since(last, now), o.get("type", ""), o.get("reason", ""), obj, inv.get("fieldPath", ""), source,
            o.get("message", ""), _since(first, now), o.get("count", 1), o["metadata"]["name"]]


def _node(o: Obj, now: datetime) -> Row:
    st = o.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
    roles = sorted(k.split("/", 1)[1] for k in (o["metadata"].get("labels") or {}) if k.startswith("node-role.kubernetes.io/"))
    info = st.get("nodeInfo") or {}
    internal = next((a.get("address") for a in st.get("addresses") or [] if a.get("type") == "InternalIP"), "<none>")
    external = next((a.get("address") for a in st.get("addresses") or [] if a.get("type") == "ExternalIP"), "<none>")
    return ["Ready" if ready else "NotReady", ",".join(roles) or "<none>", _since(o["metadata"].get("creationTimestamp"), now),
            info.get("kubeletVersion", ""), internal, external, info.get("osImage", ""), info.get("kernelVersion", ""),
            info.get("containerRuntimeVersion", "")]


def _hpa(o: Obj, now: datetime) -> Row:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    targets = []
    for m in spec.get("metrics") or []:
        res = m.get("resource") or {}
        target = res.get("target") or {}
        if target.get("averageUtilization") is not None:
            targets.append(f"{res.get('name')}: <unknown>/{target['averageUtilization']}%")
        elif target.get("averageValue") is not None:
            targets.append(f"{res.get('name')}: <unknown>/{target['averageValue']}")
    return [f"{ref.get('kind')}/{ref.get('name')}", ", ".join(targets) or "<none>",
            spec.get("minReplicas", 1), spec.get("maxReplicas", 0), st.get("currentReplicas", 0),
            _since(o["metadata"].get("creationTimestamp"), now)]


def _ingress(o: Obj, now: datetime) -> Row:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    hosts = [r.get("host") for r in spec.get("rules") or [] if r.get("host")]
    address = [i.get("ip") or i.get("hostname") for i in (st.get("loadBalancer") or {}).get("ingress") or []]
    ports = "80, 443" if spec.get("tls") else "80"
    return [spec.get("ingressClassName") or "<none>", ",".join(hosts) or "*", ",".join(a for a in address if a),
            ports, _since(o["metadata"].get("creationTimestamp"), now)]


def _pvc(o: Obj, now: datetime) -> Row:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    modes = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}
    access = ",".join(modes.get(m, m) for m in st.get("accessModes") or [])
    return [st.get("phase", "Pending"), spec.get("volumeName", ""), (st.get("capacity") or {}).get("storage", ""),
            access, spec.get("storageClassName") or "<unset>", spec.get("volumeAttributesClassName") or "<unset>",
            _since(o["metadata"].get("creationTimestamp"), now), spec.get("volumeMode", "Filesystem")]


def _serviceaccount(o: Obj, now: datetime) -> Row:
    return [len(o.get("secrets") or []), _since(o["metadata"].get("creationTimestamp"), now)]


def _plain(o: Obj, now: datetime) -> Row:
    return [_since(o["metadata"].get("creationTimestamp"), now)]


_PRINTERS: dict[str, tuple[list[dict[str, Any]], Callable[[Obj, datetime], Row]]] = {
    "pods": ([_col("Ready", desc="The aggregate readiness state of this pod for accepting traffic."),
              _col("Status", desc="The aggregate status of the containers in this pod."),
              _col("Restarts", desc="The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
              _AGE, _col("IP", priority=1, desc="IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
              _col("Node", priority=1, desc="NodeName is a request to schedule this pod onto a specific node."),
              _col("Nominated Node", priority=1, desc="nominatedNodeName is set only when this pod preempts other pods on the node."),
              _col("Readiness Gates", priority=1, desc="If specified, all readiness gates will be evaluated for pod readiness.")], _pod),
    "deployments.apps": ([_col("Ready", desc="Number of the pod with ready state"),
                          _col("Up-to-date", "integer", desc="Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
                          _col("Available", "integer", desc="Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
                          _AGE, _col("Containers", priority=1, desc="Names of each container in the template."),
                          _col("Images", priority=1, desc="Images referenced by each container in the template."),
                          _col("Selector", priority=1, desc="Label selector for pods.")], _deployment),
    "replicasets.apps": ([_col("Desired", "integer", desc="Replicas is the number of desired replicas."),
                          _col("Current", "integer", desc="Replicas is the most recently observed number of replicas."),
                          _col("Ready", "integer", desc="The number of ready replicas for this replica set."),
                          _AGE, _col("Containers", priority=1, desc="Names of each container in the template."),
                          _col("Images", priority=1, desc="Images referenced by each container in the template."),
                          _col("Selector", priority=1, desc="Label selector for pods.")], _replicaset),
    "statefulsets.apps": ([_col("Ready", desc="Number of the pod with ready state"), _AGE,
                           _col("Containers", priority=1, desc="Names of each container in the template."),
                           _col("Images", priority=1, desc="Images referenced by each container in the template.")], _statefulset),
    "daemonsets.apps": ([_col("Desired", "integer", desc="The total number of nodes that should be running the daemon pod."),
                         _col("Current", "integer", desc="The number of nodes that are running at least 1 daemon pod."),
                         _col("Ready", "integer", desc="The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
                         _col("Up-to-date", "integer", desc="The total number of nodes that are running updated daemon pod"),
                         _col("Available", "integer", desc="The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."),
                         _col("Node Selector", desc="NodeSelector is a selector which must be true for the pod to fit on a node."),
                         _AGE, _col("Containers", priority=1, desc="Names of each container in the template."),
                         _col("Images", priority=1, desc="Images referenced by each container in the template."),
                         _col("Selector", priority=1, desc="A label query over pods that are managed by the daemon set.")], _daemonset),
    "services": ([_col("Type", desc="type determines how the Service is exposed."),
                  _col("Cluster-IP", desc="clusterIP is the IP address of the service."),
                  _col("External-IP", desc="externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
                  _col("Port(s)", desc="The list of ports that are exposed by this service."),
                  _AGE, _col("Selector", priority=1, desc="Route service traffic to pods with label keys and values matching this selector.")], _service),
    "nodes": ([_col("Status", desc="The status of the node"), _col("Roles", desc="The roles of the node"), _AGE,
               _col("Version", desc="Kubelet Version reported by the node."),
               _col("Internal-IP", priority=1, desc="List of addresses reachable to the node. Queried from cloud provider, if available."),
               _col("External-IP", priority=1, desc="List of addresses reachable to the node. Queried from cloud provider, if available."),
               _col("OS-Image", priority=1, desc="OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
               _col("Kernel-Version", priority=1, desc="Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
               _col("Container-Runtime", priority=1, desc="ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).")], _node),
    "horizontalpodautoscalers.autoscaling": ([
        _col("Reference", desc="reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource."),
        _col("Targets", desc="metrics contains the specifications for which to use to calculate the desired replica count."),
        _col("MinPods", "integer", desc="minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down."),
        _col("MaxPods", "integer", desc="maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up."),
        _col("Replicas", "integer", desc="currentReplicas is current number of replicas of pods managed by this autoscaler."),
        _AGE], _hpa),
    "ingresses.networking.k8s.io": ([
        _col("Class", desc="ingressClassName is the name of an IngressClass cluster resource."),
        _col("Hosts", desc="Hosts that incoming requests are matched against before the ingress rule"),
        _col("Address", desc="Address is a list containing ingress points for the load-balancer"),
        _col("Ports", desc="Ports of TLS configurations that open"), _AGE], _ingress),
    "persistentvolumeclaims": ([
        _col("Status", desc="phase represents the current phase of PersistentVolumeClaim."),
        _col("Volume", desc="volumeName is the binding reference to the PersistentVolume backing this claim."),
        _col("Capacity", desc="capacity represents the actual resources of the underlying volume."),
        _col("Access Modes", desc="accessModes contains the actual access modes the volume backing the PVC has."),
        _col("StorageClass", desc="storageClassName is the name of the StorageClass required by the claim."),
        _col("VolumeAttributesClass", desc="volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim."),
        _AGE, _col("VolumeMode", priority=1, desc="volumeMode defines what type of volume is required by the claim.")], _pvc),
    "serviceaccounts": ([_col("Secrets", "integer", desc="Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
                         _AGE], _serviceaccount),
    "configmaps": ([_col("Data", "integer", desc="Data contains the configuration data."), _AGE], _configmap),
    "secrets": ([_col("Type", desc="Used to facilitate programmatic handling of secret data."),
                 _col("Data", "integer", desc="Data contains the secret data."), _AGE], _secret),
    "namespaces": ([_col("Status", desc="The status of the namespace"), _AGE], _namespace),
    "jobs.batch": ([_col("Status", desc="Status of the job."),
                    _col("Completions", desc="The desired number of successfully finished pods the job should be run with."),
                    _col("Duration", desc="Time required to complete the job."), _AGE,
                    _col("Containers", priority=1, desc="Names of each container in the template."),
                    _col("Images", priority=1, desc="Images referenced by each container in the template."),
                    _col("Selector", priority=1, desc="A label query over pods that should match the pod count.")], _job),
    "cronjobs.batch": ([_col("Schedule", desc="The schedule in Cron format."),
                        _col("Timezone", desc="The time zone name for the given schedule."),
                        _col("Suspend", "boolean", desc="This flag tells the controller to suspend subsequent executions."),
                        _col("Active", "integer", desc="A list of pointers to currently running jobs."),
                        _col("Last Schedule", desc="Information when was the last time the job was successfully scheduled."),
                        _AGE], _cronjob),
    "events": ([_col("Last Seen", desc="The time at which the most recent occurrence of this event was recorded."),
                _col("Type", desc="Type of this event (Normal, Warning)."),
                _col("Reason", desc="This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
                _col("Object", desc="The object that this event is about."),
                _col("Subobject", priority=1, desc="The field of the object that this event is about."),
                _col("Source", priority=1, desc="The component reporting this event."),
                _col("Message", desc="A human-readable description of the status of this operation."),
                _col("First Seen", priority=1, desc="The time at which the event was first recorded."),
                _col("Count", "integer", priority=1, desc="The number of times this event has occurred."),
                _col("Name", priority=1, desc="Name of the event.")], _event),
}


# -- custom resources ------------------------------------------------------------------

_SEGMENT = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*[\"']([^\"']*)[\"']\)\]")


def json_path(obj: Any, path: str) -> list[Any]:
    """A CRD printer column's JSONPath: ``.a.b``, ``[0]``, ``[*]``, ``[?(@.type=="Ready")]``."""
    values = [obj]
    pos = 0
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    while pos < len(path):
        m = _SEGMENT.match(path, pos)
        if m is None:
            return []
        pos = m.end()
        nxt: list[Any] = []
        for v in values:
            if m.group(1) is not None:
                if isinstance(v, dict) and m.group(1) in v:
                    nxt.append(v[m.group(1)])
            elif m.group(2) is not None:
                if isinstance(v, list):
                    if m.group(2) == "*":
                        nxt.extend(v)
                    elif int(m.group(2)) < len(v):
                        nxt.append(v[int(m.group(2))])
            elif isinstance(v, list):
                field, want = m.group(3), m.group(4)
                for item in v:
                    got = json_path(item, "." + field)
                    if got and str(got[0]) == want:
                        nxt.append(item)
        values = nxt
    return values


def _crd_cell(obj: Obj, column: dict[str, Any], now: datetime) -> Any:
    found = json_path(obj, column.get("jsonPath", ""))
    if not found:
        return None
    value = found[0] if len(found) == 1 else ",".join(str(v) for v in found)
    ctype = column.get("type", "string")
    if ctype == "date" and isinstance(value, str):
        return _since(value, now)  # the server turns dates into ages, as for built-ins
    if ctype == "integer" and isinstance(value, int | float):
        return int(value)
    if ctype == "number" and isinstance(value, int | float):
        return value
    if ctype == "boolean" and isinstance(value, bool):
        return value
    return value if isinstance(value, str) else str(value)


def _crd_columns(columns: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    defs = [_NAME]
    for c in columns:
        defs.append(_col(c.get("name", ""), c.get("type", "string"), int(c.get("priority", 0)), c.get("format", ""),
                         c.get("description", "")))
    if not columns:
        defs.append(_col("Age", "date", desc=_AGE["description"]))
        columns = [{"jsonPath": ".metadata.creationTimestamp", "type": "date"}]
    return defs, columns


# -- the Table ----------------------------------------------------------------------------

def to_table(rt: ResourceType, body: Obj, version: str, include: str,
             crd_columns: list[dict[str, Any]] | None, now: datetime | None = None) -> Obj:
    """A list or single-object reply turned into a Table; ``include`` is None, Metadata or Object."""
    now = now or datetime.now(UTC)
    items = body.get("items") if body.get("kind", "").endswith("List") and "items" in body else [body]
    if rt.crd:
        defs, columns = _crd_columns(crd_columns or [])

        def cells(o: Obj) -> Row:
            return [_crd_cell(o, c, now) for c in columns]
    else:
        extra, printer = _PRINTERS.get(rt.key, ([_AGE], _plain))
        defs = [_NAME, *extra]

        def cells(o: Obj) -> Row:
            return printer(o, now)

    rows = []
    for o in items or []:
        row: Obj = {"cells": [o["metadata"].get("name", ""), *cells(o)]} if rt.key != "events" else \
            {"cells": cells(o)}
        if include == "Object":
            row["object"] = o
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": version, "metadata": o["metadata"]}
        rows.append(row)
    if rt.key == "events":
        defs = _PRINTERS["events"][0]
    meta = {k: v for k, v in (body.get("metadata") or {}).items()
            if k in ("resourceVersion", "continue", "remainingItemCount")} if "items" in body else \
        {"resourceVersion": (body.get("metadata") or {}).get("resourceVersion", "")}
    return {"kind": "Table", "apiVersion": version, "metadata": meta, "columnDefinitions": defs, "rows": rows}
