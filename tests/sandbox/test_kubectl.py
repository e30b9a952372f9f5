"""Fidelity: the real kubectl (pinned 1.33 and the image's 1.32) against the sandbox over HTTPS."""

from __future__ import annotations

import asyncio
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
        schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
    """)

WIDGET = textwrap.dedent("""\
    apiVersion: example.com/v1
    kind: Widget
    metadata: {name: w1}
    spec: {size: 3}
    """)


async def test_apply_server_side_then_rollout_status(kubectl: Kubectl) -> None:
    out = await kubectl.ok("apply", "--server-side", "--validate=false", "-f", "-", stdin=DEPLOYMENT)
    assert "deployment.apps/web serverside-applied" in out
    out = await kubectl.ok("rollout", "status", "deploy/web", "--timeout=30s")
    assert 'deployment "web" successfully rolled out' in out
    live = await kubectl.json("get", "deploy", "web", "--show-managed-fields")
    assert live["status"]["availableReplicas"] == 2
    assert live["status"]["observedGeneration"] == live["metadata"]["generation"] == 1
    managers = {(m["manager"], m["operation"]) for m in live["metadata"]["managedFields"]}
    assert managers == {("kubectl", "Apply")}
    fields = live["metadata"]["managedFields"][0]["fieldsV1"]
    assert 'k:{"name":"app"}' in fields["f:spec"]["f:template"]["f:spec"]["f:containers"]
    yaml_out = await kubectl.ok("get", "deploy", "web", "-o", "yaml")
    assert "kind: Deployment" in yaml_out and "replicas: 2" in yaml_out


async def test_diff_server_side_exit_codes(kubectl: Kubectl) -> None:
    await kubectl.ok("apply", "--server-side", "--validate=false", "-f", "-", stdin=DEPLOYMENT)
    code, out, err = await kubectl.run("diff", "--server-side", "-f", "-", stdin=DEPLOYMENT)
    assert (code, out) == (0, ""), err
    changed = DEPLOYMENT.replace("replicas: 2", "replicas: 5")
    code, out, err = await kubectl.run("diff", "--server-side", "-f", "-", stdin=changed)
    assert code == 1, err
    assert "-  replicas: 2" in out and "+  replicas: 5" in out
    # the dry run did not persist anything
    live = await kubectl.json("get", "deploy", "web")
    assert live["spec"]["replicas"] == 2


async def test_conflict_with_another_manager_and_force(kubectl: Kubectl) -> None:
    await kubectl.ok("apply", "--server-side", "--validate=false", "-f", "-", stdin=DEPLOYMENT)
    changed = DEPLOYMENT.replace("replicas: 2", "replicas: 3")
    code, _, err = await kubectl.run("apply", "--server-side", "--validate=false", "--field-manager=helm",
                                     "-f", "-", stdin=changed)
    assert code != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas' in err
    await kubectl.ok("apply", "--server-side", "--validate=false", "--field-manager=helm",
                     "--force-conflicts", "-f", "-", stdin=changed)
    live = await kubectl.json("get", "deploy", "web", "--show-managed-fields")
    assert live["spec"]["replicas"] == 3
    owners = {m["manager"]: m["fieldsV1"] for m in live["metadata"]["managedFields"]}
    assert "f:replicas" in owners["helm"]["f:spec"]
    assert "f:replicas" not in owners["kubectl"]["f:spec"]


async def test_scale_label_delete(kubectl: Kubectl) -> None:
    await kubectl.ok("apply", "--server-side", "--validate=false", "-f", "-", stdin=DEPLOYMENT)
    await kubectl.ok("scale", "deploy/web", "--replicas=4")
    await kubectl.ok("label", "deploy", "web", "tier=frontend")
    live = await kubectl.json("get", "deploy", "web")
    assert live["spec"]["replicas"] == 4
    assert live["metadata"]["labels"] == {"app": "web", "tier": "frontend"}
    assert live["metadata"]["generation"] == 2  # scale changed the spec, the label did not
    await kubectl.ok("rollout", "status", "deploy/web", "--timeout=30s")
    names = await kubectl.ok("get", "deploy", "-l", "tier=frontend", "-o", "name")
    assert names.strip() == "deployment.apps/web"
    assert (await kubectl.ok("get", "deploy", "-l", "tier!=frontend", "-o", "name")).strip() == ""
    await kubectl.ok("delete", "deploy", "web")
    code, _, err = await kubectl.run("get", "deploy", "web")
    assert code == 1 and 'deployments.apps "web" not found' in err


async def test_get_watch_streams_changes(kubectl: Kubectl) -> None:
    proc = await asyncio.create_subprocess_exec(
        *kubectl.argv("get", "configmaps", "-w", "--output-watch-events"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        cm = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "watched"},
                         "data": {"a": "1"}})
        await asyncio.sleep(0.5)
        await kubectl.ok("apply", "--server-side", "--validate=false", "-f", "-", stdin=cm)
        seen = []
        while len(seen) < 2:
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().split()
            if line[:2] == ["EVENT", "NAME"]:
                continue
            seen.append(line[:2])
            if len(seen) == 1:
                await kubectl.ok("delete", "configmap", "watched")
        assert seen == [["ADDED", "watched"], ["DELETED", "watched"]]
    finally:
        proc.kill()
        await proc.wait()


async def test_api_resources(kubectl: Kubectl) -> None:
    out = await kubectl.ok("api-resources")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["deployments"][1:] == ["deploy", "apps/v1", "true", "Deployment"]
    assert rows["namespaces"][1:] == ["ns", "v1", "false", "Namespace"]
    assert "customresourcedefinitions" in rows and "leases" in rows
    namespaced = await kubectl.ok("api-resources", "--namespaced=false", "-o", "name")
    assert "clusterroles.rbac.authorization.k8s.io" in namespaced.split()
    assert "configmaps" not in namespaced.split()


async def test_crd_then_custom_resource(kubectl: Kubectl) -> None:
    await kubectl.ok("apply", "--server-side", "--validate=false", "-f", "-", stdin=CRD)
    await kubectl.ok("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=20s")
    await kubectl.ok("apply", "--server-side", "--validate=false", "-f", "-", stdin=WIDGET)
    widget = await kubectl.json("get", "wd", "w1")
    assert widget["spec"] == {"size": 3}
    assert widget["apiVersion"] == "example.com/v1"
    resources = await kubectl.ok("api-resources", "--api-group=example.com", "-o", "name")
    assert resources.split() == ["widgets.example.com"]
    await kubectl.ok("delete", "crd", "widgets.example.com")
    code, _, err = await kubectl.run("get", "widgets.example.com")
    assert code != 0
    assert "widgets" in err


async def test_failing_deployment_rollout_status_fails(kubectl: Kubectl) -> None:
    failing = DEPLOYMENT.replace("nginx:1.27", "nginx:fail")
    await kubectl.ok("apply", "--server-side", "--validate=false", "-f", "-", stdin=failing)
    code, _, err = await kubectl.run("rollout", "status", "deploy/web", "--timeout=30s")
    assert code == 1
    assert "exceeded its progress deadline" in err


async def test_wrong_token_is_rejected(sandbox: Sandbox, kubectl: Kubectl, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sb_copy = Sandbox.__new__(Sandbox)
    sb_copy.__dict__.update(sandbox.__dict__)
    sb_copy.token = "wrong"
    bad = sb_copy.write_kubeconfig(tmp_path / "bad.kubeconfig")
    bad_kubectl = Kubectl(kubectl.binary, bad, kubectl.cache_dir)
    code, _, err = await bad_kubectl.run("get", "configmaps")
    assert code == 1
    assert "Unauthorized" in err or "must be logged in" in err
