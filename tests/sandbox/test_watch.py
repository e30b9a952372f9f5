"""Watch streams over raw HTTP: chunked JSON lines, resourceVersion start, bookmarks, 410 Expired."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from gitopsd.sandbox import Sandbox

from .conftest import Http

pytestmark = pytest.mark.anyio
CM = "/api/v1/namespaces/default/configmaps"


@asynccontextmanager
async def watch(http: Http, path: str, **params: Any) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    query = {"watch": "true", **{k: str(v) for k, v in params.items()}}
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    resp = await http.session.get(http.sb.url + path, params=query,
                                  headers={"Authorization": f"Bearer {http.sb.token}"})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers.get("Transfer-Encoding") == "chunked"

    async def pump() -> None:
        async for line in resp.content:
            if line.strip():
                events.put_nowait(json.loads(line))

    task = asyncio.create_task(pump())
    try:
        yield events
    finally:
        task.cancel()
        resp.close()


async def next_event(q: asyncio.Queue[dict[str, Any]], skip_bookmarks: bool = True) -> dict[str, Any]:
    while True:
        ev = await asyncio.wait_for(q.get(), 5)
        if not (skip_bookmarks and ev["type"] == "BOOKMARK"):
            return ev


def cm(name: str, ns: str = "default") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "data": {"k": name}}


async def test_watch_from_list_resource_version(http: Http) -> None:
    await http.call("POST", CM, cm("before"))
    _, listing = await http.call("GET", CM)
    rv = listing["metadata"]["resourceVersion"]
    await http.call("POST", CM, cm("after"))
    async with watch(http, CM, resourceVersion=rv) as q:
        ev = await next_event(q)
        assert (ev["type"], ev["object"]["metadata"]["name"]) == ("ADDED", "after")
        assert ev["object"]["kind"] == "ConfigMap"
        await http.call("PATCH", CM + "/after", {"data": {"k": "2"}}, "application/merge-patch+json")
        ev = await next_event(q)
        assert ev["type"] == "MODIFIED" and ev["object"]["data"] == {"k": "2"}
        await http.call("DELETE", CM + "/after")
        ev = await next_event(q)
        assert ev["type"] == "DELETED"
        assert int(ev["object"]["metadata"]["resourceVersion"]) > int(rv)


async def test_watch_without_resource_version_sends_current_objects(http: Http) -> None:
    await http.call("POST", CM, cm("a"))
    await http.call("POST", CM, cm("b"))
    async with watch(http, CM, labelSelector="") as q:
        names = {(await next_event(q))["object"]["metadata"]["name"] for _ in range(2)}
        assert names == {"a", "b"}


async def test_watch_across_namespaces_and_with_selectors(http: Http) -> None:
    await http.call("POST", "/api/v1/namespaces", {"metadata": {"name": "other"}})
    async with watch(http, "/api/v1/configmaps", resourceVersion=http.sb.store.rv,
                     fieldSelector="metadata.name!=skip") as q:
        await http.call("POST", "/api/v1/namespaces/other/configmaps", cm("x", "other"))
        await http.call("POST", CM, cm("skip"))
        await http.call("POST", CM, cm("y"))
        got = [(await next_event(q))["object"]["metadata"] for _ in range(2)]
        assert [(m["namespace"], m["name"]) for m in got] == [("other", "x"), ("default", "y")]


async def test_bookmarks_only_when_allowed(http: Http) -> None:
    async with watch(http, CM, allowWatchBookmarks="true", resourceVersion=http.sb.store.rv) as q:
        ev = await next_event(q, skip_bookmarks=False)
        assert ev["type"] == "BOOKMARK"
        assert set(ev["object"]["metadata"]) == {"resourceVersion"}
        assert ev["object"]["kind"] == "ConfigMap"
    async with watch(http, CM, resourceVersion=http.sb.store.rv) as q:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(q.get(), 0.6)


async def test_too_old_resource_version_is_410_expired() -> None:
    import ssl

    import aiohttp

    async with Sandbox(history=5) as sb:
        ctx = ssl.create_default_context(cadata=sb.ca_pem.decode())
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
            http = Http(session, sb)
            for i in range(10):
                await http.call("POST", CM, cm(f"c{i}"))
            async with watch(http, CM, resourceVersion=2) as q:
                ev = await next_event(q)
                assert ev["type"] == "ERROR"
                assert ev["object"]["code"] == 410 and ev["object"]["reason"] == "Expired"
                assert ev["object"]["kind"] == "Status"
            # a recent resourceVersion still works
            async with watch(http, CM, resourceVersion=sb.store.rv - 1) as q:
                ev = await next_event(q)
                assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "c9"


async def test_watch_timeout_ends_the_stream(http: Http) -> None:
    resp = await http.session.get(http.sb.url + CM, params={"watch": "1", "timeoutSeconds": "1"},
                                  headers={"Authorization": f"Bearer {http.sb.token}"})
    body = await asyncio.wait_for(resp.read(), 5)
    assert body == b""
    assert http.sb.store.watcher_count() == 0


async def test_a_namespace_watch_sees_only_its_namespace(http: Http) -> None:
    await http.call("POST", "/api/v1/namespaces", {"metadata": {"name": "elsewhere"}})
    async with watch(http, CM, resourceVersion=http.sb.store.rv) as q:
        await http.call("POST", "/api/v1/namespaces/elsewhere/configmaps", cm("far", "elsewhere"))
        await http.call("POST", CM, cm("near"))
        ev = await next_event(q)
        assert (ev["object"]["metadata"]["namespace"], ev["object"]["metadata"]["name"]) == ("default", "near")


async def test_events_in_a_burst_arrive_in_order_then_bookmarks_resume(http: Http) -> None:
    # the sandbox fixture sends a bookmark after 0.2 s without a write on the stream
    async with watch(http, CM, allowWatchBookmarks="true", resourceVersion=http.sb.store.rv) as q:
        for i in range(5):
            await http.call("POST", CM, cm(f"burst-{i}"))
        names = [(await next_event(q))["object"]["metadata"]["name"] for _ in range(5)]
        assert names == [f"burst-{i}" for i in range(5)]
        for _ in range(2):  # the idle timer is armed again after each bookmark
            ev = await next_event(q, skip_bookmarks=False)
            assert ev["type"] == "BOOKMARK"
        await http.call("PATCH", CM + "/burst-0", {"data": {"k": "new"}}, "application/merge-patch+json")
        ev = await next_event(q)
        assert ev["type"] == "MODIFIED" and ev["object"]["data"] == {"k": "new"}
