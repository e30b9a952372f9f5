"""Which lists are maps keyed by some fields, which are sets, and which are atomic.

Strategic merge patch and server-side apply both need this. Built-in types use
the merge keys of the real schemas; custom resources treat every list as atomic
(a CRD list without list-type markers), except in ``metadata``.
"""

from __future__ import annotations

_CONTAINERS = {"containers", "initContainers", "ephemeralContainers"}
_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "conditions": ("type",),
    "hostAliases": ("ip",),
    "topologySpreadConstraints": ("topologyKey",),
    "ownerReferences": ("uid",),
}
_SETS = {"finalizers"}


def list_type(names: tuple[str, ...], crd: bool = False) -> tuple[str, ...] | str | None:
    """Merge keys for the list at field path ``names``, ``"set"``, or ``None`` (atomic)."""
    if not names:
        return None
    field = names[-1]
    in_metadata = len(names) == 2 and names[0] == "metadata"
    if crd and not in_metadata:
        return None
    if field in _SETS and (in_metadata or names[-2:] == ("spec", "finalizers")):
        return "set"
    if field == "ports":
        return ("containerPort",) if any(n in _CONTAINERS for n in names) else ("port",)
    return _KEYS.get(field)
