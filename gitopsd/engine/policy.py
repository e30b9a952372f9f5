"""Tenancy policies: which objects an app's render may hold (pure: no I/O, no cluster).

A ``[policies.NAME]`` table (:class:`gitopsd.plugin.config.PolicyConfig`) limits the apps that
use it. The Kubernetes layer calls :func:`violations` on every prepared render before any
request that changes something; a render with violations fails as a whole, naming each
offending object and the rule it breaks. Rules, in the order they are checked:

1. ``deny_kinds``: the kind is refused anywhere;
2. a cluster-scoped object must be in ``cluster_kinds``, except the app's own Namespace
   (``metadata.name`` equal to the app's ``namespace``), allowed when it matches ``namespaces``;
3. a namespaced object's namespace must match one of the ``namespaces`` globs.

Kinds are written ``"Kind"`` (any API group) or ``"group/Kind"`` (``"/Kind"`` or ``"Kind"`` for
the core group).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import NamedTuple

from gitopsd.core.models import ObjectRef
from gitopsd.plugin.config import AppConfig, Config, PolicyConfig


class Candidate(NamedTuple):
    """One object of a render as the policy sees it."""

    ref: ObjectRef
    namespaced: bool


class Violation(NamedTuple):
    """One object that breaks one rule of the app's policy."""

    ref: ObjectRef
    policy: str
    rule: str  # "deny_kinds", "cluster_kinds" or "namespaces"
    message: str

    def __str__(self) -> str:
        return f"{self.ref}: {self.message}"


def kind_matches(pattern: str, group: str, kind: str) -> bool:
    """Whether ``"Kind"`` / ``"group/Kind"`` names ``group``'s ``kind``."""
    want_group, slash, want_kind = pattern.rpartition("/")
    if want_kind != kind:
        return False
    return not slash or want_group == group


def namespace_allowed(rules: PolicyConfig, namespace: str) -> bool:
    """Whether ``namespace`` matches one of the policy's ``namespaces`` globs."""
    return any(fnmatchcase(namespace, glob) for glob in rules.namespaces)


def violations(app: AppConfig, objects: list[Candidate]) -> list[Violation]:
    """Every rule of the app's policy that ``objects`` break (empty without a policy)."""
    effective = app.effective_policy
    if effective is None:
        return []
    name, rules = effective
    out: list[Violation] = []
    for obj in objects:
        ref = obj.ref
        denied = next((p for p in rules.deny_kinds if kind_matches(p, ref.group, ref.kind)), None)
        if denied is not None:
            out.append(Violation(ref, name, "deny_kinds", f"kind {denied} is denied by policy {name} (deny_kinds)"))
            continue
        if not obj.namespaced:
            if any(kind_matches(p, ref.group, ref.kind) for p in rules.cluster_kinds):
                continue
            own_namespace = ref.group == "" and ref.kind == "Namespace" and ref.name == app.namespace
            if own_namespace and namespace_allowed(rules, ref.name):
                continue
            kind = f"{ref.group}/{ref.kind}" if ref.group else ref.kind
            out.append(
                Violation(
                    ref,
                    name,
                    "cluster_kinds",
                    f"cluster-scoped kind {kind} is not allowed by policy {name} (cluster_kinds: {_listed(rules.cluster_kinds)})",
                )
            )
            continue
        if not namespace_allowed(rules, ref.namespace):
            out.append(
                Violation(
                    ref,
                    name,
                    "namespaces",
                    f"namespace {ref.namespace!r} is not allowed by policy {name} (namespaces: {_listed(rules.namespaces)})",
                )
            )
    return out


def config_warnings(config: Config) -> list[str]:
    """What ``gitopsd check`` warns about without rendering anything.

    Apps that run unrestricted, an app namespace its policy refuses, and apps of one cluster
    with the same source, renderer and namespace (they render the same objects: the one that
    syncs second fails with SharedResource).
    """
    out = []
    by_target: dict[tuple[str, str], list[str]] = {}
    for name, app in config.apps.items():
        by_target.setdefault((app.cluster, app.namespace), []).append(name)
    for names in by_target.values():
        if len(names) < 2:
            continue  # alone in its namespace: no need to compare (repr) its source and render
        seen: dict[tuple[str, str], str] = {}
        for name in names:
            app = config.apps[name]
            first = seen.setdefault((repr(app.source), repr(app.render)), name)
            if first != name:
                out.append(
                    f"apps.{name}: renders the same objects as apps.{first} into cluster {app.cluster} "
                    "(same source, render and namespace): only one of them can own them (SharedResource)"
                )
    for name, app in config.apps.items():
        effective = app.effective_policy
        if effective is None:
            out.append(
                f"apps.{name}: no policy: the app may change any object in cluster {app.cluster} with the "
                "daemon's credentials (set policy, or daemon.default_policy)"
            )
            continue
        policy, rules = effective
        if not namespace_allowed(rules, app.namespace):
            out.append(
                f"apps.{name}.namespace: {app.namespace!r} is not allowed by policy {policy} "
                f"(namespaces: {_listed(rules.namespaces)}): every namespaced object will be refused"
            )
    return out


def _listed(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]" if items else "none"
