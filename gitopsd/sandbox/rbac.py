"""Impersonation, RBAC authorization and access reviews, as the real API server does them.

The sandbox's bearer token is an administrator (group ``system:masters``): its own requests
are never checked, and it may impersonate anyone. A request it sends with
``Impersonate-User`` (and any ``Impersonate-Group`` headers) is authorized as that user,
by the RBAC objects in the store:

- ``ClusterRoleBinding`` -> ``ClusterRole``: rules everywhere;
- ``RoleBinding`` in the request's namespace -> ``Role`` (same namespace) or ``ClusterRole``:
  rules in that namespace only;
- subjects ``User``, ``Group`` and ``ServiceAccount``; rules with ``verbs``, ``apiGroups``,
  ``resources`` (``"*"``, ``"res/sub"``, ``"*/sub"``), ``resourceNames`` and
  ``nonResourceURLs`` (exact, or a prefix ending in ``*``).

Built in, like the defaults of a real cluster: the group ``system:masters`` may do anything;
every authenticated user may read discovery, ``/version`` and health paths and create
``SelfSubjectAccessReviews``. ClusterRole aggregation is not implemented.

A server-side apply that creates its object needs ``create`` as well as ``patch``, as in
Kubernetes. Denials are 403 ``Forbidden`` with the real server's wording, e.g.
``configmaps "web" is forbidden: User "alice" cannot patch resource "configmaps" in API group
"" in the namespace "team-a"``.

Access reviews (``authorization.k8s.io/v1``, POST): ``selfsubjectaccessreviews`` (the caller,
impersonated or not: ``kubectl auth can-i --as alice``), ``subjectaccessreviews`` and
``namespaces/NS/localsubjectaccessreviews`` (any user given in the spec; the caller needs
``create`` on them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .status import ApiError, bad_request
from .store import Store
from .validation import forbidden

ADMIN = "sandbox-admin"
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
_RBAC = "rbac.authorization.k8s.io"
_KEYS = {kind: f"{plural}.{_RBAC}" for kind, plural in (
    ("Role", "roles"), ("ClusterRole", "clusterroles"),
    ("RoleBinding", "rolebindings"), ("ClusterRoleBinding", "clusterrolebindings"),
)}
_RBAC_KEYS = frozenset(_KEYS.values())
_MAX_DECISIONS = 10_000
_PUBLIC_PATHS = ("/api", "/api/*", "/apis", "/apis/*", "/version", "/version/*", "/healthz", "/healthz/*",
                 "/livez", "/livez/*", "/readyz", "/readyz/*", "/openapi/*")
_AUTHZ_GROUP = "authorization.k8s.io"
_REVIEWS = {
    "selfsubjectaccessreviews": "SelfSubjectAccessReview",
    "subjectaccessreviews": "SubjectAccessReview",
    "localsubjectaccessreviews": "LocalSubjectAccessReview",
}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request acts as."""

    user: str
    groups: tuple[str, ...]
    impersonated: bool = False


@dataclass(frozen=True, slots=True)
class Attributes:
    """What a request does, as RBAC sees it (Kubernetes' authorizer.Attributes)."""

    verb: str
    resource_request: bool = True
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


ADMIN_IDENTITY = Identity(ADMIN, (MASTERS, AUTHENTICATED))


def identity(headers: Mapping[str, str] | Any) -> Identity:
    """The admin, or the user it impersonates (``Impersonate-User``/``-Group`` headers).

    Raises a 400 ApiError for groups without a user, as the real server does.
    """
    user = headers.get("Impersonate-User", "")
    groups = headers.getall("Impersonate-Group", []) if hasattr(headers, "getall") else []
    if not user:
        if groups:
            raise bad_request("requested impersonation of groups without impersonating a user")
        return ADMIN_IDENTITY
    implied = [AUTHENTICATED]
    if user.startswith("system:serviceaccount:") and not groups:
        namespace = user.split(":")[2]
        implied += ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
    return Identity(user, tuple(dict.fromkeys([*groups, *implied])), impersonated=True)


