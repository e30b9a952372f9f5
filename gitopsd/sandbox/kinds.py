"""Resource types the sandbox serves: the built-in table, CRD-defined types, discovery documents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ResourceType:
    """One served resource (``plural.group``) in one version."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: bool = False
    scale: bool = False
    singular: str = ""
    crd: bool = False
    # For custom resources: the CRD scale subresource paths.
    scale_paths: tuple[str, str, str] | None = None
    extra_fields: frozenset[str] = field(default_factory=frozenset)

    @property
    def api_version(self) -> str:
        """``group/version`` or ``v1`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """Storage key: ``plural.group`` (``plural`` for core), the same in every version."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def discovery(self) -> list[dict[str, Any]]:
        """APIResource entries for this type and its subresources."""
        entry: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular or self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": VERBS,
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        out = [entry]
        if self.status:
            out.append(
                {"name": f"{self.plural}/status", "singularName": "", "namespaced": self.namespaced,
                 "kind": self.kind, "verbs": ["get", "patch", "update"]}
            )
        if self.key == "pods":
            out += [{"name": f"pods/{sub}", "singularName": "", "namespaced": True, "kind": kind,
                     "verbs": verbs} for sub, kind, verbs in (
                ("attach", "PodAttachOptions", ["create", "get"]), ("exec", "PodExecOptions", ["create", "get"]),
                ("log", "Pod", ["get"]), ("portforward", "PodPortForwardOptions", ["create", "get"]))]
        if self.scale:
            out.append(
                {"name": f"{self.plural}/scale", "singularName": "", "namespaced": self.namespaced,
                 "group": "autoscaling", "version": "v1", "kind": "Scale",
                 "verbs": ["get", "patch", "update"]}
            )
        return out


_COMMON = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})


def _t(
    gv: str,
    kind: str,
    plural: str,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    cats: tuple[str, ...] = (),
    status: bool = True,
    scale: bool = False,
    extra: tuple[str, ...] = (),
) -> ResourceType:
    group, _, version = gv.rpartition("/")
    return ResourceType(
        group=group, version=version, kind=kind, plural=plural, namespaced=namespaced,
        short_names=short, categories=cats, status=status, scale=scale,
        extra_fields=_COMMON | frozenset(extra),
    )


