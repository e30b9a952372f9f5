"""The etcd backend against a real 3-node etcd cluster: locks, expiry, fencing order, leader loss, outage."""

from __future__ import annotations

import time

import anyio
import pytest

from gitopsd.coord.base import CoordinationUnavailable, LeaseLost
from gitopsd.coord.etcd import EtcdBackend
from tests.coord.harness import EtcdCluster

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_a_lock_has_one_holder_and_leave_frees_it_at_once(etcd: EtcdCluster) -> None:
    a = EtcdBackend(etcd.endpoints, "ma", 3, advertise_url="http://a:9420")
    b = EtcdBackend(etcd.endpoints, "mb", 3)
    try:
        await a.join()
        await b.join()
        assert [m.name for m in await b.members()] == ["ma", "mb"]
        assert (await b.members())[0].advertise_url == "http://a:9420"
        assert await a.acquire("app-web") is True
        assert await b.acquire("app-web") is False
        assert await a.acquire("app-web") is True  # already ours
        assert await b.holders() == {"app-web": "ma"}
        await b.release("app-web")  # not b's: nothing happens
        assert await b.holders() == {"app-web": "ma"}
        await a.leave()  # graceful stop: the lease is revoked, its keys go with it
        assert await b.holders() == {}
        assert [m.name for m in await b.members()] == ["mb"]
        assert await b.acquire("app-web") is True
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_silent_member_stops_writing_before_its_lock_is_free(etcd: EtcdCluster) -> None:
    ttl = 2.0
    a = EtcdBackend(etcd.endpoints, "ma", ttl)
    b = EtcdBackend(etcd.endpoints, "mb", ttl * 3)
    try:
        await a.join()
        await b.join()
        assert await a.acquire("app-web")
        a_stopped = b_took = 0.0
        with anyio.fail_after(30):
            while not b_took:  # a no longer renews (a GC pause, a cut network)
                now = time.monotonic()
                if not a_stopped and not a.valid():
                    a_stopped = now
                if await b.acquire("app-web"):
                    b_took = time.monotonic()
                await anyio.sleep(0.02)
        assert a_stopped, "b took the lock while a still believed its lease alive"
        assert a_stopped <= b_took
        with pytest.raises(LeaseLost):
            await a.keepalive()
    finally:
        await a.aclose()
        await b.aclose()


async def test_leader_loss_keeps_the_lease_and_the_locks(etcd: EtcdCluster) -> None:
    a = EtcdBackend(etcd.endpoints, "ma", 6)
    try:
        await a.join()
        assert await a.acquire("app-web")
        leader = etcd.leader()
        etcd.kill(leader)
        # The remaining two elect a new leader; a renews through whichever endpoint answers.
        renewed = False
        with anyio.fail_after(30):
            while not renewed:
                try:
                    await a.keepalive()
                    renewed = True
                except CoordinationUnavailable:
                    await anyio.sleep(0.2)
        assert a.valid()
        assert await a.holders() == {"app-web": "ma"}
        assert await a.acquire("app-web")
    finally:
        await a.aclose()


async def test_full_outage_expires_the_lease_locally_then_a_new_join_works(etcd: EtcdCluster) -> None:
    a = EtcdBackend(etcd.endpoints, "ma", 2)
    try:
        await a.join()
        assert await a.acquire("app-web")
        etcd.stop_all()
        with pytest.raises(CoordinationUnavailable):
            await a.keepalive()
        with anyio.fail_after(10):
            while a.valid():
                await anyio.sleep(0.05)
        etcd.start_all()  # same data directories: the cluster comes back with its data
        # etcd restarts surviving leases' TTLs on a new leader: the old lease (and lock) may
        # live on for a TTL; joining again revokes it, so the member gets its apps back at once.
        await a.join()
        assert a.valid()
        assert await a.acquire("app-web")
    finally:
        await a.aclose()
