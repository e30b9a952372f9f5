"""Kubernetes protobuf bodies: the codec over the real descriptors, and the HTTP negotiation."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gitopsd.sandbox import Sandbox
from gitopsd.sandbox.protobuf import MAGIC, MEDIA_TYPE, Codec

from .conftest import Http, require_protos

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(require_protos())


ROUND_TRIPS: list[dict[str, Any]] = [
    {"apiVersion": "apps/v1", "kind": "Deployment",
     "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                  "creationTimestamp": "2026-11-30T03:24:11Z",
                  "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1",
                                     "fieldsV1": {"f:spec": {"f:replicas": {}}}, "time": "2026-11-30T03:24:11Z"}]},
     "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
              "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
              "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                  "containers": [{"name": "app", "image": "nginx", "ports": [{"containerPort": 80}],
                                  "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                                  "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
                                  "env": [{"name": "E", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]}],
                  "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cm"}}]}}},
     "status": {"conditions": [{"type": "Available", "status": "True", "lastUpdateTime": "2026-11-30T03:24:11Z"}]}},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"p": "aGVsbG8="}, "type": "Opaque"},
    {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
     "spec": {"holderIdentity": "me", "renewTime": "2026-11-30T03:24:11.123456Z"}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"},
     "spec": {"rules": [{"host": "a.example", "http": {"paths": [
         {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}},
    {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r"}, "revision": 3,
     "data": {"spec": {"template": {"x": 1}}}},
]


@pytest.mark.parametrize("obj", ROUND_TRIPS, ids=lambda o: o["kind"])
def test_round_trip(codec: Codec, obj: dict[str, Any]) -> None:
    body = codec.encode(obj)
    assert body.startswith(MAGIC)
    assert codec.decode(body) == obj


def test_special_types_on_the_wire(codec: Codec) -> None:
    body = codec.encode({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                         "spec": {"ports": [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 8081}]}})
    unknown = codec.message_class("k8s.io.apimachinery.pkg.runtime.Unknown")()
    unknown.ParseFromString(body[4:])
    assert (unknown.typeMeta.apiVersion, unknown.typeMeta.kind) == ("v1", "Service")
    svc = codec.message_class("k8s.io.api.core.v1.Service")()
    svc.ParseFromString(unknown.raw)
    ports = svc.spec.ports
    assert (ports[0].targetPort.type, ports[0].targetPort.strVal) == (1, "http")
    assert (ports[1].targetPort.type, ports[1].targetPort.intVal) == (0, 8081)


async def test_protobuf_request_and_response(http: Http) -> None:
    codec = Codec(require_protos())
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pb"}, "data": {"k": "v"}}
    headers = {"Authorization": f"Bearer {http.sb.token}", "Content-Type": MEDIA_TYPE,
               "Accept": f"{MEDIA_TYPE},application/json"}
    url = http.sb.url + "/api/v1/namespaces/default/configmaps"
    async with http.session.post(url, data=codec.encode(cm), headers=headers) as resp:
        assert resp.status == 201 and resp.headers["Content-Type"] == MEDIA_TYPE
        made = codec.decode(await resp.read())
    assert made["data"] == {"k": "v"} and made["metadata"]["uid"]
    async with http.session.get(url, headers=headers) as resp:
        listed = codec.decode(await resp.read())
    assert listed["kind"] == "ConfigMapList" and [i["metadata"]["name"] for i in listed["items"]] == ["pb"]
    async with http.session.post(url, data=b"k8s\x00garbage", headers=headers) as resp:
        assert resp.status == 400 and "protobuf" in (await resp.json())["message"]


async def test_missing_descriptors_answer_415(tmp_path: Path) -> None:
    async with Sandbox(protos_dir=tmp_path / "none") as sb:
        ctx = ssl.create_default_context(cadata=sb.ca_pem.decode())
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
            url = sb.url + "/api/v1/namespaces/default/configmaps"
            headers = {"Authorization": f"Bearer {sb.token}", "Content-Type": MEDIA_TYPE,
                       "Accept": f"{MEDIA_TYPE},application/json"}
            async with session.post(url, data=b"k8s\x00", headers=headers) as resp:
                assert resp.status == 415
                body = json.loads(await resp.text())
            assert body["reason"] == "UnsupportedMediaType"
            assert "no Kubernetes protobuf descriptors" in body["message"] and "install-tools.sh" in body["message"]
            async with session.get(url, headers=headers) as resp:  # replies fall back to JSON
                assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/json")