BUILTIN: tuple[ResourceType, ...] = (
    _t("v1", "Namespace", "namespaces", False, ("ns",)),
    _t("v1", "ConfigMap", "configmaps", True, ("cm",), status=False, extra=("data", "binaryData", "immutable")),
    _t("v1", "Secret", "secrets", True, status=False, extra=("data", "stringData", "type", "immutable")),
    _t("v1", "ServiceAccount", "serviceaccounts", True, ("sa",), status=False,
       extra=("secrets", "imagePullSecrets", "automountServiceAccountToken")),
    _t("v1", "Service", "services", True, ("svc",), ("all",)),
    _t("v1", "Endpoints", "endpoints", True, ("ep",), status=False, extra=("subsets",)),
    _t("v1", "Pod", "pods", True, ("po",), ("all",)),
    _t("v1", "Node", "nodes", False, ("no",)),
    _t("v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ("pvc",)),
    _t("v1", "PersistentVolume", "persistentvolumes", False, ("pv",)),
    _t("v1", "ResourceQuota", "resourcequotas", True, ("quota",)),
    _t("v1", "LimitRange", "limitranges", True, ("limits",), status=False),
    _t("v1", "Event", "events", True, ("ev",), status=False,
       extra=("involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp",
              "count", "type", "eventTime", "series", "action", "related", "reportingComponent",
              "reportingInstance")),
    _t("apps/v1", "Deployment", "deployments", True, ("deploy",), ("all",), scale=True),
    _t("apps/v1", "ReplicaSet", "replicasets", True, ("rs",), ("all",), scale=True),
    _t("apps/v1", "StatefulSet", "statefulsets", True, ("sts",), ("all",), scale=True),
    _t("apps/v1", "DaemonSet", "daemonsets", True, ("ds",), ("all",)),
    _t("apps/v1", "ControllerRevision", "controllerrevisions", True, status=False, extra=("data", "revision")),
    _t("batch/v1", "Job", "jobs", True, (), ("all",)),
    _t("batch/v1", "CronJob", "cronjobs", True, ("cj",), ("all",)),
    _t("networking.k8s.io/v1", "Ingress", "ingresses", True, ("ing",)),
    _t("networking.k8s.io/v1", "IngressClass", "ingressclasses", False, status=False),
    _t("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", True, ("netpol",), status=False),
    _t("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True, ("hpa",), ("all",)),
    _t("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ("pdb",)),
    _t("scheduling.k8s.io/v1", "PriorityClass", "priorityclasses", False, ("pc",), status=False,
       extra=("value", "globalDefault", "description", "preemptionPolicy")),
    _t("rbac.authorization.k8s.io/v1", "Role", "roles", True, status=False, extra=("rules",)),
    _t("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", True, status=False,
       extra=("roleRef", "subjects")),
    _t("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False, status=False,
       extra=("rules", "aggregationRule")),
    _t("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False, status=False,
       extra=("roleRef", "subjects")),
    _t("storage.k8s.io/v1", "StorageClass", "storageclasses", False, ("sc",), status=False,
       extra=("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode",
              "allowVolumeExpansion", "mountOptions", "allowedTopologies")),
    _t("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False,
       ("crd", "crds")),
    _t("coordination.k8s.io/v1", "Lease", "leases", True, status=False),
)

# Preferred version per group, in discovery order (core first).
GROUP_ORDER = [
    "", "apps", "batch", "networking.k8s.io", "autoscaling", "policy", "scheduling.k8s.io",
    "rbac.authorization.k8s.io", "storage.k8s.io", "apiextensions.k8s.io", "coordination.k8s.io",
]


class Registry:
    """All served types: built-ins plus those added by Established CRDs.

    Lookups by ``(group, version, plural)`` for REST routing and by
    ``(group, kind)`` for objects.
    """

    def __init__(self) -> None:
        self._by_path: dict[tuple[str, str, str], ResourceType] = {}
        self._groups: dict[str, list[str]] = {}
        self._crd_types: dict[str, list[ResourceType]] = {}
        self._crd_versions: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.generation = 0
        """Bumped whenever the served types change (OpenAPI documents are cached per generation)."""
        for rt in BUILTIN:
            self._add(rt)

    def _add(self, rt: ResourceType) -> None:
        self._by_path[(rt.group, rt.version, rt.plural)] = rt
        versions = self._groups.setdefault(rt.group, [])
        if rt.version not in versions:
            versions.append(rt.version)

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The type served at ``/apis/group/version/plural``, if any."""
        return self._by_path.get((group, version, plural))

    def by_key(self, key: str) -> list[ResourceType]:
        """Every version served under the storage key ``plural.group``."""
        return [rt for rt in self._by_path.values() if rt.key == key]

    def has_group_version(self, group: str, version: str) -> bool:
        """Whether ``group/version`` is served."""
        return version in self._groups.get(group, [])

    def groups(self) -> list[str]:
        """Served API groups, built-ins in the usual order, CRD groups after."""
        named = [g for g in GROUP_ORDER if g in self._groups]
        return named + sorted(g for g in self._groups if g not in GROUP_ORDER)

    def versions(self, group: str) -> list[str]:
        """Served versions of a group, preferred first."""
        return list(self._groups.get(group, []))

    def types_in(self, group: str, version: str) -> list[ResourceType]:
        """Types served in one group version."""
        return [rt for (g, v, _), rt in self._by_path.items() if g == group and v == version]

    def all_keys(self) -> list[str]:
        """Distinct storage keys."""
        return sorted({rt.key for rt in self._by_path.values()})

    # -- CRDs ---------------------------------------------------------------
    def add_crd(self, crd: dict[str, Any]) -> list[ResourceType]:
        """Serve the types a CRD defines; returns them. Replaces an earlier definition."""
        name = crd["metadata"]["name"]
        self.remove_crd(name)
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        group = spec.get("group", "")
        namespaced = spec.get("scope", "Namespaced") == "Namespaced"
        added: list[ResourceType] = []
        versions = [v for v in spec.get("versions") or [] if v.get("served", True)]
        # Storage version first so it is the preferred one.
        versions.sort(key=lambda v: not v.get("storage", False))
        for v in versions:
            sub = v.get("subresources") or {}
            scale = sub.get("scale")
            rt = ResourceType(
                group=group, version=v["name"], kind=names.get("kind", ""),
                plural=names.get("plural", ""), namespaced=namespaced,
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status="status" in sub, scale=scale is not None,
                singular=names.get("singular", ""), crd=True,
                scale_paths=(
                    (scale.get("specReplicasPath", ".spec.replicas"),
                     scale.get("statusReplicasPath", ".status.replicas"),
                     scale.get("labelSelectorPath") or "")
                    if scale else None
                ),
            )
            self._add(rt)
            self._crd_versions[(group, v["name"], rt.plural)] = v
            added.append(rt)
        self._crd_types[name] = added
        self.generation += 1
        return added

    def remove_crd(self, name: str) -> list[ResourceType]:
        """Stop serving a CRD's types; returns them."""
        removed = self._crd_types.pop(name, [])
        if removed:
            self.generation += 1
        for rt in removed:
            self._by_path.pop((rt.group, rt.version, rt.plural), None)
            self._crd_versions.pop((rt.group, rt.version, rt.plural), None)
            versions = self._groups.get(rt.group, [])
            if rt.version in versions and not any(
                g == rt.group and v == rt.version for (g, v, _) in self._by_path
            ):
                versions.remove(rt.version)
            if not versions:
                self._groups.pop(rt.group, None)
        return removed

    def crd_version(self, rt: ResourceType) -> dict[str, Any] | None:
        """The CRD's ``spec.versions[]`` entry a custom resource type was served from."""
        return self._crd_versions.get((rt.group, rt.version, rt.plural))

    # -- discovery documents -------------------------------------------------
    def api_versions(self) -> dict[str, Any]:
        """``/api``."""
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
        }

    def api_group(self, group: str) -> dict[str, Any]:
        """``/apis/{group}`` (APIGroup)."""
        versions = self.versions(group)
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": gvs,
            "preferredVersion": gvs[0],
        }

    def api_group_list(self) -> dict[str, Any]:
        """``/apis`` (APIGroupList)."""
        groups = []
        for g in self.groups():
            if not g:
                continue
            doc = self.api_group(g)
            del doc["kind"], doc["apiVersion"]
            groups.append(doc)
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def resource_list(self, group: str, version: str) -> dict[str, Any]:
        """``/api/v1`` or ``/apis/{group}/{version}`` (APIResourceList)."""
        resources: list[dict[str, Any]] = []
        for rt in sorted(self.types_in(group, version), key=lambda r: r.plural):
            resources.extend(rt.discovery())
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }
