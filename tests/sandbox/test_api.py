"""API semantics over raw HTTP: errors, selectors, paging, patches, SSA, status, deletion, dry run."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from .conftest import Http

pytestmark = pytest.mark.anyio

CM = "/api/v1/namespaces/default/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"


def cm(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def deployment(name: str = "web", image: str = "nginx:1.27", replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "app", "image": image,
                                                  "env": [{"name": "A", "value": "1"}]}]}},
        },
    }


async def test_discovery_documents(http: Http) -> None:
    code, api = await http.call("GET", "/api")
    assert code == 200 and api["kind"] == "APIVersions" and api["versions"] == ["v1"]
    code, groups = await http.call("GET", "/apis")
    names = [g["name"] for g in groups["groups"]]
    assert "apps" in names and "apiextensions.k8s.io" in names
    code, apps = await http.call("GET", "/apis/apps")
    assert apps["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    code, res = await http.call("GET", "/apis/apps/v1")
    by_name = {r["name"]: r for r in res["resources"]}
    assert by_name["deployments"]["shortNames"] == ["deploy"]
    assert "watch" in by_name["deployments"]["verbs"]
    assert by_name["deployments/scale"]["kind"] == "Scale"
    assert (await http.call("GET", "/apis/nope.example.com"))[0] == 404
    code, version = await http.call("GET", "/version")
    assert code == 200 and version["major"] == "1"


async def test_auth_errors_are_401_status(http: Http) -> None:
    code, body = await http.call("GET", CM, token="nope")
    assert code == 401 and body["reason"] == "Unauthorized" and body["kind"] == "Status"
    async with http.session.get(http.sb.url + CM) as resp:
        assert resp.status == 401
    async with http.session.get(http.sb.url + "/healthz") as resp:
        assert resp.status == 200 and await resp.text() == "ok"


async def test_create_get_conflicts_and_not_found(http: Http) -> None:
    code, created = await http.call("POST", CM, cm("a", x="1"))
    assert code == 201
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and int(meta["resourceVersion"]) > 0
    code, body = await http.call("POST", CM, cm("a"))
    assert (code, body["reason"], body["message"]) == (409, "AlreadyExists", 'configmaps "a" already exists')
    code, body = await http.call("GET", CM + "/missing")
    assert code == 404 and body["details"] == {"name": "missing", "group": "", "kind": "configmaps"}
    code, body = await http.call("POST", "/api/v1/namespaces/nope/configmaps", cm("a"))
    assert (code, body["message"]) == (404, 'namespaces "nope" not found')
    # stale resourceVersion on PUT
    stale = dict(created, data={"x": "2"})
    assert (await http.call("PUT", CM + "/a", stale))[0] == 200
    code, body = await http.call("PUT", CM + "/a", dict(created, data={"x": "3"}))
    assert code == 409 and body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]


async def test_invalid_names_and_immutable_fields(http: Http) -> None:
    code, body = await http.call("POST", CM, cm("Bad_Name"))
    assert code == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    code, body = await http.call("POST", CM, {"metadata": {}})
    assert code == 422 and body["details"]["causes"][0]["reason"] == "FieldValueRequired"
    assert (await http.call("POST", DEPLOY, deployment()))[0] == 201
    patch = {"spec": {"selector": {"matchLabels": {"app": "other"}},
                      "template": {"metadata": {"labels": {"app": "other"}}}}}
    code, body = await http.call("PATCH", DEPLOY + "/web", patch, "application/merge-patch+json")
    assert code == 422
    assert body["message"].startswith('Deployment.apps "web" is invalid: spec.selector')
    assert "field is immutable" in body["message"]
    svc = {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}}
    code, created = await http.call("POST", "/api/v1/namespaces/default/services", svc)
    assert code == 201 and created["spec"]["clusterIP"].startswith("10.96.")
    code, body = await http.call("PATCH", "/api/v1/namespaces/default/services/svc",
                                 {"spec": {"clusterIP": "10.0.0.1"}}, "application/merge-patch+json")
    assert code == 422 and "spec.clusterIP" in body["message"]


async def test_bad_request_method_and_media_type(http: Http) -> None:
    code, body = await http.call("PATCH", CM + "/a", b"{}", "text/plain")
    assert code == 415 and body["reason"] == "UnsupportedMediaType"
    code, body = await http.call("POST", CM + "/a", cm("a"))
    assert code == 405 and body["reason"] == "MethodNotAllowed"
    code, body = await http.call("POST", CM, b"{not json")
    assert code == 400 and body["reason"] == "BadRequest"
    code, body = await http.call("POST", "/api/v1/namespaces/kube-system/configmaps",
                                 dict(cm("x"), metadata={"name": "x", "namespace": "default"}))
    assert code == 400 and "does not match the namespace" in body["message"]


async def test_list_selectors_and_paging(http: Http) -> None:
    for i in range(7):
        labels = {"app": "a" if i % 2 else "b", "tier": str(i)}
        if i == 6:
            labels.pop("tier")
        await http.call("POST", CM, cm(f"c{i}", labels))

    async def names(**params: Any) -> list[str]:
        code, body = await http.call("GET", CM, **params)
        assert code == 200, body
        return [o["metadata"]["name"] for o in body["items"]]

    assert await names(labelSelector="app=a") == ["c1", "c3", "c5"]
    assert await names(labelSelector="app==b,tier!=0") == ["c2", "c4", "c6"]
    assert await names(labelSelector="tier in (1,2)") == ["c1", "c2"]
    assert await names(labelSelector="tier notin (1,2),app=b") == ["c0", "c4", "c6"]
    assert await names(labelSelector="!tier") == ["c6"]
    assert await names(labelSelector="tier,app=a") == ["c1", "c3", "c5"]
    assert await names(fieldSelector="metadata.name=c3") == ["c3"]
    assert await names(fieldSelector="metadata.name!=c3,metadata.namespace=default") == ["c0", "c1", "c2", "c4", "c5", "c6"]
    code, _body = await http.call("GET", CM, fieldSelector="spec.foo=bar")
    assert code == 400
    collected: list[str] = []
    token = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if token:
            params["continue"] = token
        code, page = await http.call("GET", CM, **params)
        collected += [o["metadata"]["name"] for o in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
        assert page["metadata"]["remainingItemCount"] == 7 - len(collected)
    assert collected == [f"c{i}" for i in range(7)]
    code, everywhere = await http.call("GET", "/api/v1/configmaps")
    assert {o["metadata"]["namespace"] for o in everywhere["items"]} == {"default"}


async def test_patch_types(http: Http) -> None:
    await http.call("POST", DEPLOY, deployment())
    smp = {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "B", "value": "2"}]},
        {"name": "sidecar", "image": "busybox"},
    ]}}}}
    code, out = await http.call("PATCH", DEPLOY + "/web", smp, "application/strategic-merge-patch+json")
    assert code == 200, out
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["app", "sidecar"]
    assert containers[0]["image"] == "nginx:1.27"
    assert containers[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert out["metadata"]["generation"] == 2
    merge = {"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x"}]}}}}
    code, out = await http.call("PATCH", DEPLOY + "/web", merge, "application/merge-patch+json")
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["only"]
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 3},
           {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}},
           {"op": "test", "path": "/spec/replicas", "value": 3}]
    code, out = await http.call("PATCH", DEPLOY + "/web", ops, "application/json-patch+json")
    assert code == 200 and out["spec"]["replicas"] == 3 and out["metadata"]["labels"] == {"x": "y"}
    code, out = await http.call("PATCH", DEPLOY + "/web", [{"op": "test", "path": "/spec/replicas", "value": 9}],
                                "application/json-patch+json")
    assert code == 422


async def test_server_side_apply_ownership(http: Http) -> None:
    apply = "application/apply-patch+yaml"
    code, body = await http.call("PATCH", CM + "/ssa", cm("ssa", a="1", b="2"), apply)
    assert code == 422 and "fieldManager" in body["message"]
    code, out = await http.call("PATCH", CM + "/ssa", cm("ssa", a="1", b="2"), apply, fieldManager="one")
    assert code == 201, out
    # another manager co-owns b with the same value (no conflict), and adds c
    code, out = await http.call("PATCH", CM + "/ssa", cm("ssa", b="2", c="3"), apply, fieldManager="two")
    assert code == 200 and out["data"] == {"a": "1", "b": "2", "c": "3"}
    # one stops applying a and b: a goes away, b stays (two owns it)
    code, out = await http.call("PATCH", CM + "/ssa", cm("ssa"), apply, fieldManager="one")
    assert out["data"] == {"b": "2", "c": "3"}
    # conflict on a changed value owned by two, with the real message and causes
    code, body = await http.call("PATCH", CM + "/ssa", cm("ssa", c="9"), apply, fieldManager="one")
    assert code == 409 and body["reason"] == "Conflict"
    assert body["message"] == 'Apply failed with 1 conflict: conflict with "two": .data.c'
    assert body["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "two"', "field": ".data.c"}]
    code, out = await http.call("PATCH", CM + "/ssa", cm("ssa", c="9"), apply, fieldManager="one", force=True)
    assert code == 200 and out["data"]["c"] == "9"
    owners = {m["manager"]: m for m in out["metadata"]["managedFields"]}
    assert owners["one"]["fieldsV1"] == {"f:data": {"f:c": {}}}
    assert owners["two"]["fieldsV1"] == {"f:data": {"f:b": {}}}
    # an update by a third manager (merge patch) takes ownership without conflict
    code, out = await http.call("PATCH", CM + "/ssa", {"data": {"c": "10"}}, "application/merge-patch+json",
                                fieldManager="editor")
    owners = {m["manager"]: m for m in out["metadata"]["managedFields"]}
    assert owners["editor"]["operation"] == "Update" and "one" not in owners
    code, body = await http.call("PATCH", CM + "/ssa", dict(cm("ssa"), metadata={
        "name": "ssa", "managedFields": [{"manager": "x"}]}), apply, fieldManager="one")
    assert code == 400


async def test_apply_no_op_keeps_resource_version(http: Http) -> None:
    apply = "application/apply-patch+yaml"
    code, _first = await http.call("PATCH", DEPLOY + "/web", deployment(), apply, fieldManager="m")
    assert code == 201
    await _sleep(0.3)  # let the simulated controller finish its status writes
    _, live = await http.call("GET", DEPLOY + "/web")
    code, again = await http.call("PATCH", DEPLOY + "/web", deployment(), apply, fieldManager="m")
    assert again == live
    code, changed = await http.call("PATCH", DEPLOY + "/web", deployment(replicas=2), apply, fieldManager="m",
                                    dryRun="All")
    assert code == 200 and changed["spec"]["replicas"] == 2 and changed["metadata"]["generation"] == 2
    code, live = await http.call("GET", DEPLOY + "/web")
    assert live["spec"]["replicas"] == 1 and live["metadata"]["generation"] == 1


async def test_dry_run_on_every_mutating_verb(http: Http) -> None:
    code, out = await http.call("POST", CM, cm("dry"), dryRun="All")
    assert code == 201 and out["metadata"]["name"] == "dry"
    assert (await http.call("GET", CM + "/dry"))[0] == 404
    await http.call("POST", CM, cm("real", a="1"))
    code, out = await http.call("PUT", CM + "/real", cm("real", a="2"), dryRun="All")
    assert code == 200 and out["data"] == {"a": "2"}
    code, out = await http.call("PATCH", CM + "/real", {"data": {"a": "3"}}, "application/merge-patch+json", dryRun="All")
    assert out["data"] == {"a": "3"}
    code, out = await http.call("DELETE", CM + "/real", dryRun="All")
    assert code == 200
    code, out = await http.call("DELETE", CM, dryRun="All")
    assert code == 200
    code, live = await http.call("GET", CM + "/real")
    assert code == 200 and live["data"] == {"a": "1"}
    counters = http.sb.counters()
    assert counters["writes"] == 1 and counters["dry_run_writes"] == 5


async def test_field_validation(http: Http) -> None:
    body = dict(cm("fv"), bogus=1)
    code, out = await http.call("POST", CM, body, fieldValidation="Strict")
    assert code == 400 and 'unknown field "bogus"' in out["message"]
    async with http.session.post(http.sb.url + CM, json=body, params={"fieldValidation": "Warn"},
                                 headers={"Authorization": f"Bearer {http.sb.token}"}) as resp:
        assert resp.status == 201
        assert 'unknown field \\"bogus\\"' in resp.headers["Warning"] or "bogus" in resp.headers["Warning"]
        assert "bogus" not in await resp.json()
    code, out = await http.call("POST", CM, dict(cm("fv2"), bogus=1), fieldValidation="Ignore")
    assert code == 201 and "bogus" not in out


async def test_status_subresource_and_generation(http: Http) -> None:
    await http.call("POST", DEPLOY, deployment())
    code, out = await http.call("PATCH", DEPLOY + "/web", {"status": {"replicas": 42}, "metadata": {"labels": {"l": "1"}}},
                                "application/merge-patch+json")
    assert out["metadata"]["generation"] == 1  # labels are metadata
    assert out.get("status", {}).get("replicas") != 42  # status ignored on the main resource
    code, out = await http.call("PATCH", DEPLOY + "/web/status", {"status": {"replicas": 42}, "spec": {"replicas": 9}},
                                "application/merge-patch+json")
    assert code == 200 and out["status"]["replicas"] == 42 and out["spec"]["replicas"] == 1
    code, scale = await http.call("GET", DEPLOY + "/web/scale")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 1 and scale["status"]["selector"] == "app=web"
    code, scale = await http.call("PUT", DEPLOY + "/web/scale", dict(scale, spec={"replicas": 5}))
    assert code == 200 and scale["spec"]["replicas"] == 5
    code, live = await http.call("GET", DEPLOY + "/web")
    assert live["spec"]["replicas"] == 5 and live["metadata"]["generation"] == 2


async def test_finalizers_and_namespace_deletion(http: Http) -> None:
    await http.call("POST", "/api/v1/namespaces", {"metadata": {"name": "team"}})
    base = "/api/v1/namespaces/team/configmaps"
    await http.call("POST", base, cm("plain"))
    await http.call("POST", base, dict(cm("held"), metadata={"name": "held", "finalizers": ["example.com/hold"]}))
    code, ns = await http.call("DELETE", "/api/v1/namespaces/team")
    assert code == 200 and ns["status"]["phase"] == "Terminating"
    code, body = await http.call("POST", base, cm("late"))
    assert code == 403 and body["reason"] == "Forbidden"
    await _eventually(http, lambda: http.call("GET", base + "/plain"), 404)
    code, held = await http.call("GET", base + "/held")
    assert code == 200 and held["metadata"]["deletionTimestamp"]
    assert (await http.call("GET", "/api/v1/namespaces/team"))[0] == 200
    code, _ = await http.call("PATCH", base + "/held", {"metadata": {"finalizers": None}}, "application/merge-patch+json")
    assert code == 200
    await _eventually(http, lambda: http.call("GET", "/api/v1/namespaces/team"), 404)


async def test_owner_references_are_garbage_collected(http: Http) -> None:
    _code, owner = await http.call("POST", CM, cm("owner"))
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    await http.call("POST", CM, dict(cm("child"), metadata={"name": "child", "ownerReferences": [ref]}))
    await http.call("DELETE", CM + "/owner", {"propagationPolicy": "Background"})
    assert (await http.call("GET", CM + "/child"))[0] == 404


async def test_deletecollection_with_selector(http: Http) -> None:
    for i in range(4):
        await http.call("POST", CM, cm(f"d{i}", {"del": "yes" if i < 3 else "no"}))
    code, out = await http.call("DELETE", CM, labelSelector="del=yes")
    assert code == 200 and len(out["items"]) == 3
    code, rest = await http.call("GET", CM)
    assert [o["metadata"]["name"] for o in rest["items"]] == ["d3"]


async def test_controllers_simulate_readiness(http: Http) -> None:
    await http.call("POST", "/api/v1/namespaces/default/services",
                    {"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})
    await http.call("POST", "/api/v1/namespaces/default/persistentvolumeclaims",
                    {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                            "resources": {"requests": {"storage": "1Gi"}}}})
    job = {"metadata": {"name": "ok"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    bad_job = {"metadata": {"name": "bad", "annotations": {"sandbox.gitopsd.dev/fail": "true"}},
               "spec": job["spec"]}
    await http.call("POST", "/apis/batch/v1/namespaces/default/jobs", job)
    await http.call("POST", "/apis/batch/v1/namespaces/default/jobs", bad_job)
    await http.call("POST", DEPLOY, deployment("bad", image="nginx:fail"))

    async def check() -> bool:
        _, lb = await http.call("GET", "/api/v1/namespaces/default/services/lb")
        _, pvc = await http.call("GET", "/api/v1/namespaces/default/persistentvolumeclaims/data")
        _, ok = await http.call("GET", "/apis/batch/v1/namespaces/default/jobs/ok")
        _, bad = await http.call("GET", "/apis/batch/v1/namespaces/default/jobs/bad")
        _, dep = await http.call("GET", DEPLOY + "/bad")
        conds = {c["type"]: c for c in (dep.get("status") or {}).get("conditions", [])}
        return (
            bool(lb.get("status", {}).get("loadBalancer", {}).get("ingress"))
            and pvc.get("status", {}).get("phase") == "Bound"
            and any(c["type"] == "Complete" for c in ok.get("status", {}).get("conditions", []))
            and any(c["type"] == "Failed" for c in bad.get("status", {}).get("conditions", []))
            and conds.get("Progressing", {}).get("reason") == "ProgressDeadlineExceeded"
        )

    for _ in range(50):
        if await check():
            break
        await _sleep(0.1)
    assert await check()


async def test_counters_are_exact(http: Http) -> None:
    http.sb.reset_counters()
    await http.call("POST", CM, cm("k"))
    await http.call("GET", CM + "/k")
    await http.call("GET", CM + "/missing")
    await http.call("GET", CM)
    await http.call("PATCH", CM + "/k", cm("k", a="1"), "application/apply-patch+yaml", fieldManager="m")
    await http.call("PATCH", CM + "/k", {"data": {"b": "2"}}, "application/merge-patch+json")
    await http.call("DELETE", CM + "/k")
    await http.call("GET", "/apis/apps/v1")
    code, snap = await http.call("GET", "/sandbox/counters")
    assert code == 200
    rows = {(r["verb"], r["resource"], r["code"]): r["count"] for r in snap["requests"]}
    assert rows == {("create", "configmaps", 201): 1, ("get", "configmaps", 200): 1,
                    ("get", "configmaps", 404): 1, ("list", "configmaps", 200): 1,
                    ("apply", "configmaps", 200): 1, ("patch", "configmaps", 200): 1,
                    ("delete", "configmaps", 200): 1}
    assert snap["writes"] == 4 and snap["discovery"] == 1
    code, _ = await http.call("DELETE", "/sandbox/counters")
    assert http.sb.counters()["requests"] == []
    code, _ = await http.call("GET", "/sandbox/counters", token="bad")
    assert code == 401


async def test_faults_are_deterministic_and_settable(http: Http) -> None:
    spec = {"rules": [{"verb": "get", "resource": "configmaps", "error_rate": 0.5, "code": [500, 503, 429],
                       "retry_after": 3}]}
    code, _ = await http.call("POST", "/sandbox/faults", spec)
    assert code == 200
    await _no_faults_create(http)

    async def run() -> list[int]:
        http.sb.set_faults(spec)  # re-seeds every rule
        return [(await http.call("GET", CM + "/f"))[0] for _ in range(20)]

    first = await run()
    assert first == await run()
    assert set(first) - {200} and 200 in first
    http.sb.set_faults({"rules": [{"verb": "get", "resource": "*", "error_rate": 1.0, "code": 429, "retry_after": 7}]})
    async with http.session.get(http.sb.url + CM + "/f", headers={"Authorization": f"Bearer {http.sb.token}"}) as r:
        assert r.status == 429 and r.headers["Retry-After"] == "7"
        assert (await r.json())["details"]["retryAfterSeconds"] == 7
    http.sb.set_faults("get:configmaps:drop_rate=1")
    with pytest.raises(Exception):  # noqa: B017 - any client-side connection error
        await http.call("GET", CM + "/f")
    http.sb.set_faults(None)
    assert (await http.call("GET", CM + "/f"))[0] == 200


async def _no_faults_create(http: Http) -> None:
    saved = http.sb.faults.raw
    http.sb.set_faults(None)
    await http.call("POST", CM, cm("f"))
    http.sb.set_faults({"rules": saved})


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def _eventually(http: Http, call: Any, code: int) -> None:
    for _ in range(50):
        got, _ = await call()
        if got == code:
            return
        await _sleep(0.05)
    raise AssertionError(f"never got {code}")


async def test_events_are_capped_oldest_first() -> None:
    from gitopsd.sandbox import Sandbox

    async with Sandbox(tls=False, rollout_delay=0.01, max_events=5) as sb:
        async with aiohttp.ClientSession() as session:
            http = Http(session, sb)
            await http.call("POST", DEPLOY, deployment("many", replicas=3))

            async def names() -> list[str]:
                _, evs = await http.call("GET", "/api/v1/namespaces/default/events")
                return [e["reason"] for e in evs["items"]]

            for _ in range(100):
                _, dep = await http.call("GET", DEPLOY + "/many")
                if (dep.get("status") or {}).get("availableReplicas") == 3:
                    break
                await _sleep(0.05)
            reasons = await names()
            assert len(reasons) == 5  # 3 pods x 4 + 3 creates + 1 scale were recorded, the oldest deleted
            assert "ScalingReplicaSet" not in reasons and "Started" in reasons
