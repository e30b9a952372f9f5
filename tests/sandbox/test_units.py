"""Pure units: patches, field sets, selectors, fault specs."""

from __future__ import annotations

import pytest

from gitopsd.sandbox.faults import Faults, parse_spec
from gitopsd.sandbox.managed import field_set, from_fields_v1, path_string, to_fields_v1
from gitopsd.sandbox.patch import json_patch, merge_patch, strategic_merge
from gitopsd.sandbox.selectors import parse_label_selector
from gitopsd.sandbox.status import ApiError


def test_merge_patch_rfc7386() -> None:
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": [1]}) == {
        "a": 1, "b": {"d": 3, "e": 4}, "f": [1]}


def test_json_patch_ops_and_failures() -> None:
    doc = {"a": [1, 2], "b": {"c": 1}}
    out = json_patch(doc, [{"op": "add", "path": "/a/-", "value": 3}, {"op": "move", "from": "/b/c", "path": "/d"},
                           {"op": "copy", "from": "/a", "path": "/e"}, {"op": "remove", "path": "/a/0"}])
    assert out == {"a": [2, 3], "b": {}, "d": 1, "e": [1, 2, 3]}
    assert doc == {"a": [1, 2], "b": {"c": 1}}
    with pytest.raises(ApiError):
        json_patch(doc, [{"op": "replace", "path": "/missing", "value": 1}])


def test_strategic_merge_directives() -> None:
    live = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}],
                     "ports": [{"port": 80}], "finalizers": ["x"]}}
    patch = {"spec": {"containers": [{"name": "b", "$patch": "delete"}, {"name": "c", "image": "3"}],
                      "ports": [{"port": 81}]}}
    out = strategic_merge(live, patch)
    assert [c["name"] for c in out["spec"]["containers"]] == ["a", "c"]
    assert out["spec"]["ports"] == [{"port": 80}, {"port": 81}]
    replaced = strategic_merge(live, {"spec": {"containers": [{"$patch": "replace"}, {"name": "z", "image": "9"}]}})
    assert replaced["spec"]["containers"] == [{"name": "z", "image": "9"}]
    # custom resources: lists are atomic
    assert strategic_merge({"spec": {"containers": [{"name": "a"}]}}, {"spec": {"containers": [{"name": "b"}]}},
                           crd=True)["spec"]["containers"] == [{"name": "b"}]


def test_field_set_round_trip_and_paths() -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}, "finalizers": ["f"]},
           "spec": {"containers": [{"name": "c", "image": "i", "args": ["x"]}]}, "status": {"phase": "Running"}}
    fields = field_set(obj, "main", has_status=True, crd=False)
    assert ("f:metadata", "f:labels", "f:a") in fields
    assert ("f:metadata", "f:finalizers", 'v:"f"') in fields
    assert ("f:spec", "f:containers", 'k:{"name":"c"}', "f:args") in fields
    assert not any(p[0] == "f:status" for p in fields)
    tree = to_fields_v1(fields)
    assert tree["f:spec"]["f:containers"]['k:{"name":"c"}']["."] == {}
    assert from_fields_v1(tree) == fields
    assert path_string(("f:spec", "f:containers", 'k:{"name":"c"}', "f:image")) == '.spec.containers[name="c"].image'


def test_label_selectors() -> None:
    pred = parse_label_selector("env in (prod, stage),tier!=db,!legacy,app")
    assert pred is not None
    assert pred({"metadata": {"labels": {"env": "prod", "tier": "web", "app": "x"}}})
    assert not pred({"metadata": {"labels": {"env": "prod", "tier": "db", "app": "x"}}})
    assert not pred({"metadata": {"labels": {"env": "dev", "app": "x"}}})
    assert not pred({"metadata": {"labels": {"env": "prod", "app": "x", "legacy": ""}}})
    with pytest.raises(ApiError):
        parse_label_selector("a in b")


def test_fault_specs_are_deterministic() -> None:
    assert parse_spec("patch:deployments.apps:error_rate=0.5,code=503|429;*:*:latency_ms=5") == [
        {"verb": "patch", "resource": "deployments.apps", "error_rate": 0.5, "code": [503, 429]},
        {"verb": "*", "resource": "*", "latency_ms": 5.0}]
    with pytest.raises(ValueError):
        parse_spec({"rules": [{"verb": "get", "typo": 1}]})
    a, b = Faults({"rules": [{"verb": "write", "error_rate": 0.3}]}, seed=7), Faults(
        {"rules": [{"verb": "write", "error_rate": 0.3}]}, seed=7)
    seq_a = [a.decide("apply", "configmaps").code for _ in range(50)]
    assert seq_a == [b.decide("apply", "configmaps").code for _ in range(50)]
    assert 0 < seq_a.count(500) < 50
    assert a.decide("get", "configmaps").code == 0


