"""The plain renderer and YAML loading: order, flattening, errors naming file and document."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gitopsd.core.errors import RenderError
from gitopsd.core.yamlio import MAX_EXPANDED_NODES, load_all
from gitopsd_plugins.plain import render_directory
from tests.cycles import cyclic_garbage

ROOT = Path(__file__).resolve().parents[2]


def cm(name: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"


def test_multi_document_lists_and_empty_documents(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(cm("b1") + "---\n---\n" + cm("b2"))
    (tmp_path / "a.yml").write_text("apiVersion: v1\nkind: List\nitems:\n- " + cm("a1").replace("\n", "\n  ").rstrip() + "\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.json").write_text('{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}')
    (tmp_path / "README.md").write_text("# not a manifest")
    names = [m["metadata"]["name"] for m in render_directory(tmp_path)]
    assert names == ["a1", "b1", "b2", "c"]
    assert [m["metadata"]["name"] for m in render_directory(tmp_path, recursive=False)] == ["a1", "b1", "b2"]
    assert [m["metadata"]["name"] for m in render_directory(tmp_path, exclude=["sub/*"])] == ["a1", "b1", "b2"]


def test_broken_yaml_names_file_document_and_line(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text(cm("fine"))
    (tmp_path / "bad.yaml").write_text(cm("first") + "---\nkind: [unclosed\n")
    with pytest.raises(RenderError, match=r"^bad\.yaml: document 1 line \d+: invalid YAML"):
        render_directory(tmp_path)


def test_non_object_document_is_named(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(cm("a") + "---\n- just\n- a list\n")
    with pytest.raises(RenderError, match=r"^x\.yaml: document 1: expected a Kubernetes object \(a mapping\), got list"):
        render_directory(tmp_path)


def test_object_without_kind(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("apiVersion: v1\nmetadata: {name: a}\n")
    with pytest.raises(RenderError, match=r"x\.yaml: document 0: object has no kind or apiVersion"):
        render_directory(tmp_path)


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="does not exist or is not a directory"):
        render_directory(tmp_path / "nope")
    (tmp_path / "file.yaml").write_text(cm("a"))
    with pytest.raises(RenderError, match=r"file\.yaml does not exist or is not a directory"):
        render_directory(tmp_path / "file.yaml")


def test_alias_bomb_is_refused() -> None:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    with pytest.raises(RenderError, match=f"bomb.yaml: document 0: YAML aliases expand to more than {MAX_EXPANDED_NODES:,} nodes"):
        load_all("\n".join(lines), "bomb.yaml")


def test_aliases_are_copied_not_shared() -> None:
    [(_, doc)] = load_all("base: &b {k: v}\ncopy: *b\n", "x.yaml")
    doc["copy"]["k"] = "changed"
    assert doc["base"]["k"] == "v"


def test_render_command_prints_the_example_apps() -> None:
    for app in ("guestbook", "redis"):
        result = subprocess.run(
            [sys.executable, "-m", "gitopsd", "render", "-c", str(ROOT / "examples/demo.toml"), app],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        docs = list(yaml.safe_load_all(result.stdout))
        assert docs and all(d["kind"] for d in docs)
    guestbook = subprocess.run(
        [sys.executable, "-m", "gitopsd", "render", "-c", str(ROOT / "examples/demo.toml"), "guestbook"],
        capture_output=True, text=True, check=True,
    )
    kinds = [d["kind"] for d in yaml.safe_load_all(guestbook.stdout)]
    assert kinds == ["Namespace", "Deployment", "Service", "ConfigMap"]  # the app namespace is added


def test_render_unknown_app_exits_1() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gitopsd", "render", "-c", str(ROOT / "examples/demo.toml"), "nope"],
        capture_output=True, text=True,
    )
    assert result.returncode == 1 and "no app named 'nope' (apps: guestbook, redis)" in result.stderr


def test_one_walk_still_refuses_symlinks_in_every_directory(tmp_path: Path) -> None:
    """Files are read from non-hidden directories only, but an escaping symlink anywhere is refused."""
    app = tmp_path / "app"
    (app / ".hidden").mkdir(parents=True)
    (app / "sub").mkdir()
    (app / "cm.yaml").write_text(cm("a"))
    (tmp_path / "secret.yaml").write_text(cm("secret"))
    (app / "sub" / "inside.yaml").symlink_to("../cm.yaml")  # inside the app: fine, and read
    assert [m["metadata"]["name"] for m in render_directory(app)] == ["a", "a"]
    (app / ".hidden" / "leak.yaml").symlink_to("../../secret.yaml")
    for recursive in (True, False):
        with pytest.raises(RenderError, match=r"plain: \.hidden/leak\.yaml is a symlink to \.\./\.\./secret\.yaml"):
            render_directory(app, recursive=recursive)



def test_a_render_leaves_no_cyclic_garbage(tmp_path: Path) -> None:
    # A cycle per file (the loader's closures, the directory walk) left every loader, with its
    # text and parser state, to the cycle collector: 1,500 of them at 300 apps of 5 objects.
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {n: '1'}\n---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: 2, paused: false}\n"
    )
    (tmp_path / "sub" / "b.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, labels: &l {app: b}}\ndata: *l\n"  # an alias: PyYAML's constructor
    )
    with cyclic_garbage() as garbage:
        manifests = render_directory(tmp_path)
    assert [m["metadata"]["name"] for m in manifests] == ["a", "d", "b"]
    assert not garbage
