"""kill -9 during applies, again and again: after a restart gitopsd converges, SQLite is sound, inventory == live."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from bench.procs import SandboxProc
from tests.conftest import require_tool
from tests.reliability.harness import (
    Env,
    cluster_records,
    configmap,
    integrity_check,
    live_by_owner,
    live_owned,
    local_app,
    standard_app,
    state_inventories,
    wait_converged,
    wait_for,
    write_manifests,
)

pytestmark = pytest.mark.integration

APPS = 5
KILLS = 10
# Slow writes, few in flight: an apply round takes about a second, so kills land inside it.
SLOW_WRITES = {"rules": [{"verb": "write", "resource": "*", "latency_ms": 120}]}


def desired(index: int, round_: int) -> list[dict]:
    """App ``index`` in round ``round_``: values change every round, one object comes and goes."""
    docs = standard_app(index, revision=str(round_), objects=5)
    docs.append(configmap(f"rotating-{round_ % 3}", round=str(round_)))
    return docs


def revisions_live(sandbox: SandboxProc, round_: int) -> int:
    """How many apps show round ``round_`` live."""
    n = 0
    for i in range(APPS):
        r = sandbox.get(f"/api/v1/namespaces/app-{i}/configmaps/settings-0")
        if r.status_code == 200 and r.json()["data"]["revision"] == str(round_):
            n += 1
    return n


def test_kill_9_during_applies(tmp_path: Path) -> None:
    """Ten SIGKILLs at random points of apply rounds, then one clean run: sound state, no orphan."""
    require_tool("kubectl")
    rng = random.Random(1234)
    sandbox = SandboxProc.start(tmp_path / "sandbox", faults=json.dumps(SLOW_WRITES), rollout_delay=0.1)
    env = Env(tmp_path, sandbox)
    dirs = [tmp_path / "apps" / f"app-{i}" for i in range(APPS)]
    apps = [local_app(f"app-{i}", d) for i, d in enumerate(dirs)]
    names = [a.name for a in apps]
    mid_apply = 0
    try:
        for round_ in range(KILLS):
            for i, d in enumerate(dirs):
                write_manifests(d, desired(i, round_))
            env.write_config(apps, interval="30s", max_requests=4)
            sandbox.reset_counters()
            daemon = env.start()
            wait_for(lambda: sandbox.counters()["writes"] > 0, 20, "the first write of the round", interval=0.02)
            time.sleep(rng.uniform(0.0, 0.8))
            writes = sandbox.counters()["writes"]
            daemon.kill()
            env.daemon = None
            done = revisions_live(sandbox, round_)
            if writes > 0 and done < APPS:
                mid_apply += 1
            assert integrity_check(env.state_dir) == "ok", f"state.db corrupt after kill {round_}"
        assert mid_apply >= KILLS // 2, f"only {mid_apply} of {KILLS} kills landed inside an apply round"

        final = KILLS
        for i, d in enumerate(dirs):
            write_manifests(d, desired(i, final))
        env.write_config(apps, interval="30s", max_requests=4)
        daemon = env.start()
        wait_for(lambda: revisions_live(sandbox, final) == APPS, 60, "the final round to be live")
        wait_converged(daemon, names, timeout=60)

        assert integrity_check(env.state_dir) == "ok"
        live = live_owned(sandbox)
        for app, objects in live.items():
            assert len(objects) == len(set(objects)), f"duplicates in {app}"
        inventories = state_inventories(env.state_dir)
        live_sets = {app: set(objs) for app, objs in live.items()}
        assert live_sets == {n: inventories.get(n, set()) for n in names}, "inventory differs from what is live"
        # Ownership: every object an app has live carries its owner annotation, and the inventory
        # record in the cluster says the same as SQLite.
        by_owner = {owner: set(objs) for owner, objs in live_by_owner(sandbox).items() if owner}
        assert by_owner == {f"gitopsd/{n}": live_sets[n] for n in names}, "owner annotations differ from the app labels"
        assert cluster_records(sandbox) == {f"gitopsd/{n}": inventories.get(n, set()) for n in names}, (
            "the cluster's inventory records differ from SQLite"
        )
        for i in range(APPS):
            owned = {o[3] for o in live_sets[f"app-{i}"]}
            want = {d["metadata"]["name"] for d in desired(i, final)}  # the namespace gitopsd creates is not owned
            assert owned == want, f"app-{i}: live {sorted(owned)} != desired {sorted(want)} (orphans or missing)"
    finally:
        env.stop()
        sandbox.stop()
