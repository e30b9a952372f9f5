"""Health waits wake only for their own objects: a change elsewhere in the live cache does not wake them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gitopsd.kube.cache import LiveCache

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def cm(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}}


def managed(name: str, rv: str, **metadata: Any) -> dict[str, Any]:
    """``cm(name)`` at resourceVersion ``rv`` with gitopsd's managed-by label (and ``metadata``)."""
    obj = cm(name)
    obj["metadata"].update(resourceVersion=rv, labels={"app.kubernetes.io/managed-by": "gitopsd"}, **metadata)
    return obj


async def settle() -> None:
    for _ in range(20):  # let every woken task run (no wall clock)
        await asyncio.sleep(0)


async def test_a_keyed_wait_ignores_other_objects_and_wakes_on_its_own() -> None:
    cache = LiveCache(None, lambda key, obj: None, None)  # type: ignore[arg-type]
    mine, other = ("", "ConfigMap", "ns", "mine"), ("", "ConfigMap", "ns", "other")
    keyed = asyncio.create_task(cache.wait_change(3600, keys=[mine]))
    anything = asyncio.create_task(cache.wait_change(3600))
    await settle()
    cache._signal(other, cm("other"))
    await settle()
    assert anything.done()  # without keys: any change wakes the caller
    assert not keyed.done()
    cache._signal(mine, cm("mine"))
    await settle()
    assert keyed.done()
    assert cache._key_waiters == {}  # nothing left registered


def test_only_the_exact_echo_of_a_recorded_apply_skips_parsing() -> None:
    """A watch line is dropped unparsed only when it is an ADDED/MODIFIED event naming exactly one
    resourceVersion, the one an apply answer stored for an object of the informer's kind, with its
    name and namespace; every other line is parsed (and judged by ``_put``) as before."""
    from gitopsd.core import jsonio
    from gitopsd.kube.discovery import Resource

    configmaps = Resource("", "v1", "ConfigMap", "configmaps", True)
    secrets = Resource("", "v1", "Secret", "secrets", True)
    cache = LiveCache(None, lambda key, obj: None, None)  # type: ignore[arg-type]
    answer = cm("mine")
    answer["metadata"].update(resourceVersion="42", labels={"app.kubernetes.io/managed-by": "gitopsd"})
    cache.record(answer)

    def line(kind: str, obj: dict[str, Any]) -> bytes:
        return b'{"type":"' + kind.encode() + b'","object":' + jsonio.dumps(obj) + b"}\n"

    # A reference to the recorded object ahead of its own metadata: 42, mine and ns all appear.
    other = {"apiVersion": "v1", "kind": "ConfigMap",
             "spec": {"claimRef": {"name": "mine", "namespace": "ns", "resourceVersion": "42"}},
             "metadata": {"name": "other", "namespace": "ns", "resourceVersion": "43"}}
    renamed = cm("another")
    renamed["metadata"]["resourceVersion"] = "42"
    for refused in (
        line("DELETED", answer),  # a deletion is never an echo
        line("ADDED", other),  # names 42 too, but not as its only resourceVersion
        line("ADDED", renamed),  # not the recorded object's name
    ):
        assert cache._echo(configmaps, refused) is None
    assert cache._echo(secrets, line("ADDED", answer)) is None  # another kind's informer
    assert cache._echo(configmaps, line("ADDED", answer)) == "42"
    assert cache.echoes_skipped == 1
    assert cache._echo(configmaps, line("MODIFIED", answer)) is None  # once only


async def test_an_object_stored_while_a_health_wait_waits_for_it_is_handed_over_unparsed() -> None:
    """The object a change stores is handed, once, to the next read of a key a wait is waiting on
    (the health wait reads it as soon as it wakes) instead of parsing the JSON just encoded; a key
    nobody waits on keeps nothing but its JSON, and every other read parses a copy of its own."""
    cache = LiveCache(None, lambda key, obj: None, None)  # type: ignore[arg-type]
    mine, other = ("", "ConfigMap", "ns", "mine"), ("", "ConfigMap", "ns", "other")
    waiting = asyncio.create_task(cache.wait_change(3600, keys=[mine]))
    await settle()

    cache._put(managed("other", "7"))
    cache._put(managed("mine", "8"))
    await settle()
    assert waiting.done()
    assert list(cache._fresh) == [mine]  # nothing kept for the key nobody waits on
    first = cache.get(mine)
    assert cache.fresh_reads == 1
    again = cache.get(mine)
    assert again == first and again is not first  # handed over once; then parsed copies
    assert cache.get(other) == managed("other", "7")
    assert cache.fresh_reads == 1 and cache._fresh == {}


async def test_an_apply_answer_is_never_handed_over() -> None:
    """``record`` stores the caller's own answer (which it may go on reading): reads parse copies."""
    cache = LiveCache(None, lambda key, obj: None, None)  # type: ignore[arg-type]
    mine = ("", "ConfigMap", "ns", "mine")
    waiting = asyncio.create_task(cache.wait_change(3600, keys=[mine]))
    await settle()
    answer = managed("mine", "9")
    cache.record(answer)
    await settle()
    assert waiting.done()
    live = cache.get(mine)
    assert live == answer and live is not answer
    assert cache.fresh_reads == 0


async def test_a_wait_runs_no_task_of_its_own_and_leaves_nothing_behind() -> None:
    """A wait is one future and one timer: no extra task per wait (``asyncio.wait_for`` ran one on
    Python 3.11), woken by a change or by its timeout, and unregistered either way."""
    cache = LiveCache(None, lambda key, obj: None, None)  # type: ignore[arg-type]
    mine = ("", "ConfigMap", "ns", "mine")
    before = len(asyncio.all_tasks())
    keyed = asyncio.create_task(cache.wait_change(3600, keys=[mine]))
    anything = asyncio.create_task(cache.wait_change(3600))
    await settle()
    assert len(asyncio.all_tasks()) == before + 2  # the two waiting tasks, nothing under them
    cache._signal(mine, cm("mine"))
    await settle()
    assert keyed.done() and anything.done()
    timed_out = asyncio.create_task(cache.wait_change(0, keys=[mine]))
    await settle()
    assert timed_out.done()  # the timeout ends it without any change
    assert cache._key_waiters == {} and not cache._any_waiters


async def test_a_watch_event_loses_its_managed_fields_in_place_and_an_apply_answer_keeps_them() -> None:
    """The object of a watch event is the cache's own: its managedFields are dropped from it (no
    copy), and that very object is handed to the health wait; an apply answer is left untouched."""
    cache = LiveCache(None, lambda key, obj: None, None)  # type: ignore[arg-type]
    mine, answered = ("", "ConfigMap", "ns", "mine"), ("", "ConfigMap", "ns", "answered")
    waiting = asyncio.create_task(cache.wait_change(3600, keys=[mine]))
    await settle()

    def live(name: str, rv: str) -> dict[str, Any]:
        return managed(name, rv, managedFields=[{"manager": "gitopsd", "operation": "Apply"}])

    event = live("mine", "8")
    cache._put(event)
    await settle()
    assert waiting.done()
    assert "managedFields" not in event["metadata"]
    assert cache.get(mine) is event  # handed over as it is, no copy made to slim it
    answer = live("answered", "9")
    cache.record(answer)
    assert answer["metadata"]["managedFields"]  # the caller's answer: not changed
    assert "managedFields" not in cache.get(answered)["metadata"]  # type: ignore[index]
