"""Impersonation and RBAC authorization over raw HTTP, and access reviews (kubectl auth can-i)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import Http, Kubectl

pytestmark = pytest.mark.anyio

RBAC = "/apis/rbac.authorization.k8s.io/v1"
CM = "/api/v1/namespaces/{ns}/configmaps"


async def call(
    http: Http, method: str, path: str, body: Any = None, *, user: str = "", groups: tuple[str, ...] = (),
    ctype: str = "application/json", **params: str,
) -> tuple[int, Any]:
    headers = [("Authorization", f"Bearer {http.sb.token}")]
    if user:
        headers.append(("Impersonate-User", user))
    headers += [("Impersonate-Group", g) for g in groups]
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers.append(("Content-Type", ctype))
    async with http.session.request(method, http.sb.url + path, data=data, headers=headers, params=params) as resp:
        return resp.status, json.loads(await resp.text())


def role(name: str, rules: list[dict[str, Any]], ns: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if ns:
        meta["namespace"] = ns
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role" if ns else "ClusterRole",
            "metadata": meta, "rules": rules}


def binding(name: str, role_kind: str, role_name: str, subjects: list[dict[str, Any]], ns: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if ns:
        meta["namespace"] = ns
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding" if ns else "ClusterRoleBinding",
            "metadata": meta, "subjects": subjects,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name}}


def cm(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


async def create(http: Http, path: str, obj: dict[str, Any]) -> None:
    code, out = await call(http, "POST", path, obj)
    assert code == 201, out


async def test_impersonated_requests_follow_role_bindings(http: Http) -> None:
    await create(http, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    code, out = await call(http, "GET", CM.format(ns="team"), user="alice")
    assert code == 403 and out["reason"] == "Forbidden"
    assert out["message"] == (
        'configmaps is forbidden: User "alice" cannot list resource "configmaps" in API group "" in the namespace "team"'
    )
    code, _ = await call(http, "GET", CM.format(ns="team"))  # the admin itself is never checked
    assert code == 200

    await create(http, f"{RBAC}/namespaces/team/roles", role("cm", [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create"]},
    ], ns="team"))
    await create(http, f"{RBAC}/namespaces/team/rolebindings", binding("cm", "Role", "cm", [
        {"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"},
    ], ns="team"))
    assert (await call(http, "GET", CM.format(ns="team"), user="alice"))[0] == 403  # not in the group
    code, _ = await call(http, "GET", CM.format(ns="team"), user="alice", groups=("other", "devs"))
    assert code == 200
    code, _ = await call(http, "POST", CM.format(ns="team"), cm("a"), user="alice", groups=("devs",))
    assert code == 201
    code, out = await call(http, "DELETE", CM.format(ns="team") + "/a", user="alice", groups=("devs",))
    assert code == 403 and out["details"] == {"name": "a", "group": "", "kind": "configmaps"}
    # A Role binds in its own namespace only.
    assert (await call(http, "GET", CM.format(ns="default"), user="alice", groups=("devs",)))[0] == 403
    # Groups without a user are refused, as by the real server.
    assert (await call(http, "GET", CM.format(ns="team"), groups=("devs",)))[0] == 400


async def test_decisions_follow_rbac_changes_at_once(http: Http) -> None:
    """The same request by the same user, before and after each RBAC change (decisions are cached)."""
    path = CM.format(ns="default")

    async def status() -> int:
        return (await call(http, "GET", path, user="carol"))[0]

    assert await status() == 403
    await create(http, f"{RBAC}/clusterroles", role("reader", [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]},
    ]))
    assert await status() == 403  # a role alone grants nothing
    await create(http, f"{RBAC}/namespaces/default/rolebindings", binding("reader", "ClusterRole", "reader", [
        {"kind": "User", "name": "carol", "apiGroup": "rbac.authorization.k8s.io"},
    ], ns="default"))
    assert await status() == 200
    code, _ = await call(http, "PATCH", f"{RBAC}/clusterroles/reader", {"rules": [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]}, ctype="application/merge-patch+json")
    assert code == 200
    assert await status() == 403  # the role changed
    code, _ = await call(http, "PATCH", f"{RBAC}/clusterroles/reader", {"rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]}, ctype="application/merge-patch+json")
    assert await status() == 200
    code, _ = await call(http, "DELETE", f"{RBAC}/namespaces/default/rolebindings/reader")
    assert code == 200
    assert await status() == 403  # the binding went away


async def test_apply_that_creates_needs_create_too(http: Http) -> None:
    await create(http, f"{RBAC}/clusterroles", role("patcher", [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["patch"]},
    ]))
    await create(http, f"{RBAC}/clusterrolebindings", binding("patcher", "ClusterRole", "patcher", [
        {"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"},
    ]))
    path = CM.format(ns="default") + "/applied"
    code, out = await call(http, "PATCH", path, cm("applied"), user="bob", ctype="application/apply-patch+yaml",
                           fieldManager="t")
    assert code == 403 and 'cannot create resource "configmaps"' in out["message"]
    code, _ = await call(http, "PATCH", path, cm("applied"), ctype="application/apply-patch+yaml", fieldManager="t")
    assert code == 201
    code, _ = await call(http, "PATCH", path, cm("applied"), user="bob", ctype="application/apply-patch+yaml",
                         fieldManager="t")
    assert code == 200


async def test_resource_names_subresources_and_service_accounts(http: Http) -> None:
    await create(http, f"{RBAC}/clusterroles", role("narrow", [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["only"], "verbs": ["get"]},
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get"]},
        {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["get"]},
    ]))
    await create(http, f"{RBAC}/namespaces/default/rolebindings", binding("narrow", "ClusterRole", "narrow", [
        {"kind": "ServiceAccount", "name": "robot"},
    ], ns="default"))
    for name in ("only", "other"):
        await create(http, CM.format(ns="default"), cm(name))
    robot = "system:serviceaccount:default:robot"
    assert (await call(http, "GET", CM.format(ns="default") + "/only", user=robot))[0] == 200
    assert (await call(http, "GET", CM.format(ns="default") + "/other", user=robot))[0] == 403
    assert (await call(http, "GET", CM.format(ns="default"), user=robot))[0] == 403  # list has no name
    deployments = "/apis/apps/v1/namespaces/default/deployments"
    code, out = await call(http, "GET", deployments + "/web", user=robot)
    assert code == 403 and 'cannot get resource "deployments"' in out["message"]
    # Discovery is open to every authenticated user.
    assert (await call(http, "GET", "/apis", user=robot))[0] == 200


async def test_access_reviews(http: Http) -> None:
    await create(http, f"{RBAC}/clusterroles", role("urls", [
        {"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]},
    ]))
    await create(http, f"{RBAC}/clusterrolebindings", binding("urls", "ClusterRole", "urls", [
        {"kind": "User", "name": "carol", "apiGroup": "rbac.authorization.k8s.io"},
    ]))

    async def review(spec: dict[str, Any], kind: str = "subjectaccessreviews", ns: str = "", user: str = "") -> Any:
        path = f"/apis/authorization.k8s.io/v1/{f'namespaces/{ns}/' if ns else ''}{kind}"
        code, out = await call(http, "POST", path, {"apiVersion": "authorization.k8s.io/v1", "spec": spec}, user=user)
        assert code == 201, out
        return out["status"]["allowed"]

    assert await review({"user": "carol", "nonResourceAttributes": {"path": "/metrics", "verb": "get"}})
    assert await review({"user": "carol", "nonResourceAttributes": {"path": "/logs/x", "verb": "get"}})
    assert not await review({"user": "carol", "nonResourceAttributes": {"path": "/debug", "verb": "get"}})
    assert await review({"user": "carol", "resourceAttributes": {"verb": "delete", "resource": "pods", "namespace": "x"}})
    assert not await review({"user": "dave", "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "x"}})
    assert await review({"user": "dave", "groups": ["system:masters"], "resourceAttributes": {"verb": "get", "resource": "pods"}})
    assert await review({"user": "carol", "resourceAttributes": {"verb": "get", "resource": "pods"}},
                        kind="localsubjectaccessreviews", ns="x")
    # Self reviews: the caller, impersonated or not.
    assert await review({"resourceAttributes": {"verb": "get", "resource": "pods"}}, kind="selfsubjectaccessreviews",
                        user="carol")
    assert not await review({"resourceAttributes": {"verb": "get", "resource": "secrets"}},
                            kind="selfsubjectaccessreviews", user="carol")
    # A SubjectAccessReview needs the right to create one.
    code, out = await call(http, "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                           {"spec": {"user": "x", "resourceAttributes": {"verb": "get", "resource": "pods"}}}, user="carol")
    assert code == 403 and "subjectaccessreviews" in out["message"]


async def test_kubectl_auth_can_i_as_a_user(sandbox: Any, kubectl: Kubectl) -> None:
    roles = [
        role("reader", [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]}]),
        binding("reader", "ClusterRole", "reader", [{"kind": "User", "name": "erin", "apiGroup": "rbac.authorization.k8s.io"}]),
    ]
    code, _, err = await kubectl.run("apply", "--server-side", "--validate=false", "-f", "-",
                                     stdin="\n---\n".join(json.dumps(r) for r in roles))
    assert code == 0, err
    code, out, _ = await kubectl.run("auth", "can-i", "list", "deployments.apps", "--as", "erin")
    assert (code, out.strip()) == (0, "yes")
    code, out, _ = await kubectl.run("auth", "can-i", "delete", "deployments.apps", "--as", "erin")
    assert (code, out.strip()) == (1, "no")
    code, out, _ = await kubectl.run("auth", "can-i", "list", "deployments.apps", "--as", "frank", "--as-group", "system:masters")
    assert (code, out.strip()) == (0, "yes")
    code, out, err = await kubectl.run("get", "deployments", "--as", "frank")
    assert code == 1 and 'User "frank" cannot list resource "deployments" in API group "apps"' in err