def _match(value: str, allowed: Iterable[str]) -> bool:
    allowed = list(allowed or [])
    return "*" in allowed or value in allowed


def _resource_matches(rule: Mapping[str, Any], resource: str, sub: str) -> bool:
    combined = f"{resource}/{sub}" if sub else resource
    for wanted in rule.get("resources") or []:
        if wanted in ("*", combined) or (sub and wanted == f"*/{sub}"):
            return True
    return False


def rule_allows(rule: Mapping[str, Any], attrs: Attributes) -> bool:
    """Whether one PolicyRule allows ``attrs``."""
    if not _match(attrs.verb, rule.get("verbs") or []):
        return False
    if not attrs.resource_request:
        for url in rule.get("nonResourceURLs") or []:
            if url == "*" or url == attrs.path or (url.endswith("*") and attrs.path.startswith(url[:-1])):
                return True
        return False
    if not _match(attrs.api_group, rule.get("apiGroups") or []):
        return False
    if not _resource_matches(rule, attrs.resource, attrs.subresource):
        return False
    names = rule.get("resourceNames") or []
    return not names or (bool(attrs.name) and attrs.name in names)


_BUILT_IN: list[dict[str, Any]] = [
    {"verbs": ["get"], "nonResourceURLs": list(_PUBLIC_PATHS)},
    {"verbs": ["create"], "apiGroups": [_AUTHZ_GROUP], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]},
]


class Authorizer:
    """RBAC over the sandbox's store."""

    def __init__(self, store: Store):
        self.store = store
        self._decisions: dict[tuple[Identity, Attributes], bool] = {}
        """Decisions so far; forgotten whenever a Role, ClusterRole or binding changes."""
        store.add_listener(self._changed)

    def _changed(self, key: str, _type: str, _obj: Any, _old: Any) -> None:
        if key in _RBAC_KEYS:
            self._decisions.clear()

    def _subject_matches(self, who: Identity, subject: Mapping[str, Any], binding_ns: str) -> bool:
        kind, name = subject.get("kind"), subject.get("name")
        if kind == "User":
            return bool(name == who.user)
        if kind == "Group":
            return name in who.groups
        if kind == "ServiceAccount":
            return who.user == f"system:serviceaccount:{subject.get('namespace') or binding_ns}:{name}"
        return False

    def _role_rules(self, ref: Mapping[str, Any], namespace: str) -> list[dict[str, Any]]:
        kind = ref.get("kind")
        if kind == "ClusterRole":
            role = self.store.get(_KEYS["ClusterRole"], "", str(ref.get("name")))
        elif kind == "Role" and namespace:
            role = self.store.get(_KEYS["Role"], namespace, str(ref.get("name")))
        else:
            role = None
        return list((role or {}).get("rules") or [])

    def rules(self, who: Identity, namespace: str) -> Iterator[dict[str, Any]]:
        """Every rule that applies to ``who`` in ``namespace`` ("" : cluster-wide rules only)."""
        yield from _BUILT_IN
        for binding in self.store.iter(_KEYS["ClusterRoleBinding"], None):
            if any(self._subject_matches(who, s, "") for s in binding.get("subjects") or []):
                yield from self._role_rules(binding.get("roleRef") or {}, "")
        if namespace:
            for binding in self.store.iter(_KEYS["RoleBinding"], namespace):
                if any(self._subject_matches(who, s, namespace) for s in binding.get("subjects") or []):
                    yield from self._role_rules(binding.get("roleRef") or {}, namespace)

    def allowed(self, who: Identity, attrs: Attributes) -> bool:
        """Whether ``who`` may do ``attrs`` (cached until the RBAC objects change)."""
        if MASTERS in who.groups:
            return True
        decision = self._decisions.get((who, attrs))
        if decision is None:
            decision = any(rule_allows(rule, attrs) for rule in self.rules(who, attrs.namespace))
            if len(self._decisions) >= _MAX_DECISIONS:
                self._decisions.clear()
            self._decisions[(who, attrs)] = decision
        return decision


