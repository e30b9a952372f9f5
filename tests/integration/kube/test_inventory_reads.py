"""How the inventory records are read: one shared LIST for many started apps, a GET for a lone one.

Counted with the sandbox's request counters (verb ``get``/``list`` on ``configmaps``: the apps
here apply Services only, so every ConfigMap request is a record read). Each record is written
beforehand as another gitopsd would have, with an object SQLite does not hold: finding it in
the app's SQLite inventory after the sync proves the record was read (the record wins).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from gitopsd.core.errors import ApplyError
from gitopsd.core.models import ObjectRef, SyncResult
from gitopsd.kube import inventory as inventory_module
from gitopsd.kube.inventory import InventoryRecord, write_record
from gitopsd.sandbox import Sandbox

from .conftest import Env, app_config, eventually

pytestmark = pytest.mark.anyio

RECORDS = "gitopsd-system"
APPS = [f"app{i}" for i in range(12)]


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
    }


def old(app: str, *extra: str) -> frozenset[ObjectRef]:
    """What the record of ``app`` holds: objects SQLite never saw."""
    return frozenset(ObjectRef("", "v1", "Service", "default", n) for n in (f"old-{app}", *extra))


def record_reads(sb: Sandbox) -> dict[str, int]:
    """Record reads by verb (every ConfigMap GET or LIST: the apps apply no ConfigMap)."""
    counts: Counter[str] = Counter()
    for row in sb.counters()["requests"]:
        if row["resource"] == "configmaps" and row["verb"] in ("get", "list"):
            counts[row["verb"]] += row["count"]
    return dict(counts)


async def write_records(env: Env, apps: list[str], *extra: str) -> None:
    for app in apps:
        await write_record(env.cluster.client, RECORDS, InventoryRecord("gitopsd", app, old(app, *extra)))


def start(env: Env, apps: list[str]) -> None:
    """Announce ``apps`` to the cluster, as each app's first reconcile does (Cluster.started)."""
    for app in apps:
        env.cluster.started(app)


async def sync(env: Env, app: str) -> SyncResult:
    return await env.cluster.sync(app_config(app), [service(f"svc-{app}")], env.inventory(app))


async def sync_all(env: Env, apps: list[str]) -> list[SyncResult]:
    return list(await asyncio.gather(*(sync(env, app) for app in apps)))


async def held(env: Env, app: str) -> set[str]:
    return {r.name for r in await env.store.inventory(app)}


async def test_one_list_reads_the_records_of_every_started_app(env: Env) -> None:
    await write_records(env, APPS)
    env.sb.reset_counters()
    start(env, APPS)
    results = await sync_all(env, APPS)  # all at once: they wait for the same LIST
    assert all(r.ok for r in results), [r.message for r in results]
    assert record_reads(env.sb) == {"list": 1}
    for app in APPS:
        assert await held(env, app) == {f"old-{app}", f"svc-{app}"}  # the record won over SQLite

    env.sb.reset_counters()
    assert all(r.ok for r in await sync_all(env, APPS))
    assert record_reads(env.sb) == {}  # read once per app and process

    # Apps started later, one by one, are not served by that LIST: each reads its own record,
    # written after the LIST (by another member before the takeover, say).
    await write_records(env, ["late"])
    env.sb.reset_counters()
    env.cluster.started("late")
    assert (await sync(env, "late")).ok
    assert record_reads(env.sb) == {"get": 1}
    assert await held(env, "late") == {"old-late", "svc-late"}


async def test_an_app_started_while_the_list_is_in_flight_is_not_served_by_it(env: Env) -> None:
    """The LIST may have been answered before the app's record was written: the app reads it itself."""
    await write_records(env, APPS)
    start(env, APPS)
    env.sb.reset_counters()
    env.sb.set_faults({"rules": [{"verb": "list", "resource": "configmaps", "latency_ms": 500}]})
    try:
        first = asyncio.ensure_future(sync_all(env, APPS))
        await eventually(lambda: env.cluster.records.lists == 1)
        await write_records(env, ["late"])
        env.cluster.started("late")
        late = await sync(env, "late")
        assert all(r.ok for r in await first)
    finally:
        env.sb.set_faults(None)
    assert late.ok, late.message
    assert record_reads(env.sb) == {"list": 1, "get": 1}
    assert await held(env, "late") == {"old-late", "svc-late"}


