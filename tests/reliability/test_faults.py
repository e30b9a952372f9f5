"""Injected API faults: every app converges, nothing duplicated or orphaned, the daemon never exits."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bench.procs import SandboxProc
from tests.conftest import require_tool
from tests.reliability.harness import (
    Env,
    configmap,
    integrity_check,
    live_owned,
    local_app,
    standard_app,
    state_inventories,
    wait_converged,
    wait_for,
    write_manifests,
)

pytestmark = pytest.mark.integration

# About 20 % of requests of every verb fail: 15 % errors (500, 503, 429 with Retry-After),
# 3 % connections reset, 2 % stalled past the client's request timeout.
FAULTS = {
    "rules": [
        {"verb": "*", "resource": "*", "error_rate": 0.15, "code": [500, 503, 429], "retry_after": 1},
        {"verb": "*", "resource": "*", "drop_rate": 0.03},
        {"verb": "*", "resource": "*", "stall_rate": 0.02, "stall_seconds": 4},
    ]
}
APPS = 10


def test_injected_faults_converge_without_duplicates_or_orphans(tmp_path: Path) -> None:
    """20 % faults across verbs while apps are created, changed and pruned; then live == inventory."""
    require_tool("kubectl")
    sandbox = SandboxProc.start(tmp_path / "sandbox", faults=json.dumps(FAULTS), seed=8, rollout_delay=0.1)
    env = Env(tmp_path, sandbox)
    try:
        dirs = [write_manifests(tmp_path / "apps" / f"app-{i}", standard_app(i, objects=5)) for i in range(APPS)]
        apps = [local_app(f"app-{i}", d) for i, d in enumerate(dirs)]
        env.write_config(apps, interval="20s", request_timeout="2s")
        daemon = env.start()
        names = [a.name for a in apps]
        wait_converged(daemon, names, timeout=90)

        # Change every other app while faults continue: new values, one object removed (prune),
        # one added. Then the others get a forced refresh through the API.
        for i in range(0, APPS, 2):
            docs = standard_app(i, revision="2", objects=5)
            docs = [d for d in docs if d["metadata"]["name"] != "settings-0"] + [configmap("extra", added="yes")]
            write_manifests(dirs[i], docs)
        for i in range(1, APPS, 2):
            r = daemon.post(f"/api/v1/apps/app-{i}/refresh")
            assert r.status_code == 202, r.text
        time.sleep(1.0)  # let the local sources notice (debounced)

        def changes_live() -> bool:
            # Read through the faulty sandbox too: a failed read just means "not yet".
            for i in range(0, APPS, 2):
                cm = sandbox.get(f"/api/v1/namespaces/app-{i}/configmaps/settings-1")
                if cm.status_code != 200 or cm.json()["data"]["revision"] != "2":
                    return False
                if sandbox.get(f"/api/v1/namespaces/app-{i}/configmaps/settings-0").status_code != 404:
                    return False
            return True

        wait_for(changes_live, 90, "the changed apps to be applied and pruned under faults")
        wait_converged(daemon, names, timeout=90)
        before = {a["name"]: a["reconciles"] for a in daemon.apps()}
        assert all(before[f"app-{i}"] >= 2 for i in range(1, APPS, 2)), f"refreshes did not run: {before}"
        injected = sandbox.faults()["injected"]
        assert sum(injected.values()) >= 20 and len(injected) >= 3, f"too few faults were injected: {injected}"
        assert daemon.alive()
        health = daemon.client.get("/healthz")
        assert health.status_code == 200

        # Now look without faults: what is live is exactly what the inventories say.
        sandbox.set_faults(None)
        time.sleep(0.5)
        # Faults may still be settling a last retry: converge once more without them.
        wait_converged(daemon, names, timeout=60)
        live = live_owned(sandbox)
        inventories = state_inventories(env.state_dir)
        for app, objects in live.items():
            assert len(objects) == len(set(objects)), f"duplicate objects of {app}: {objects}"
        live_sets = {app: set(objs) for app, objs in live.items()}
        assert set(live_sets) == set(names)
        assert live_sets == {n: inventories.get(n, set()) for n in names}, "live objects differ from the inventories"
        for i in range(0, APPS, 2):
            owned = {obj[3] for obj in live_sets[f"app-{i}"]}
            assert "settings-0" not in owned, "a removed object was not pruned"
            assert "extra" in owned
            cm = sandbox.get(f"/api/v1/namespaces/app-{i}/configmaps/settings-1").json()
            assert cm["data"]["revision"] == "2"
        assert integrity_check(env.state_dir) == "ok"
        # Only the daemon writes: failed writes prove the faults reached it (and it got past them).
        rows = sandbox.counters()["requests"]
        failed_writes = sum(r["count"] for r in rows if r["verb"] in ("apply", "patch", "create", "delete")
                            and r["code"] >= 400)
        assert failed_writes >= 3, f"the daemon's writes met too few faults: {rows}"
        assert daemon.alive(), "gitopsd exited under faults"
    finally:
        code = env.stop()
        sandbox.stop()
    assert code == 0, f"gitopsd exited with {code} on SIGTERM"