def forbidden_error(who: Identity, attrs: Attributes, plural_group: str = "") -> ApiError:
    """The 403 the real API server sends for a denied request."""
    subject = f'User "{who.user}"'
    if not attrs.resource_request:
        return forbidden(f'forbidden: {subject} cannot {attrs.verb} path "{attrs.path}"')
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    what = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    where = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    message = (
        f'{what} is forbidden: {subject} cannot {attrs.verb} resource "{resource}" '
        f'in API group "{attrs.api_group}" {where}'
    )
    err = forbidden(message)
    err.details = {"name": attrs.name, "group": attrs.api_group, "kind": attrs.resource} if attrs.name else {
        "group": attrs.api_group, "kind": attrs.resource}
    return err


def request_verbs(method: str, named: bool, watch: bool, apply: bool, exists: Callable[[], bool]) -> list[str]:
    """The RBAC verbs one HTTP request needs (an apply that creates needs ``create`` too)."""
    if method == "GET":
        return ["watch" if watch else ("get" if named else "list")]
    if method == "POST":
        return ["create"]
    if method == "PUT":
        return ["update"]
    if method == "PATCH":
        return ["patch", "create"] if apply and not exists() else ["patch"]
    if method == "DELETE":
        return ["delete" if named else "deletecollection"]
    return [method.lower()]


def authorize(
    authorizer: Authorizer,
    who: Identity,
    *,
    method: str,
    group: str,
    resource: str,
    subresource: str,
    namespace: str,
    name: str,
    watch: bool,
    apply: bool,
    exists: Callable[[], bool],
) -> None:
    """Raise the 403 ``Forbidden`` ApiError when ``who`` may not send this resource request."""
    if MASTERS in who.groups:
        return
    for verb in request_verbs(method, bool(name), watch, apply, exists):
        attrs = Attributes(verb, api_group=group, resource=resource, subresource=subresource, namespace=namespace, name=name)
        if not authorizer.allowed(who, attrs):
            raise forbidden_error(who, attrs)


def _fields(data: bytes) -> Iterator[tuple[int, bytes | int]]:
    """(field number, value) of one protobuf message: length-delimited values as bytes, varints as int."""
    pos = 0

    def varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            if pos >= len(data):
                raise ValueError("truncated varint")
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    while pos < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, varint()
        elif wire == 2:
            size = varint()
            yield number, data[pos : pos + size]
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _strings(data: bytes, names: dict[int, str]) -> dict[str, str]:
    return {names[n]: v.decode() for n, v in _fields(data) if n in names and isinstance(v, bytes)}


def _review_from_protobuf(body: bytes) -> dict[str, Any]:
    """The spec of an access review sent as ``application/vnd.kubernetes.protobuf`` (what kubectl sends).

    The envelope is ``k8s\x00`` + runtime.Unknown{raw = the review}; the review's spec holds
    ResourceAttributes (namespace, verb, group, version, resource, subresource, name) or
    NonResourceAttributes (path, verb), plus user and groups for SubjectAccessReviews.
    """
    if not body.startswith(b"k8s\x00"):
        raise ValueError("missing the protobuf envelope")
    raw = next((v for n, v in _fields(body[4:]) if n == 2 and isinstance(v, bytes)), b"")
    spec_bytes = next((v for n, v in _fields(raw) if n == 2 and isinstance(v, bytes)), b"")
    spec: dict[str, Any] = {}
    groups: list[str] = []
    for number, value in _fields(spec_bytes):
        if not isinstance(value, bytes):
            continue
        if number == 1:
            spec["resourceAttributes"] = _strings(value, {1: "namespace", 2: "verb", 3: "group", 4: "version", 5: "resource", 6: "subresource", 7: "name"})
        elif number == 2:
            spec["nonResourceAttributes"] = _strings(value, {1: "path", 2: "verb"})
        elif number == 3:
            spec["user"] = value.decode()
        elif number == 4:
            groups.append(value.decode())
    if groups:
        spec["groups"] = groups
    return {"spec": spec}


