"""The inventory record's text: one JSON row per object, written without json.dumps per row."""

from __future__ import annotations

import json
import sys
from typing import Any

from gitopsd.core.models import ObjectRef
from gitopsd.kube.inventory import InventoryRecord, decode, encode

REFS = frozenset({
    ObjectRef("", "v1", "ConfigMap", "ns", "plain"),
    ObjectRef("apps", "v1", "Deployment", "ns", "web"),
    ObjectRef("", "v1", "Namespace", "", "ns"),
    ObjectRef("example.com", "v1beta1", "Thing", "ns", 'quote"back\\slash'),
    ObjectRef("example.com", "v1", "Thing", "ns", "é-unicode-\u2603-\x01"),
})


def test_rows_are_what_json_dumps_writes_and_decode_reads_them_back() -> None:
    record = InventoryRecord("default", "app", REFS)
    text = encode("gitopsd-system", record)["data"]["objects"]
    expected = "".join(json.dumps([r.group, r.version, r.kind, r.namespace, r.name]) + "\n" for r in sorted(REFS))
    assert text == expected
    assert decode(encode("gitopsd-system", record)) == record


def test_encoding_a_record_does_not_run_json_dumps_per_object() -> None:
    record = InventoryRecord("default", "app", REFS)
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call" and frame.f_code is json.dumps.__code__:
            calls += 1

    sys.setprofile(count)
    try:
        encode("gitopsd-system", record)
    finally:
        sys.setprofile(None)
    assert calls == 0
