"""Sync hooks against the sandbox: phases in order, generateName, delete policies, failures, Helm hooks."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitopsd.core.models import Health
from gitopsd.kube.hooks import HOOK_OF_LABEL, hook_phases, split
from tests.conftest import require_tool

from .conftest import Env, app_config, deployment

pytestmark = pytest.mark.anyio


def job(name: str, hook: str, *, generate: bool = True, fail: bool = False, **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"annotations": {"argocd.argoproj.io/hook": hook, **annotations}}
    meta["generateName" if generate else "name"] = f"{name}-" if generate else name
    template: dict[str, Any] = {
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36"}]}
    }
    if fail:
        template["metadata"] = {"annotations": {"sandbox.gitopsd.dev/fail": "true"}}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {"template": template}}


class Recorder:
    """Server-side order of events, from the sandbox's own store (what a watch would show)."""

    def __init__(self, env: Env):
        self.events: list[tuple[str, str, str, str]] = []
        env.sb.store.add_listener(self.on_change)

    def on_change(self, key: str, etype: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        conditions = {c["type"] for c in (obj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}
        state = next((s.lower() for s in ("Complete", "Failed", "Available") if s in conditions), "")
        self.events.append((etype, obj["kind"], obj["metadata"]["name"], state))

    def first(self, etype: str, kind: str, prefix: str, state: str = "") -> int:
        for i, (t, k, n, s) in enumerate(self.events):
            if t == etype and k == kind and n.startswith(prefix) and (not state or s == state):
                return i
        raise AssertionError(f"no {etype} {kind} {prefix}* {state} in {self.events}")


async def jobs(env: Env, prefix: str) -> list[dict[str, Any]]:
    listed = await env.cluster.client.request("GET", "/apis/batch/v1/namespaces/default/jobs")
    return [j for j in listed["items"] if j["metadata"]["name"].startswith(prefix)]


async def test_presync_then_sync_then_postsync_with_generate_name(env: Env) -> None:
    app = app_config()
    manifests = [
        deployment("web"),
        job("migrate", "PreSync"),
        job("smoke", "PostSync", **{"argocd.argoproj.io/hook-delete-policy": "HookSucceeded"}),
    ]
    recorder = Recorder(env)
    result = await env.cluster.sync(app, manifests, env.inventory())
    assert result.ok, result.message
    # The migration completed before the Deployment was created; the smoke test ran once it was ready.
    migrated = recorder.first("MODIFIED", "Job", "migrate-", "complete")
    created = recorder.first("ADDED", "Deployment", "web")
    assert migrated < created
    assert recorder.first("ADDED", "Job", "smoke-") > recorder.first("MODIFIED", "Deployment", "web", "available")
    hooks = [o for o in result.objects if o.action == "hook"]
    assert {o.ref.name.split("-")[0] for o in hooks} == {"migrate", "smoke"}
    assert all(o.health == Health.HEALTHY for o in hooks)
    # HookSucceeded: the smoke Job is gone; the migration Job (BeforeHookCreation) stays until next time.
    assert await jobs(env, "smoke-") == []
    migrations = await jobs(env, "migrate-")
    assert len(migrations) == 1 and migrations[0]["metadata"]["labels"][HOOK_OF_LABEL] == "web"
    # Hooks are not desired state: not in the inventory, not compared, not tracked.
    assert [r.kind for r in await env.inventory().current()] == ["Deployment"]
    assert env.cluster.in_sync(app, manifests) is True
    assert env.cluster.health(app, manifests) == Health.HEALTHY

    # A reconcile that does not run hooks (self-heal) creates no Job.
    again = await env.cluster.sync(app, manifests, env.inventory(), run_hooks=False)
    assert again.ok and not [o for o in again.objects if o.action == "hook"]
    assert [j["metadata"]["name"] for j in await jobs(env, "migrate-")] == [migrations[0]["metadata"]["name"]]

    # A sync that runs hooks replaces the earlier migration Job (BeforeHookCreation).
    third = await env.cluster.sync(app, manifests, env.inventory())
    assert third.ok, third.message
    now = await jobs(env, "migrate-")
    assert len(now) == 1 and now[0]["metadata"]["name"] != migrations[0]["metadata"]["name"]


async def test_failed_presync_stops_the_sync_and_runs_syncfail(env: Env) -> None:
    app = app_config()
    manifests = [
        deployment("web"),
        job("migrate", "PreSync", fail=True),
        job("cleanup", "SyncFail"),
        job("smoke", "PostSync"),
    ]
    result = await env.cluster.sync(app, manifests, env.inventory())
    assert not result.ok
    assert "PreSync hook failed" in result.message and "migrate-" in result.message
    assert env.sb.store.get("deployments.apps", "default", "web") is None  # nothing of Sync applied
    by_action = {o.ref.kind + "/" + o.ref.name.split("-")[0]: o.action for o in result.objects}
    assert by_action["Deployment/web"] == "skipped"
    assert by_action["Job/migrate"] == "failed" and by_action["Job/cleanup"] == "hook"
    assert len(await jobs(env, "cleanup-")) == 1
    assert await jobs(env, "smoke-") == []
    assert await env.inventory().current() == []


async def test_failed_postsync_fails_the_sync(env: Env) -> None:
    app = app_config()
    manifests = [
        deployment("web"),
        job("smoke", "PostSync", fail=True, **{"argocd.argoproj.io/hook-delete-policy": "HookFailed"}),
    ]
    result = await env.cluster.sync(app, manifests, env.inventory())
    assert not result.ok and "PostSync hook failed" in result.message
    assert env.sb.store.get("deployments.apps", "default", "web") is not None
    assert await jobs(env, "smoke-") == []  # HookFailed deleted it


async def test_waves_order_hooks_within_a_phase(env: Env) -> None:
    app = app_config()
    manifests = [
        job("second", "PreSync", generate=False, **{"argocd.argoproj.io/sync-wave": "5"}),
        job("first", "PreSync", generate=False, **{"argocd.argoproj.io/sync-wave": "-1"}),
    ]
    recorder = Recorder(env)
    result = await env.cluster.sync(app.model_copy(update={"allow_empty": True}), manifests, env.inventory())
    assert result.ok, result.message
    assert recorder.first("MODIFIED", "Job", "first", "complete") < recorder.first("ADDED", "Job", "second")


CHART = {
    "Chart.yaml": "apiVersion: v2\nname: hooked\nversion: 0.1.0\n",
    "templates/deployment.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: main, image: nginx:1.27}]}
""",
    "templates/migrate.yaml": """\
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-migrate
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "-5"
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  template:
    spec: {restartPolicy: Never, containers: [{name: m, image: busybox:1.36}]}
""",
    "templates/notify.yaml": """\
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-notify
  annotations:
    helm.sh/hook: post-install
spec:
  template:
    spec: {restartPolicy: Never, containers: [{name: n, image: busybox:1.36}]}
""",
    "templates/tests/test.yaml": """\
apiVersion: v1
kind: Pod
metadata:
  name: {{ .Release.Name }}-test
  annotations:
    helm.sh/hook: test
spec: {restartPolicy: Never, containers: [{name: t, image: busybox:1.36}]}
""",
}


async def test_helm_chart_hooks_are_mapped(env: Env, tmp_path: Path) -> None:
    helm = require_tool("helm")
    chart = tmp_path / "chart"
    for rel, text in CHART.items():
        (chart / rel).parent.mkdir(parents=True, exist_ok=True)
        (chart / rel).write_text(text)
    out = subprocess.run(  # noqa: ASYNC221 - before the sync, nothing else runs
        [helm, "template", "rel", str(chart), "--namespace", "default"],
        capture_output=True, text=True, check=True, timeout=120,
        env={"HOME": str(tmp_path), "KUBECONFIG": "/dev/null", "PATH": "/usr/bin:/bin"},
    ).stdout
    manifests = [d for d in yaml.safe_load_all(out) if d]
    assert {m["metadata"]["name"] for m in manifests} == {"rel", "rel-migrate", "rel-notify", "rel-test"}
    assert hook_phases(next(m for m in manifests if m["metadata"]["name"] == "rel-test")) == frozenset()
    hooks = {h.obj["metadata"]["name"]: h for h in split(manifests)}
    assert set(hooks) == {"rel-migrate", "rel-notify"}
    assert hooks["rel-migrate"].phases == {"PreSync"} and hooks["rel-migrate"].wave == -5
    assert hooks["rel-migrate"].delete_policies == {"BeforeHookCreation", "HookSucceeded"}
    assert hooks["rel-notify"].phases == {"PostSync"}

    recorder = Recorder(env)
    result = await env.cluster.sync(app_config(), manifests, env.inventory())
    assert result.ok, result.message
    assert recorder.first("MODIFIED", "Job", "rel-migrate", "complete") < recorder.first("ADDED", "Deployment", "rel")
    assert env.sb.store.get("pods", "default", "rel-test") is None  # test hooks are not run
    assert env.sb.store.get("jobs.batch", "default", "rel-migrate") is None  # hook-succeeded
    assert env.sb.store.get("jobs.batch", "default", "rel-notify") is not None
    # Named hook, default policy BeforeHookCreation: a second sync recreates it.
    uid = env.sb.store.get("jobs.batch", "default", "rel-notify")["metadata"]["uid"]
    again = await env.cluster.sync(app_config(), manifests, env.inventory())
    assert again.ok, again.message
    assert env.sb.store.get("jobs.batch", "default", "rel-notify")["metadata"]["uid"] != uid


def pod(name: str, hook: str, *, fail: bool = False) -> dict[str, Any]:
    annotations = {"gitopsd.dev/hook": hook}
    if fail:
        annotations["sandbox.gitopsd.dev/fail"] = "true"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": f"{name}-", "annotations": annotations},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36"}]},
    }


async def test_pod_hooks_must_succeed(env: Env) -> None:
    app = app_config()
    ok = await env.cluster.sync(app, [deployment("web"), pod("check", "Sync")], env.inventory())
    assert ok.ok, ok.message
    assert [o.message for o in ok.objects if o.ref.kind == "Pod"] == ["Sync hook succeeded"]

    failed = await env.cluster.sync(app, [deployment("web"), pod("check", "Sync", fail=True), job("cleanup", "SyncFail")], env.inventory())
    assert not failed.ok and failed.message.startswith("Sync hook failed: Pod default/check-")
    assert len(await jobs(env, "cleanup-")) == 1


async def test_a_hook_that_breaks_the_policy_refuses_the_sync_before_any_write(env: Env) -> None:
    from gitopsd.plugin.config import PolicyConfig

    rules = PolicyConfig(namespaces=["team-a"], deny_kinds=["batch/Job"])
    app = app_config(namespace="team-a").with_policy("team-a", rules)
    env.sb.reset_counters()
    result = await env.cluster.sync(app, [deployment("web"), job("migrate", "PreSync")], env.inventory())
    assert not result.ok and "refused by policy" in result.message and "Job" in result.message
    assert env.sb.counters()["writes"] == 0


async def test_a_fixed_hook_name_taken_by_a_foreign_object_is_neither_deleted_nor_reused(env: Env, kubectl: Any) -> None:
    foreign = job("migrate", "PreSync", generate=False)
    foreign["metadata"]["annotations"] = {}  # made by hand: no hook, no owner
    await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(foreign))
    result = await env.cluster.sync(app_config(), [deployment("web"), job("migrate", "PreSync", generate=False)], env.inventory())
    assert not result.ok and "migrate exists and is not managed by gitopsd" in result.message
    left = await jobs(env, "migrate")
    assert len(left) == 1 and HOOK_OF_LABEL not in (left[0]["metadata"].get("labels") or {})
