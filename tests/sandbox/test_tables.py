"""Server-side Table output: the wire format, and the helpers behind the columns."""

from __future__ import annotations

import pytest

from gitopsd.sandbox.tables import human_duration, json_path, table_version

from .conftest import Http

pytestmark = pytest.mark.anyio
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"


def test_human_duration_matches_go() -> None:
    cases = {0: "0s", 119: "119s", 120: "2m", 125: "2m5s", 600: "10m", 10799: "179m", 10800: "3h",
             3 * 3600 + 120: "3h2m", 8 * 3600: "8h", 47 * 3600: "47h", 50 * 3600: "2d2h", 9 * 86400: "9d",
             3 * 365 * 86400: "3y", -5: "<invalid>"}
    assert {s: human_duration(s) for s in cases} == cases


def test_json_path_subset() -> None:
    obj = {"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]},
           "spec": {"list": [1, 2]}}
    assert json_path(obj, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert json_path(obj, ".spec.list[1]") == [2]
    assert json_path(obj, ".spec.list[*]") == [1, 2]
    assert json_path(obj, ".spec.missing") == []


def test_table_version_from_accept() -> None:
    assert table_version(TABLE) == "meta.k8s.io/v1"
    assert table_version("application/json;as=Table;v=v1beta1;g=meta.k8s.io") == "meta.k8s.io/v1beta1"
    assert table_version("application/json") is None


async def test_table_wire_format(http: Http) -> None:
    await http.call("POST", "/api/v1/namespaces/default/configmaps",
                    {"metadata": {"name": "a", "labels": {"x": "y"}}, "data": {"k": "v"}})
    headers = {"Authorization": f"Bearer {http.sb.token}", "Accept": TABLE}
    url = http.sb.url + "/api/v1/namespaces/default/configmaps"
    async with http.session.get(url, headers=headers) as resp:
        table = await resp.json()
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert table["columnDefinitions"][0]["format"] == "name"
    row = table["rows"][0]
    assert row["cells"][:2] == ["a", 1]
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["labels"] == {"x": "y"}
    assert table["metadata"]["resourceVersion"]
    async with http.session.get(url, headers=headers, params={"includeObject": "Object"}) as resp:
        assert (await resp.json())["rows"][0]["object"]["data"] == {"k": "v"}
    async with http.session.get(url + "/a", headers=headers, params={"includeObject": "None"}) as resp:
        one = await resp.json()
    assert one["kind"] == "Table" and len(one["rows"]) == 1 and "object" not in one["rows"][0]