def review(
    authorizer: Authorizer, caller: Identity, resource: str, namespace: str, body: bytes, content_type: str = ""
) -> tuple[int, dict[str, Any]]:
    """Answer one access review POST (``resource`` is its plural; ``namespace`` for local ones).

    The answer is JSON whatever the request's encoding (clients decode by Content-Type).
    """
    try:
        obj = _review_from_protobuf(body) if "protobuf" in content_type else json.loads(body or b"null")
    except ValueError as exc:
        raise bad_request(f"error decoding request body: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("spec"), dict):
        raise bad_request(f"the body of a {_REVIEWS[resource]} must be an object with a spec")
    spec = obj["spec"]
    if resource == "selfsubjectaccessreviews":
        subject = caller
    else:
        attrs = Attributes("create", api_group=_AUTHZ_GROUP, resource=resource, namespace=namespace)
        if not authorizer.allowed(caller, attrs):
            raise forbidden_error(caller, attrs)
        user = str(spec.get("user") or "")
        if not user and not spec.get("groups"):
            raise ApiError(422, "Invalid", f'{_REVIEWS[resource]}.{_AUTHZ_GROUP} "" is invalid: spec.user: Invalid value: "": at least one of user or group must be specified')
        subject = Identity(user, tuple(spec.get("groups") or ()), impersonated=True)
    resource_attrs = spec.get("resourceAttributes")
    non_resource = spec.get("nonResourceAttributes")
    if isinstance(resource_attrs, dict):
        ns = namespace if resource == "localsubjectaccessreviews" else str(resource_attrs.get("namespace") or "")
        attrs = Attributes(
            str(resource_attrs.get("verb") or ""),
            api_group=str(resource_attrs.get("group") or ""),
            resource=str(resource_attrs.get("resource") or ""),
            subresource=str(resource_attrs.get("subresource") or ""),
            namespace=ns,
            name=str(resource_attrs.get("name") or ""),
        )
    elif isinstance(non_resource, dict):
        attrs = Attributes(str(non_resource.get("verb") or ""), resource_request=False, path=str(non_resource.get("path") or ""))
    else:
        raise ApiError(422, "Invalid", f'{_REVIEWS[resource]}.{_AUTHZ_GROUP} "" is invalid: spec: Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified')
    allowed = authorizer.allowed(subject, attrs)
    status: dict[str, Any] = {"allowed": allowed}
    if allowed:
        status["reason"] = "allowed by the sandbox's RBAC rules" if MASTERS not in subject.groups else "system:masters"
    meta = dict(obj.get("metadata") or {})
    meta.setdefault("creationTimestamp", None)
    if namespace:
        meta["namespace"] = namespace
    return 201, {
        "kind": _REVIEWS[resource],
        "apiVersion": f"{_AUTHZ_GROUP}/v1",
        "metadata": meta,
        "spec": spec,
        "status": status,
    }


def review_route(parts: list[str]) -> tuple[str, str] | None:
    """(review plural, namespace) when ``parts`` is an access review path, else None."""
    if parts[:3] != ["apis", _AUTHZ_GROUP, "v1"]:
        return None
    rest = parts[3:]
    if len(rest) == 1 and rest[0] in ("selfsubjectaccessreviews", "subjectaccessreviews"):
        return rest[0], ""
    if len(rest) == 3 and rest[0] == "namespaces" and rest[2] == "localsubjectaccessreviews":
        return rest[2], rest[1]
    return None
