"""OpenAPI v2/v3 documents and fieldValidation against the schemas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gitopsd.sandbox.kinds import Registry
from gitopsd.sandbox.openapi import OpenApi, builtin, show_path, unknown_fields

from .conftest import Http, require_protos

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"


def test_generated_schemas_are_fresh() -> None:
    protos = require_protos()
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_sandbox_openapi.py"), "--check",
                           "--protos", str(protos)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_schemas_carry_kubernetes_names_formats_and_patch_keys() -> None:
    defs = builtin()["definitions"]
    assert builtin()["kinds"]["apps/v1/Deployment"] == "io.k8s.api.apps.v1.Deployment"
    spec = defs["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]
    assert spec["template"]["$ref"] == "io.k8s.api.core.v1.PodTemplateSpec"
    assert spec["selector"]["$ref"] == "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"
    assert spec["replicas"]["description"].startswith("Number of desired pods.")
    port = defs["io.k8s.api.core.v1.ServicePort"]["properties"]
    assert port["targetPort"]["$ref"] == "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
    containers = defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert defs["io.k8s.api.core.v1.Container"]["properties"]["ports"]["x-kubernetes-patch-merge-key"] == "containerPort"
    meta = defs["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]
    assert meta["creationTimestamp"]["$ref"] == "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
    assert defs["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"] == [
        {"group": "", "kind": "Pod", "version": "v1"}]


def test_unknown_field_paths() -> None:
    oa = OpenApi(Registry())
    rt = oa.registry.lookup("apps", "v1", "deployments")
    assert rt is not None
    schema = oa.schema_for(rt)
    assert schema is not None
    obj = {"metadata": {"name": "x", "labelz": {}}, "spec": {"template": {"spec": {"containers": [
        {"name": "a", "image": "i", "resources": {"limits": {"cpu": "1"}}}, {"name": "b", "imag": "i"}]}}}}
    paths = [show_path(p) for p in unknown_fields(obj, *schema)]
    assert paths == ["metadata.labelz", "spec.template.spec.containers[1].imag"]


async def test_v3_index_and_group_documents(http: Http) -> None:
    code, index = await http.call("GET", "/openapi/v3")
    assert code == 200
    assert {"api/v1", "apis/apps/v1", "apis/batch/v1"} <= set(index["paths"])
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=")
    code, doc = await http.call("GET", "/openapi/v3/apis/apps/v1")
    assert code == 200 and doc["openapi"].startswith("3.")
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "apps", "kind": "Deployment", "version": "v1"}
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    assert "application/strategic-merge-patch+json" in patch["requestBody"]["content"]
    schemas = doc["components"]["schemas"]
    assert schemas["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"]["$ref"] == \
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
    assert "io.k8s.api.core.v1.Container" in schemas
    code, _ = await http.call("GET", "/openapi/v3/apis/nope/v1")
    assert code == 404
    code, v2 = await http.call("GET", "/openapi/v2")
    assert code == 200 and v2["swagger"] == "2.0"
    assert v2["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"]["items"]["$ref"] == \
        "#/definitions/io.k8s.api.core.v1.Volume"


async def test_crd_schema_is_served_and_enforced(http: Http) -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "gadgets.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {"type": "object", "properties": {
                            "size": {"type": "integer"}}}}}}}]}}
    assert (await http.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd))[0] == 201
    for _ in range(100):
        code, index = await http.call("GET", "/openapi/v3")
        if "apis/example.com/v1" in index["paths"]:
            break
        await _sleep(0.05)
    code, doc = await http.call("GET", "/openapi/v3/apis/example.com/v1")
    assert code == 200
    gadget = doc["components"]["schemas"]["com.example.v1.Gadget"]
    assert gadget["properties"]["spec"]["properties"]["size"] == {"type": "integer"}
    assert gadget["x-kubernetes-group-version-kind"] == [{"group": "example.com", "kind": "Gadget", "version": "v1"}]
    patch = doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/gadgets/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" not in patch["requestBody"]["content"]
    body = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"},
            "spec": {"size": 1, "colour": "red"}}
    code, err = await http.call("POST", "/apis/example.com/v1/namespaces/default/gadgets", body,
                                fieldValidation="Strict")
    assert code == 400
    assert err["message"] == ('Gadget in version "v1" cannot be handled as a Gadget: strict decoding error: '
                              'unknown field "spec.colour"')
    code, made = await http.call("POST", "/apis/example.com/v1/namespaces/default/gadgets", body)
    assert code == 201 and made["spec"] == {"size": 1}  # pruned, as the real server does


async def test_field_validation_modes_on_nested_and_duplicate_fields(http: Http) -> None:
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
           "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
               "metadata": {"labels": {"a": "b"}},
               "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicyy": "Always"}]}}}}
    code, err = await http.call("POST", DEPLOY, dep, fieldValidation="Strict")
    assert code == 400 and err["reason"] == "BadRequest"
    assert err["message"].endswith('strict decoding error: unknown field "spec.template.spec.containers[0].imagePullPolicyy"')
    raw = json.dumps(dep).replace('"name": "d"', '"name": "d", "name": "d"').encode()
    code, err = await http.call("POST", DEPLOY, raw, fieldValidation="Strict")
    assert code == 400 and 'duplicate field "name"' in err["message"]
    async with http.session.post(http.sb.url + DEPLOY, data=json.dumps(dep), params={"fieldValidation": "Warn"},
                                 headers={"Authorization": f"Bearer {http.sb.token}",
                                          "Content-Type": "application/json"}) as resp:
        assert resp.status == 201
        assert resp.headers.getall("Warning") == [
            '299 - "unknown field \\"spec.template.spec.containers[0].imagePullPolicyy\\""']
        made = await resp.json()
    assert "imagePullPolicyy" not in made["spec"]["template"]["spec"]["containers"][0]


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def test_a_patch_refused_by_strict_validation_is_invalid_on_the_field_patch(http: Http) -> None:
    """A create is a BadRequest; a merge or strategic merge patch is a 422 naming ``patch`` (as kube-apiserver)."""
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "p"},
           "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
               "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    code, _ = await http.call("POST", DEPLOY, dep)
    assert code == 201
    typo = {"spec": {"replicas": 2, "paused": None, "minReadySecondz": 5}}
    for ctype in ("application/strategic-merge-patch+json", "application/merge-patch+json"):
        code, err = await http.call("PATCH", f"{DEPLOY}/p", typo, ctype=ctype, fieldValidation="Strict")
        assert code == 422 and err["reason"] == "Invalid", err
        cause = 'Invalid value: "map[spec:map[minReadySecondz:5 paused:<nil> replicas:2]]": ' \
                'strict decoding error: unknown field "spec.minReadySecondz"'
        assert err["details"]["causes"] == [{"reason": "FieldValueInvalid", "message": cause, "field": "patch"}]
        assert err["message"] == f' "" is invalid: patch: {cause}'
    code, live = await http.call("GET", f"{DEPLOY}/p")
    assert code == 200 and live["spec"]["replicas"] == 1 and "minReadySecondz" not in live["spec"]