async def test_a_stopped_app_reads_its_record_again_when_it_starts(env: Env) -> None:
    start(env, APPS)
    assert all(r.ok for r in await sync_all(env, APPS))
    # app0 stops here; another member runs it and its record grows; app0 comes back.
    env.cluster.untrack("app0")
    await write_records(env, ["app0"], "svc-app0", "theirs")
    env.sb.reset_counters()
    env.cluster.started("app0")
    assert (await sync(env, "app0")).ok
    assert record_reads(env.sb) == {"get": 1}
    assert await held(env, "app0") == {"old-app0", "svc-app0", "theirs"}


async def test_many_apps_started_again_share_a_new_list(env: Env) -> None:
    start(env, APPS)
    assert all(r.ok for r in await sync_all(env, APPS))
    for app in APPS:  # a takeover: every app stops, another member writes, they come back
        env.cluster.untrack(app)
    await write_records(env, APPS, "theirs")
    env.sb.reset_counters()
    start(env, APPS)
    assert all(r.ok for r in await sync_all(env, APPS))
    assert record_reads(env.sb) == {"list": 1}
    for app in APPS:
        assert await held(env, app) == {f"old-{app}", f"svc-{app}", "theirs"}


async def test_the_list_is_paged(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inventory_module, "LIST_PAGE", 5)
    await write_records(env, APPS)
    env.sb.reset_counters()
    start(env, APPS)
    assert all(r.ok for r in await sync_all(env, APPS))
    assert record_reads(env.sb) == {"list": 3}  # 12 records, 5 a page
    for app in APPS:
        assert await held(env, app) == {f"old-{app}", f"svc-{app}"}


async def test_a_failed_list_fails_every_app_waiting_for_it_and_is_tried_again(env: Env) -> None:
    await write_records(env, APPS)
    start(env, APPS)
    env.sb.set_faults({"rules": [{"verb": "list", "resource": "configmaps", "error_rate": 1.0, "code": 400}]})
    try:
        outcomes = await asyncio.gather(*(sync(env, app) for app in APPS), return_exceptions=True)
    finally:
        env.sb.set_faults(None)
    for app, outcome in zip(APPS, outcomes, strict=True):
        assert isinstance(outcome, ApplyError) and outcome.reason == "InventoryUnavailable", outcome
        assert f"cannot list the inventory records in {RECORDS} (for gitopsd-inventory.gitopsd.{app}): 400" in str(
            outcome
        )
    assert record_reads(env.sb) == {"list": 1}
    for app in APPS:
        assert await held(env, app) == set()  # nothing applied, nothing recorded

    env.sb.reset_counters()
    assert all(r.ok for r in await sync_all(env, APPS))
    assert record_reads(env.sb) == {"list": 1}
    for app in APPS:
        assert await held(env, app) == {f"old-{app}", f"svc-{app}"}


async def test_without_the_right_to_list_each_app_gets_its_record(env: Env) -> None:
    await write_records(env, APPS)
    start(env, APPS)
    env.sb.reset_counters()
    env.sb.set_faults({"rules": [{"verb": "list", "resource": "configmaps", "error_rate": 1.0, "code": 403}]})
    try:
        results = await sync_all(env, APPS)
    finally:
        env.sb.set_faults(None)
    assert all(r.ok for r in results), [r.message for r in results]
    assert record_reads(env.sb) == {"list": 1, "get": len(APPS)}  # refused once, never asked again
    for app in APPS:
        assert await held(env, app) == {f"old-{app}", f"svc-{app}"}


async def test_apps_not_started_get_their_own_record(env: Env) -> None:
    """Apps never announced (``prune_all`` of a removed app, a cluster used directly): one GET each, as before."""
    await write_records(env, APPS)
    env.sb.reset_counters()
    assert all(r.ok for r in await sync_all(env, APPS))
    assert record_reads(env.sb) == {"get": len(APPS)}
    for app in APPS:
        assert await held(env, app) == {f"old-{app}", f"svc-{app}"}
