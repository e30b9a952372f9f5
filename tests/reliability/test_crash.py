"""kill -9 during applies, again and again (also with a full disk): after a restart gitopsd converges,
SQLite is sound, inventory == live."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from bench.procs import DaemonProc, SandboxProc, tool_env
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
# Slow writes, few in flight: an apply round takes a few seconds, so kills (within 0.8 s of its
# first write) land inside it whatever the speed of the machine.
SLOW_WRITES = {"rules": [{"verb": "write", "resource": "*", "latency_ms": 300}]}


def desired(index: int, round_: int) -> list[dict]:
    """App ``index`` in round ``round_``: values change every round, one object comes and goes."""
    docs = standard_app(index, revision=str(round_), objects=5)
    docs.append(configmap(f"rotating-{round_ % 3}", round=str(round_)))
    return docs


def round_objects_live(sandbox: SandboxProc, round_: int) -> int:
    """How many objects of round ``round_`` are live (of ROUND_OBJECTS): one list request."""
    r = sandbox.client.get("/api/v1/configmaps", params={"labelSelector": "gitopsd.dev/app"})
    r.raise_for_status()
    n = 0
    for item in r.json().get("items") or []:
        data, name = item.get("data") or {}, item["metadata"]["name"]
        if name.startswith("settings-") and data.get("revision") == str(round_):
            n += 1
        elif name == f"rotating-{round_ % 3}" and data.get("round") == str(round_):
            n += 1
    return n


ROUND_OBJECTS = APPS * 4  # per app: settings-0..2 and this round's rotating ConfigMap change every round


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
            daemon.kill()
            env.daemon = None
            # Inside the round: its writes had begun (the wait above; the first are the
            # namespaces and inventory records) and not all of its objects were applied.
            if round_objects_live(sandbox, round_) < ROUND_OBJECTS:
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


class DiskEnv(Env):
    """An Env whose state directory (SQLite, caches) is on a small filesystem of its own."""

    disk: Path = Path()

    @property
    def state_dir(self) -> Path:
        return self.disk / "state"


def mount_small_disk(path: Path, size: str) -> None:
    """A tmpfs of ``size`` at ``path`` (root only); in CI its absence fails the test, locally it skips."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        message = f"cannot mount a tmpfs for the full-disk test (needs root): {r.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def fill(path: Path) -> Path:
    """Write zeros into ``path/filler`` until the filesystem is full."""
    filler = path / "filler"
    # Unbuffered: a buffered file keeps what a partial last write left over, and flushes it
    # again on close, which then fails with ENOSPC (how full the disk gets depends on the
    # size of the state files, so that happened now and then).
    with open(filler, "wb", buffering=0) as f:
        chunk = bytes(64 * 1024)
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def test_kill_9_with_a_full_disk(tmp_path: Path) -> None:
    """The disk of the state directory fills up: gitopsd never corrupts SQLite (kill -9 on top), and
    once there is room again it converges with inventory == live."""
    require_tool("kubectl")
    rng = random.Random(4321)
    if not shutil.which("mount"):
        pytest.fail("mount(8) is needed for the full-disk test")
    disk = tmp_path / "disk"
    mount_small_disk(disk, "24m")
    sandbox = SandboxProc.start(tmp_path / "sandbox", faults=json.dumps(SLOW_WRITES), rollout_delay=0.1)
    env = DiskEnv(tmp_path, sandbox)
    env.disk = disk
    dirs = [tmp_path / "apps" / f"app-{i}" for i in range(APPS)]
    apps = [local_app(f"app-{i}", d) for i, d in enumerate(dirs)]
    names = [a.name for a in apps]
    try:
        for i, d in enumerate(dirs):
            write_manifests(d, desired(i, 0))
        env.write_config(apps, interval="30s", max_requests=4)
        daemon = env.start()
        wait_converged(daemon, names, timeout=90)
        env.stop()

        # A full disk at start: a clear refusal, not a traceback.
        filler = fill(disk)
        assert shutil.disk_usage(disk).free < 64 * 1024
        log_size = env.log.stat().st_size
        daemon = DaemonProc.start(env.root / "gitopsd.toml", env.port, env.token, env.log, env=tool_env())
        assert daemon.proc.wait(60) == 1
        said = env.log.read_text(errors="replace")[log_size:]
        assert "cannot open the state database" in said and "Traceback" not in said, said[-2000:]
        assert integrity_of_copy(env.state_dir, tmp_path / "copy-start") == "ok"
        filler.unlink()

        # The disk fills up while gitopsd runs: before a round (nothing may be applied, since the
        # inventory is written first) or in the middle of its applies; kill -9 a moment later.
        for round_, when in ((1, "before"), (2, "mid-apply"), (3, "before"), (4, "mid-apply")):
            env.write_config(apps, interval="30s", max_requests=4)
            daemon = env.start()
            log_size = env.log.stat().st_size
            sandbox.reset_counters()
            if when == "before":
                filler = fill(disk)
            for i, d in enumerate(dirs):
                write_manifests(d, desired(i, round_))
            if when == "before":
                wait_for(lambda n=log_size: "database or disk is full" in env.log.read_text(errors="replace")[n:], 30,
                         f"round {round_} to meet the full disk")
            else:
                wait_for(lambda: sandbox.counters()["writes"] > 0, 30, f"a write of round {round_}")
                filler = fill(disk)
            time.sleep(rng.uniform(0.2, 1.5))
            assert daemon.alive(), f"gitopsd died on a full disk (exit {daemon.proc.returncode}): see {env.log}"
            daemon.kill()
            env.daemon = None
            copy = tmp_path / f"copy-{round_}"
            assert integrity_of_copy(env.state_dir, copy) == "ok", f"state.db corrupt after full-disk round {round_}"
            # Nothing is live that the inventory does not know (it is written before any apply).
            inventories = state_inventories(copy)
            for app, objects in live_owned(sandbox).items():
                assert set(objects) <= inventories.get(app, set()), f"round {round_}: {app} has uninventoried objects"
            filler.unlink()

        final = 5
        for i, d in enumerate(dirs):
            write_manifests(d, desired(i, final))
        env.write_config(apps, interval="30s", max_requests=4)
        daemon = env.start()
        wait_for(lambda: revisions_live(sandbox, final) == APPS, 90, "the final round to be live")
        wait_converged(daemon, names, timeout=90)
        assert integrity_check(env.state_dir) == "ok"
        live = {app: set(objs) for app, objs in live_owned(sandbox).items()}
        inventories = state_inventories(env.state_dir)
        assert live == {n: inventories.get(n, set()) for n in names}, "inventory differs from what is live"
    finally:
        env.stop()
        sandbox.stop()
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


def integrity_of_copy(state_dir: Path, dest: Path) -> str:
    """integrity_check of a copy of state.db and its WAL (SQLite cannot open them on a full disk:
    a reader needs room for the shared-memory file). The copy is what a restart would read."""
    dest.mkdir()
    for name in ("state.db", "state.db-wal"):
        if (state_dir / name).exists():
            shutil.copy2(state_dir / name, dest / name)
    return integrity_check(dest)


def _healthy(daemon: DaemonProc) -> bool:
    try:
        return daemon.client.get("/healthz", timeout=1).status_code == 200
    except Exception:
        return False
