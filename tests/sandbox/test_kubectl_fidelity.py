"""Fidelity, part two: what a person types in the demo, with both kubectl versions.

Error messages as kubectl prints them from the sandbox's Status bodies, OpenAPI-backed
validation and explain, server-side Table columns, the workload controllers, and
protobuf bodies. Each test runs with the pinned kubectl (1.33) and the image's (1.32).
"""

from __future__ import annotations

import json
import textwrap

import pytest

from gitopsd.sandbox import Sandbox

from .conftest import Kubectl

pytestmark = pytest.mark.anyio

DEPLOYMENT = textwrap.dedent("""\
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: web
      labels: {app: web}
    spec:
      replicas: 2
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers:
          - name: app
            image: nginx:1.27
            ports: [{containerPort: 80}]
    """)


def _bad_token(sandbox: Sandbox, kubectl: Kubectl) -> Kubectl:
    path = kubectl.cache_dir.parent / "bad.kubeconfig"
    path.write_text(sandbox.kubeconfig.read_text().replace(sandbox.token, "wrong-token"))
    return Kubectl(kubectl.binary, path, kubectl.cache_dir)


# -- 1. Status bodies on every error path ------------------------------------------------


async def test_unauthorized_as_kubectl_prints_it(sandbox: Sandbox, kubectl: Kubectl) -> None:
    bad = _bad_token(sandbox, kubectl)
    # Fresh cache: discovery fails first; client-go reads discovery errors without the
    # body, so a real API server gives this same generic message.
    code, _, err = await bad.run("get", "configmaps")
    assert code == 1
    assert "error: You must be logged in to the server (the server has asked for the client to provide credentials)" in err
    # Discovery cached (as after an earlier good call): the 401 Status body is read.
    await kubectl.ok("get", "configmaps")
    code, _, err = await bad.run("get", "configmaps")
    assert code == 1
    assert err.strip().splitlines()[-1] == "error: You must be logged in to the server (Unauthorized)"


async def test_not_found_conflict_invalid_forbidden(kubectl: Kubectl) -> None:
    code, _, err = await kubectl.run("get", "deployment", "nope")
    assert code == 1 and err.strip() == 'Error from server (NotFound): deployments.apps "nope" not found'
    cm = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}})
    await kubectl.ok("create", "-f", "-", stdin=cm)
    code, _, err = await kubectl.run("create", "-f", "-", stdin=cm)
    assert code == 1 and 'Error from server (AlreadyExists): error when creating "STDIN": configmaps "c1" already exists' in err
    bad = DEPLOYMENT.replace("metadata: {labels: {app: web}}", "metadata: {labels: {app: other}}")
    code, _, err = await kubectl.run("create", "-f", "-", stdin=bad)
    assert code == 1
    assert 'The Deployment "web" is invalid: spec.template.metadata.labels: Invalid value: {"app":"other"}: `selector` does not match template `labels`' in err
    ns = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gone", "finalizers": []},
                     "spec": {"finalizers": ["kubernetes"]}})
    await kubectl.ok("create", "-f", "-", stdin=ns)
    held = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "held", "namespace": "gone", "finalizers": ["example.com/hold"]}})
    await kubectl.ok("create", "-f", "-", stdin=held)
    await kubectl.ok("delete", "namespace", "gone", "--wait=false")
    code, _, err = await kubectl.run("create", "-n", "gone", "-f", "-", stdin=cm)
    assert code == 1
    assert "Error from server (Forbidden)" in err and "because it is being terminated" in err


async def test_too_many_requests_is_retried_after_retry_after(sandbox: Sandbox, kubectl: Kubectl) -> None:
    await kubectl.ok("get", "configmaps")  # discovery cached before the fault
    sandbox.set_faults({"rules": [{"verb": "get", "resource": "configmaps", "error_rate": 1.0, "code": 429,
                                   "retry_after": 0}]})
    sandbox.reset_counters()
    code, _, err = await kubectl.run("get", "configmap", "x")
    assert code == 1 and "Error from server (TooManyRequests)" in err
    gets = [r for r in sandbox.counters()["requests"] if r["verb"] == "get" and r["resource"] == "configmaps"]
    assert gets == [{"verb": "get", "resource": "configmaps", "code": 429, "dryRun": False, "count": 11}]


# -- 2. OpenAPI: validation and explain ---------------------------------------------------

CRD = textwrap.dedent("""\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {name: widgets.example.com}
    spec:
      group: example.com
      scope: Namespaced
      names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
      versions:
      - name: v1
        served: true
        storage: true
        subresources: {status: {}}
        additionalPrinterColumns:
        - {name: Size, type: integer, jsonPath: .spec.size}
        - {name: Colour, type: string, jsonPath: .spec.colour, priority: 1}
        - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
        schema:
          openAPIV3Schema:
            type: object
            properties:
              spec:
                type: object
                description: What the widget should be.
                properties:
                  size: {type: integer, description: How many parts.}
                  colour: {type: string}
              status: {type: object, x-kubernetes-preserve-unknown-fields: true}
    """)


