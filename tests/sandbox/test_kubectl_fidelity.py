"""Fidelity, part two: what a person types in the demo, with both kubectl versions.

Error messages as kubectl prints them from the sandbox's Status bodies, OpenAPI-backed
validation and explain, server-side Table columns, the workload controllers, and
protobuf bodies. Each test runs with the pinned kubectl (1.33) and the image's (1.32).
"""

from __future__ import annotations

import asyncio
import json
import textwrap

import pytest

from gitopsd.sandbox import Sandbox

from .conftest import Kubectl
from .test_kubectl import DEPLOYMENT

pytestmark = pytest.mark.anyio



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
    unknown = 'strict decoding error: unknown field "spec.template.spec.containers[0].imagePullPolicyy"'
    # As on a real cluster: a create or server-side apply is a BadRequest; kubectl's client-side
    # apply of an existing object is a strategic merge patch, refused as Invalid on "patch".
    for extra, creates in (((), True), (("--server-side",), True), (("--server-side",), False), ((), False)):
        code, _, err = await kubectl.run("apply", *extra, "-f", "-", stdin=typo.replace("name: web", "name: web-new")
                                         if creates else typo)
        assert code == 1
        if creates or extra:
            assert err.startswith("Error from server (BadRequest)")
            assert 'Deployment in version "v1" cannot be handled as a Deployment: ' + unknown in err
        else:
            assert err.startswith('The request is invalid: patch: Invalid value: "map[metadata:map[annotations:')
            assert unknown in err
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
    await kubectl.ok("create", "-f", "-", stdin=json.dumps(
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                  "minReplicas": 1, "maxReplicas": 4, "metrics": [{"type": "Resource", "resource": {
                      "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]}}))
    rows = _table(await kubectl.ok("get", "hpa"))
    assert rows[0] == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
    assert rows[1][:5] == ["web", "Deployment/web", "cpu: <unknown>/70%", "1", "4"]
    rows = _table(await kubectl.ok("get", "nodes"))
    assert rows == [["NAME", "STATUS", "ROLES", "AGE", "VERSION"], ["sandbox-node", "Ready", "control-plane", rows[1][3], "v1.33.0"]]


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


# -- 4. Controllers: ReplicaSets, Pods, rollouts, Events, Jobs, garbage collection -----------


async def test_deployment_rollout_history_undo_restart(kubectl: Kubectl) -> None:
    await kubectl.ok("apply", "-f", "-", stdin=DEPLOYMENT)
    await kubectl.ok("rollout", "status", "deploy/web", "--timeout=30s")
    await kubectl.ok("wait", "--for=condition=Available", "deploy/web", "--timeout=30s")
    rows = _table(await kubectl.ok("get", "pods", "-l", "app=web"))
    assert rows[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert len(rows) == 3 and all(r[1:4] == ["1/1", "Running", "0"] for r in rows[1:])
    rs = _table(await kubectl.ok("get", "replicasets"))
    assert rs[0] == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"] and rs[1][1:4] == ["2", "2", "2"]
    first_rs = rs[1][0]
    assert rows[1][0].startswith(first_rs + "-")
    await kubectl.ok("set", "image", "deploy/web", "app=nginx:1.28")
    await kubectl.ok("rollout", "status", "deploy/web", "--timeout=30s")
    history = await kubectl.ok("rollout", "history", "deploy/web")
    assert [line.split()[0] for line in history.strip().splitlines()[2:]] == ["1", "2"]
    await kubectl.ok("rollout", "undo", "deploy/web")
    await kubectl.ok("rollout", "status", "deploy/web", "--timeout=30s")
    live = await kubectl.json("get", "deploy", "web")
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    assert live["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    history = await kubectl.ok("rollout", "history", "deploy/web")
    assert [line.split()[0] for line in history.strip().splitlines()[2:]] == ["2", "3"]
    rs = {r[0]: r[1] for r in _table(await kubectl.ok("get", "rs"))[1:]}
    assert rs[first_rs] == "2" and len(rs) == 2  # undo reused the first ReplicaSet
    await kubectl.ok("rollout", "restart", "deploy/web")
    await kubectl.ok("rollout", "status", "deploy/web", "--timeout=30s")
    assert len(_table(await kubectl.ok("get", "rs"))) == 4
    pods = _table(await kubectl.ok("get", "pods"))[1:]
    assert len(pods) == 2 and not any(p[0].startswith(first_rs) for p in pods)
    described = await kubectl.ok("describe", "deployment", "web")
    assert "ScalingReplicaSet" in described and "deployment-controller" in described
    events = _table(await kubectl.ok("get", "events"))
    assert events[0][:4] == ["LAST SEEN", "TYPE", "REASON", "OBJECT"]
    assert {"Scheduled", "Started", "SuccessfulCreate", "ScalingReplicaSet"} <= {e[2] for e in events[1:]}
    logs = await kubectl.ok("logs", "deploy/web")
    assert "container app (image nginx:1.27)" in logs
    code, _, err = await kubectl.run("port-forward", pods[0][0], "18080:80", timeout=30)
    assert code == 1 and "runs no containers: portforward" in err


async def test_garbage_collection_propagation(kubectl: Kubectl) -> None:
    await kubectl.ok("apply", "-f", "-", stdin=DEPLOYMENT)
    await kubectl.ok("rollout", "status", "deploy/web", "--timeout=30s")
    await kubectl.ok("delete", "deployment", "web", "--cascade=orphan")
    assert len(_table(await kubectl.ok("get", "rs"))) == 2
    assert len(_table(await kubectl.ok("get", "pods"))) == 3
    rs = _table(await kubectl.ok("get", "rs"))[1][0]
    await kubectl.ok("delete", "rs", rs, "--cascade=foreground")
    _, out, err = await kubectl.run("get", "pods")
    assert "No resources found" in err + out
    await kubectl.ok("apply", "-f", "-", stdin=DEPLOYMENT)
    await kubectl.ok("rollout", "status", "deploy/web", "--timeout=30s")
    await kubectl.ok("delete", "deployment", "web")  # background
    for _ in range(100):
        _, out, err = await kubectl.run("get", "rs,pods")
        if "No resources found" in err + out:
            break
        await asyncio.sleep(0.1)
    assert "No resources found" in err + out


async def test_failing_image_and_deleted_pod_replaced(kubectl: Kubectl) -> None:
    await kubectl.ok("apply", "-f", "-", stdin=DEPLOYMENT.replace("nginx:1.27", "registry.example/failing-app:1"))
    code, _, err = await kubectl.run("rollout", "status", "deploy/web", "--timeout=30s")
    assert code == 1 and "exceeded its progress deadline" in err
    rows = _table(await kubectl.ok("get", "pods"))[1:]
    assert [r[1:3] for r in rows] == [["0/1", "ImagePullBackOff"]] * 2
    await kubectl.ok("apply", "-f", "-", stdin=DEPLOYMENT)
    await kubectl.ok("rollout", "status", "deploy/web", "--timeout=30s")
    victim = _table(await kubectl.ok("get", "pods"))[1][0]
    await kubectl.ok("delete", "pod", victim)
    for _ in range(100):
        rows = _table(await kubectl.ok("get", "pods"))[1:]
        if len(rows) == 2 and victim not in {r[0] for r in rows} and all(r[2] == "Running" for r in rows):
            break
        await asyncio.sleep(0.1)
    assert len(rows) == 2 and victim not in {r[0] for r in rows}


STATEFUL = textwrap.dedent("""\
    apiVersion: apps/v1
    kind: StatefulSet
    metadata: {name: db}
    spec:
      serviceName: db
      replicas: 2
      selector: {matchLabels: {app: db}}
      template:
        metadata: {labels: {app: db}}
        spec: {containers: [{name: db, image: postgres:17}]}
    ---
    apiVersion: apps/v1
    kind: DaemonSet
    metadata: {name: agent}
    spec:
      selector: {matchLabels: {app: agent}}
      template:
        metadata: {labels: {app: agent}}
        spec: {containers: [{name: agent, image: fluent-bit:3}]}
    """)

JOBS = textwrap.dedent("""\
    apiVersion: batch/v1
    kind: Job
    metadata: {name: migrate}
    spec:
      template:
        spec: {restartPolicy: Never, containers: [{name: m, image: busybox:1}]}
    ---
    apiVersion: batch/v1
    kind: Job
    metadata: {name: broken}
    spec:
      backoffLimit: 1
      template:
        metadata: {annotations: {sandbox.gitopsd.dev/fail: "true"}}
        spec: {restartPolicy: Never, containers: [{name: m, image: busybox:1}]}
    """)


async def test_statefulset_daemonset_and_job_pods(kubectl: Kubectl) -> None:
    await kubectl.ok("apply", "-f", "-", stdin=STATEFUL + "---\n" + JOBS)
    await kubectl.ok("rollout", "status", "statefulset/db", "--timeout=30s")
    await kubectl.ok("rollout", "status", "daemonset/agent", "--timeout=30s")
    await kubectl.ok("wait", "--for=condition=Complete", "job/migrate", "--timeout=30s")
    await kubectl.ok("wait", "--for=condition=Failed", "job/broken", "--timeout=30s")
    rows = {r[0]: r for r in _table(await kubectl.ok("get", "pods"))[1:]}
    assert rows["db-0"][2] == "Running" and rows["db-1"][2] == "Running"
    assert [r[2] for n, r in rows.items() if n.startswith("agent-")] == ["Running"]
    assert [r[2] for n, r in rows.items() if n.startswith("migrate-")] == ["Completed"]
    assert [r[2] for n, r in rows.items() if n.startswith("broken-")] == ["Error"]
    jobs = _table(await kubectl.ok("get", "jobs"))
    assert jobs[0] == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert {r[0]: r[1:3] for r in jobs[1:]} == {"migrate": ["Complete", "1/1"], "broken": ["Failed", "0/1"]}
    sts = _table(await kubectl.ok("get", "statefulsets"))
    assert sts[0] == ["NAME", "READY", "AGE"] and sts[1][:2] == ["db", "2/2"]
    ds = _table(await kubectl.ok("get", "daemonsets"))
    assert ds[0] == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"]
    assert ds[1][:6] == ["agent", "1", "1", "1", "1", "1"]
    assert "is simulated" in await kubectl.ok("logs", "job/migrate")


# -- 5. Protobuf: kubectl's create subcommands ---------------------------------------------------


async def test_kubectl_create_subcommands(kubectl: Kubectl) -> None:
    from .conftest import require_protos

    require_protos()
    commands = [
        ("namespace", "demo"), ("configmap", "c", "--from-literal=a=b"),
        ("secret", "generic", "s", "--from-literal=p=q"),
        ("deployment", "web", "--image=nginx:1.27", "--replicas=2", "--port=80"),
        ("service", "clusterip", "web", "--tcp=80:8080"), ("job", "j", "--image=busybox:1"),
        ("cronjob", "cj", "--image=busybox:1", "--schedule=*/5 * * * *"), ("serviceaccount", "sa"),
        ("role", "r", "--verb=get", "--resource=pods"), ("rolebinding", "rb", "--role=r", "--serviceaccount=demo:sa"),
        ("clusterrole", "cr", "--verb=get", "--resource=pods"),
        ("clusterrolebinding", "crb", "--clusterrole=cr", "--user=u"), ("quota", "q", "--hard=pods=10"),
        ("priorityclass", "pc", "--value=100"),
        ("poddisruptionbudget", "pdb", "--selector=app=web", "--min-available=1"),
        ("ingress", "ing", "--rule=a.example/=web:80"),
    ]
    for args in commands:
        ns = () if args[0] in ("namespace", "clusterrole", "clusterrolebinding", "priorityclass") else ("-n", "demo")
        out = await kubectl.ok("create", *ns, *args)
        assert "created" in out, out
    await kubectl.ok("-n", "demo", "rollout", "status", "deploy/web", "--timeout=30s")
    assert (await kubectl.json("-n", "demo", "get", "cm", "c"))["data"] == {"a": "b"}
    svc = await kubectl.json("-n", "demo", "get", "svc", "web")
    assert svc["spec"]["ports"] == [{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}]
    ing = await kubectl.json("-n", "demo", "get", "ingress", "ing")
    assert ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"] == {"name": "web", "port": {"number": 80}}
    template = (await kubectl.json("-n", "demo", "get", "deploy", "web"))["spec"]["template"]
    assert "creationTimestamp" not in template["metadata"]  # a zero Time is null, not 1970
    pdb = await kubectl.json("-n", "demo", "get", "pdb", "pdb")
    assert pdb["spec"]["minAvailable"] == 1
    await kubectl.ok("-n", "demo", "wait", "--for=condition=Complete", "job/j", "--timeout=30s")
    rows = _table(await kubectl.ok("-n", "demo", "get", "pods", "-l", "app=web"))
    assert len(rows) == 3 and all(r[2] == "Running" for r in rows[1:])


async def test_demo_hints_work(sandbox: Sandbox, kubectl: Kubectl) -> None:
    """Every command `make demo` suggests runs against the sandbox (with this kubectl)."""
    import shlex
    from pathlib import Path

    from gitopsd.cli.demo import ROOT, hints

    from .conftest import require_protos

    require_protos()
    await kubectl.ok("create", "namespace", "guestbook")
    await kubectl.ok("-n", "guestbook", "apply", "-f", str(ROOT / "examples" / "apps" / "guestbook"))
    await kubectl.ok("-n", "guestbook", "rollout", "status", "deploy/guestbook-ui", "--timeout=30s")
    text = hints(Path(sandbox.kubeconfig))
    commands = [shlex.split(line)[3:] for line in text.splitlines() if "--kubeconfig" in line]
    assert any(c[-2:] == ["get", "pods"] for c in commands)
    assert any("create" in c for c in commands)
    for args in commands:
        out = await kubectl.ok(*args)
        assert out.strip(), args
    rows = _table(await kubectl.ok("-n", "guestbook", "get", "pods"))
    assert rows[0][:3] == ["NAME", "READY", "STATUS"] and len(rows) > 1
