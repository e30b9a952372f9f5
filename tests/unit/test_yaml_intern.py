"""Rendered manifests share one copy of each short string (keys and values) across documents."""

from __future__ import annotations

from gitopsd.core.yamlio import INTERN_MAX, manifests_from_yaml

LONG = "x" * (INTERN_MAX + 1)


def _doc(app: str) -> str:
    return (
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {{part-of: {app}}}\n"
        f"spec:\n  template:\n    spec:\n      containers: [{{name: web, image: 'nginx:1.27'}}]\n"
        f"data: {{long: {LONG}}}\n"
    )


def test_short_strings_are_shared_between_renders_long_ones_are_not() -> None:
    # Two renders (two apps), as the daemon keeps them side by side.
    (a,) = manifests_from_yaml(_doc("app-1"), "a.yaml")
    (b,) = manifests_from_yaml(_doc("app-2"), "b.yaml")
    assert a["apiVersion"] is b["apiVersion"] and a["kind"] is b["kind"]
    assert a["spec"]["template"]["spec"]["containers"][0]["image"] is b["spec"]["template"]["spec"]["containers"][0]["image"]
    assert a["metadata"]["labels"]["part-of"] == "app-1" and b["metadata"]["labels"]["part-of"] == "app-2"
    assert a["data"]["long"] == b["data"]["long"] == LONG
    assert a["data"]["long"] is not b["data"]["long"]  # long values (scripts, certificates) are left alone


def test_documents_with_aliases_share_short_strings_too() -> None:
    # A document with aliases takes PyYAML's own constructor, then yamlio.compact.
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: &l {tier: web}}\ndata: {copy: *l}\n"
    (a,) = manifests_from_yaml(text.replace("web", "frontend"), "a.yaml")
    (b,) = manifests_from_yaml(text.replace("web", "frontend"), "b.yaml")
    assert a["metadata"]["labels"]["tier"] is b["metadata"]["labels"]["tier"] == "frontend"
    assert a["data"]["copy"]["tier"] is b["data"]["copy"]["tier"]