async def test_apply_validates_server_side_with_openapi(kubectl: Kubectl) -> None:
    out = await kubectl.ok("apply", "-f", "-", stdin=DEPLOYMENT)
    assert out.strip() == "deployment.apps/web created"
    out = await kubectl.ok("apply", "-f", "-", stdin=DEPLOYMENT.replace("nginx:1.27", "nginx:1.28"))
    assert out.strip() == "deployment.apps/web configured"
    live = await kubectl.json("get", "deploy", "web")
    assert [c["image"] for c in live["spec"]["template"]["spec"]["containers"]] == ["nginx:1.28"]
    typo = DEPLOYMENT.replace("image: nginx:1.27", "image: nginx:1.27\n        imagePullPolicyy: Always")
    for extra in ((), ("--server-side",)):
        code, _, err = await kubectl.run("apply", *extra, "-f", "-", stdin=typo)
        assert code == 1
        assert err.startswith("Error from server (BadRequest)")
        assert ('Deployment in version "v1" cannot be handled as a Deployment: '
                'strict decoding error: unknown field "spec.template.spec.containers[0].imagePullPolicyy"') in err
    code, _, err = await kubectl.run("apply", "--validate=warn", "-f", "-", stdin=typo)
    assert code == 0 and 'Warning: unknown field "spec.template.spec.containers[0].imagePullPolicyy"' in err


async def test_explain_builtin_and_custom_kinds(kubectl: Kubectl) -> None:
    out = await kubectl.ok("explain", "deployment.spec")
    assert "KIND:       Deployment" in out and "FIELD: spec <DeploymentSpec>" in out
    assert "replicas\t<integer>" in out and "Number of desired pods." in out
    out = await kubectl.ok("explain", "pods.spec.containers.ports")
    assert "containerPort\t<integer>" in out
    await kubectl.ok("apply", "-f", "-", stdin=CRD)
    await kubectl.ok("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=20s")
    out = await kubectl.ok("explain", "widget.spec")
    assert "What the widget should be." in out and "size\t<integer>" in out and "How many parts." in out
    widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3, shape: round}\n"
    code, _, err = await kubectl.run("apply", "-f", "-", stdin=widget)
    assert code == 1 and 'strict decoding error: unknown field "spec.shape"' in err
    await kubectl.ok("apply", "-f", "-", stdin=widget.replace("shape: round", "colour: red"))


# -- 3. Table output ------------------------------------------------------------------------


def _table(out: str) -> list[list[str]]:
    """kubectl's printed table, split on runs of 2+ spaces."""
    import re

    return [re.split(r"\s{2,}", line.strip()) for line in out.strip().splitlines()]


async def test_server_side_table_columns(kubectl: Kubectl) -> None:
    await kubectl.ok("apply", "-f", "-", stdin=DEPLOYMENT)
    await kubectl.ok("rollout", "status", "deploy/web", "--timeout=30s")
    rows = _table(await kubectl.ok("get", "deployments"))
    assert rows[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert rows[1][:4] == ["web", "2/2", "2", "2"]
    rows = _table(await kubectl.ok("get", "deployment", "web", "-o", "wide"))
    assert rows[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert rows[1][5:] == ["app", "nginx:1.27", "app=web"]
    await kubectl.ok("create", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "two"}, "data": {"a": "1", "b": "2"}}))
    await kubectl.ok("create", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "kubernetes.io/tls",
         "data": {"tls.crt": "", "tls.key": ""}}))
    rows = _table(await kubectl.ok("get", "configmap", "two"))
    assert rows[0] == ["NAME", "DATA", "AGE"] and rows[1][:2] == ["two", "2"]
    rows = _table(await kubectl.ok("get", "secret", "s"))
    assert rows[0] == ["NAME", "TYPE", "DATA", "AGE"] and rows[1][:3] == ["s", "kubernetes.io/tls", "2"]
    rows = _table(await kubectl.ok("get", "namespace", "default"))
    assert rows[0] == ["NAME", "STATUS", "AGE"] and rows[1][:2] == ["default", "Active"]
    await kubectl.ok("create", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}))
    rows = _table(await kubectl.ok("get", "service", "web"))
    assert rows[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert rows[1][1] == "ClusterIP" and rows[1][3:5] == ["<none>", "80/TCP"]
    rows = _table(await kubectl.ok("get", "deploy", "--show-labels"))
    assert rows[0][-1] == "LABELS" and rows[1][-1] == "app=web"


async def test_custom_resource_printer_columns(kubectl: Kubectl) -> None:
    await kubectl.ok("apply", "-f", "-", stdin=CRD)
    await kubectl.ok("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=20s")
    await kubectl.ok("apply", "-f", "-", stdin="apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\n"
                                                "spec: {size: 3, colour: red}\n")
    rows = _table(await kubectl.ok("get", "widgets"))
    assert rows[0] == ["NAME", "SIZE", "AGE"]
    assert rows[1][:2] == ["w1", "3"] and rows[1][2].endswith("s")  # an age, not a timestamp
    rows = _table(await kubectl.ok("get", "widgets", "-o", "wide"))
    assert rows[0] == ["NAME", "SIZE", "COLOUR", "AGE"] and rows[1][2] == "red"
