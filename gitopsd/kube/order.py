"""Apply order: a bootstrap step (CRDs, Namespaces, then the kinds Helm installs first), then sync waves.

Steps, applied one after the other (objects within a step concurrently):

1. ``CustomResourceDefinition`` and ``Namespace`` (and ``PriorityClass``): waited for
   (CRDs Established, Namespaces Active) before anything else.
2. The other kinds Helm installs early (NetworkPolicy ... RBAC), whatever their wave.
3. Everything else by sync wave (``gitopsd.dev/sync-wave``, else
   ``argocd.argoproj.io/sync-wave``; default 0, negatives allowed), lower first; each
   wave is healthy before the next starts.

Within a step objects are sorted by Helm's install order, then custom resources, then
namespace and name, so results and logs are stable. Prune uses the reverse order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gitopsd.core.models import Manifest

WAVE_ANNOTATIONS = ("gitopsd.dev/sync-wave", "argocd.argoproj.io/sync-wave")

HELM_INSTALL_ORDER = [
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
]
_RANK = {kind: i for i, kind in enumerate(HELM_INSTALL_ORDER)}

FOUNDATION_KINDS = frozenset({"CustomResourceDefinition", "Namespace", "PriorityClass"})
EARLY_KINDS = frozenset(HELM_INSTALL_ORDER[: _RANK["RoleBindingList"] + 1]) - FOUNDATION_KINDS


@dataclass
class Step:
    """Objects applied together; ``wait`` says whether they must be healthy before the next step."""

    name: str
    objects: list[Manifest] = field(default_factory=list)
    wait: bool = True


def kind_rank(kind: str) -> int:
    """Helm install rank; custom resources after every built-in kind."""
    return _RANK.get(kind, len(HELM_INSTALL_ORDER))


def wave_of(obj: Manifest) -> int:
    """The object's sync wave (0 when not annotated or not an integer)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    for key in WAVE_ANNOTATIONS:
        if key in annotations:
            try:
                return int(str(annotations[key]).strip())
            except ValueError:
                return 0
    return 0


def sort_key(obj: Manifest) -> tuple[int, str, str, str]:
    meta = obj.get("metadata") or {}
    return (
        kind_rank(str(obj.get("kind", ""))),
        str(obj.get("kind", "")),
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
    )


def plan_steps(objects: list[Manifest]) -> list[Step]:
    """Split ``objects`` into ordered steps (empty steps left out)."""
    foundation = Step("foundation")
    early = Step("early", wait=False)  # e.g. a PVC that binds on first consumer must not block
    waves: dict[int, Step] = {}
    for obj in objects:
        kind = str(obj.get("kind", ""))
        if kind in FOUNDATION_KINDS:
            foundation.objects.append(obj)
        elif kind in EARLY_KINDS:
            early.objects.append(obj)
        else:
            wave = wave_of(obj)
            waves.setdefault(wave, Step(f"wave {wave}")).objects.append(obj)
    steps = [foundation, early, *(waves[w] for w in sorted(waves))]
    for step in steps:
        step.objects.sort(key=sort_key)
    return [s for s in steps if s.objects]


def prune_groups(objects: list[Manifest]) -> list[list[Manifest]]:
    """Objects to delete, grouped by kind, in reverse install order (custom resources first, CRDs last)."""
    groups: dict[tuple[int, str], list[Manifest]] = {}
    for obj in objects:
        kind = str(obj.get("kind", ""))
        rank = kind_rank(kind)
        if kind == "CustomResourceDefinition":
            rank = -1  # after their custom resources and everything else
        elif kind == "Namespace":
            rank = -2
        groups.setdefault((rank, kind), []).append(obj)
    return [groups[k] for k in sorted(groups, reverse=True)]