def test_clone_is_a_deep_independent_copy() -> None:
    from gitopsd.sandbox.store import clone

    obj = {"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"ports": [{"port": 80}]}, "n": 1.5, "b": None}
    copy = clone(obj)
    assert copy == obj
    copy["metadata"]["labels"]["x"] = "2"
    copy["spec"]["ports"].append({"port": 81})
    assert obj == {"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"ports": [{"port": 80}]}, "n": 1.5, "b": None}


def test_stored_json_is_shared_with_events_and_never_stale() -> None:
    from gitopsd.sandbox.store import Store, dumps

    store = Store()
    v1 = store.put("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                  "metadata": {"name": "a", "namespace": "ns"}, "data": {"k": "é"}}, "ADDED")
    _, backlog = store.watch("configmaps", None, None, 1)
    event = backlog[-1]
    assert event.obj is v1
    assert store.json_of("configmaps", v1) == dumps(v1) == event.object_json()
    assert event.line() == b'{"type":"ADDED","object":' + dumps(v1) + b"}\n"
    assert event.object_json("v9") == dumps(dict(v1, apiVersion="v9"))
    v2 = store.put("configmaps", dict(v1, data={"k": "2"}, metadata=dict(v1["metadata"])), "MODIFIED")
    assert store.json_of("configmaps", v2) == dumps(v2)
    assert store.json_of("configmaps", v1) == dumps(v1)  # an older version is not the stored one
    gone = store.remove("configmaps", v2)
    assert store.json_of("configmaps", v2) == dumps(v2)
    assert store.json_of("configmaps", gone) == dumps(gone)
    assert not store._latest  # nothing is kept for a deleted object


def test_apply_bodies_json_or_yaml() -> None:
    from gitopsd.sandbox.api import _decode_apply

    assert _decode_apply(b' {"data": {"a": "1"}, "n": 1e3}') == {"data": {"a": "1"}, "n": 1000.0}
    assert _decode_apply(b"{data: {a: '1'}}") == {"data": {"a": "1"}}  # YAML flow style, not JSON
    assert _decode_apply(b"data:\n  a: '1'\n") == {"data": {"a": "1"}}
    with pytest.raises(ApiError) as err:
        _decode_apply(b"data: [\n")
    assert err.value.code == 400


def test_now_iso_is_the_current_second() -> None:
    import time
    from datetime import UTC, datetime, timedelta

    from gitopsd.sandbox.api import now_iso

    first = now_iso()
    stamp = datetime.strptime(first, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - stamp) < timedelta(seconds=2)
    time.sleep(1.05)  # formatted once per second: the next second gets a new string
    assert now_iso() > first


def test_apply_copies_what_it_changes_and_leaves_the_live_object_alone() -> None:
    import copy

    from gitopsd.sandbox import managed

    first = {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "s", "annotations": {"a": "1", "b": "2"}},
             "spec": {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 81, "protocol": "TCP"}], "selector": {"app": "x"}}}
    live = managed.apply(None, copy.deepcopy(first), "m", False, "v1", True, False, "t0")
    before = copy.deepcopy(live)
    # the manager stops applying annotation a and port 81: both sit in containers the new
    # configuration does not touch (annotations) or that it does not list (ports)
    second = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "annotations": {"b": "2"}},
              "spec": {"selector": {"app": "x"}, "ports": [{"port": 80, "protocol": "TCP"}]}}
    third = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"selector": {"app": "y"}}}
    out = managed.apply(live, copy.deepcopy(second), "m", False, "v1", True, False, "t1")
    assert out["metadata"]["annotations"] == {"b": "2"} and out["spec"]["ports"] == [{"port": 80, "protocol": "TCP"}]
    assert live == before
    before = copy.deepcopy(out)
    out2 = managed.apply(out, copy.deepcopy(third), "m", False, "v1", True, False, "t2")
    assert "annotations" not in out2["metadata"] or not out2["metadata"]["annotations"]
    assert not out2["spec"].get("ports") and out2["spec"]["selector"] == {"app": "y"}
    assert out == before  # the stored object (and its cached JSON) never changes


def test_json_is_written_as_the_standard_library_reads_it() -> None:
    import json

    from gitopsd.sandbox.store import dumps

    obj = {"a": "é ü 日本", "n": [1, 2.5, True, None, 2**63 - 1], "ctl": "\x01\n\"", 1: "int key"}
    assert json.loads(dumps(obj)) == json.loads(json.dumps(obj))
    assert b"\xc3\xa9" in dumps(obj)  # UTF-8, not \u escapes, as before
    big = {"n": 2**70, "s": "é"}  # orjson refuses the integer: the standard library writes it
    assert dumps(big) == json.dumps(big, separators=(",", ":"), ensure_ascii=False).encode()
