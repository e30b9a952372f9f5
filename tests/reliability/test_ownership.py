"""Ownership invariants with real daemon processes: two installations, shared and foreign objects.

Two gitopsd processes (instances "a" and "b") run on one sandbox process, each with apps that
collide on purpose: a foreign object made by hand, two apps of one installation rendering the
same object, and the same app name in both installations. Whatever happens, a gitopsd never
changes or deletes an object it does not own, every owned object is in its owner's SQLite
inventory and cluster record, and nothing is owned twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.procs import SandboxProc
from tests.conftest import require_tool
from tests.reliability.harness import (
    OWNER,
    Env,
    app_states,
    cluster_records,
    configmap,
    live_by_owner,
    local_app,
    state_inventories,
    wait_converged,
    wait_for,
    write_manifests,
)

pytestmark = pytest.mark.integration


def failed_with(env: Env, app: str, text: str) -> bool:
    assert env.daemon is not None
    state = app_states(env.daemon).get(app, {})
    return text in ((state.get("last_sync") or {}).get("message") or "")


def test_two_installations_shared_and_foreign_objects(tmp_path: Path) -> None:
    require_tool("kubectl")
    sandbox = SandboxProc.start(tmp_path / "sandbox", rollout_delay=0.1)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Env(tmp_path / "a", sandbox)
    b = Env(tmp_path / "b", sandbox)
    try:
        # Made by hand before any gitopsd runs.
        sandbox.client.post("/api/v1/namespaces", json={"metadata": {"name": "team"}}).raise_for_status()
        foreign = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "foreign", "namespace": "team"},
                   "data": {"by": "hand"}}
        sandbox.client.post("/api/v1/namespaces/team/configmaps", json=foreign).raise_for_status()

        web_a = write_manifests(tmp_path / "m" / "web-a", [configmap("web-a"), configmap("shared", by="web"),
                                                            configmap("foreign", by="gitopsd")])
        api_a = write_manifests(tmp_path / "m" / "api-a", [configmap("api-a"), configmap("shared", by="api")])
        web_b = write_manifests(tmp_path / "m" / "web-b", [configmap("web-b"), configmap("web-a", by="b")])
        apps_a = [local_app("web", web_a), local_app("api", api_a)]
        for app in apps_a:
            app.namespace = "team"
        app_b = local_app("web", web_b, allow_empty="true")
        app_b.namespace = "team"
        a.write_config(apps_a, interval="2s", daemon_extra='instance = "a"')
        b.write_config([app_b], interval="2s", daemon_extra='instance = "b"')
        a.start()
        # Let a's web take "shared" first, then start api and b.
        wait_for(lambda: owner_of(sandbox, "shared") != "", 30, "shared to be applied")
        b.start()

        wait_for(lambda: failed_with(a, "web", "foreign") and failed_with(a, "web", "not managed by gitopsd"), 30,
                 "web to refuse the foreign object")
        wait_for(lambda: failed_with(a, "api", "SharedResource") or failed_with(a, "web", "SharedResource"), 30,
                 "the second app rendering 'shared' to fail with SharedResource")
        wait_for(lambda: failed_with(b, "web", "SharedResource: owned by a/web, not by b/web"), 30,
                 "b's web to refuse a's object")

        def invariants() -> None:
            live = sandbox.get("/api/v1/namespaces/team/configmaps/foreign").json()
            assert live["data"] == {"by": "hand"} and OWNER not in (live["metadata"].get("annotations") or {})
            owners = {owner: set(objs) for owner, objs in live_by_owner(sandbox).items() if owner}
            seen: dict[tuple[str, str, str, str], str] = {}
            for owner, objs in owners.items():
                for obj in objs:
                    assert obj not in seen, f"{obj} owned by {seen[obj]} and {owner}"
                    seen[obj] = owner
            inventories = {f"a/{k}": v for k, v in state_inventories(a.state_dir).items()}
            inventories |= {f"b/{k}": v for k, v in state_inventories(b.state_dir).items()}
            records = cluster_records(sandbox)
            for owner, objs in owners.items():
                assert objs <= inventories.get(owner, set()), f"{owner} owns objects outside its inventory"
                assert objs <= records.get(owner, set()), f"{owner} owns objects outside its cluster record"
            for owner, refs in inventories.items():
                for ref in refs:
                    assert seen.get(ref, owner) == owner, f"{ref} in the inventory of {owner}, owned by {seen[ref]}"

        invariants()
        assert owner_of(sandbox, "web-a") == "a/web" and owner_of(sandbox, "web-b") == "b/web"

        # b empties its app: it deletes its own object, nothing of a's.
        write_manifests(web_b, [])
        wait_for(lambda: sandbox.get("/api/v1/namespaces/team/configmaps/web-b").status_code == 404, 30,
                 "b to prune its own object")
        # a's web drops "shared". If web owned it, web deletes it, and api (which renders it too and
        # was refused while web owned it) then creates its own copy: a new object owned by a/api.
        shared_owner = owner_of(sandbox, "shared")
        shared_uid = sandbox.get("/api/v1/namespaces/team/configmaps/shared").json()["metadata"]["uid"]
        write_manifests(web_a, [configmap("web-a")])
        wait_converged(a.daemon, ["web"], timeout=30)  # type: ignore[arg-type]

        def taken_over_by_api() -> bool:
            r = sandbox.get("/api/v1/namespaces/team/configmaps/shared")
            if r.status_code != 200:
                return False
            meta = r.json()["metadata"]
            replaced = meta["uid"] != shared_uid or shared_owner == "a/api"
            return replaced and (meta.get("annotations") or {}).get(OWNER) == "a/api"

        try:
            wait_for(taken_over_by_api, 60, "'shared' to be owned by a/api (deleted by web first if web owned it)")
        except AssertionError as exc:  # say what web last did and what it holds
            web = app_states(a.daemon).get("web")  # type: ignore[arg-type]
            raise AssertionError(
                f"{exc}; owner before: {shared_owner}; web: {web}; inventory: {state_inventories(a.state_dir).get('web')}; "
                f"record: {cluster_records(sandbox).get('a/web')}; live owner: {owner_of(sandbox, 'shared')}"
            ) from None
        assert owner_of(sandbox, "web-a") == "a/web"
        invariants()
    finally:
        a.stop()
        b.stop()
        sandbox.stop()


def owner_of(sandbox: SandboxProc, name: str) -> str:
    r = sandbox.get(f"/api/v1/namespaces/team/configmaps/{name}")
    if r.status_code != 200:
        return ""
    return str((r.json()["metadata"].get("annotations") or {}).get(OWNER, ""))
