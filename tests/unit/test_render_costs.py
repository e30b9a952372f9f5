"""What the render stage costs per app, counted: lookups and trips that do not scale with work."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from gitopsd.core.models import Artifact
from gitopsd.engine import stages
from gitopsd.plugin.loading import validate_config
from gitopsd.plugin.manager import PluginManager

pytestmark = pytest.mark.anyio

APPS = 6


def configmap(name: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: '1'\n"


def plain_apps(tmp_path: Path, decrypt: dict[str, Any] | None = None) -> tuple[stages.Workspace, Any, list[Artifact]]:
    """A workspace with APPS plain apps, each with its own directory (its artifact)."""
    artifacts = []
    apps: dict[str, Any] = {}
    for i in range(APPS):
        path = tmp_path / f"app{i}"
        path.mkdir()
        (path / "cm.yaml").write_text(configmap(f"cm{i}"))
        digest = "sha256:" + hashlib.sha256(str(path).encode()).hexdigest()
        artifacts.append(Artifact(path=path, revision="r1", digest=digest))
        apps[f"app{i}"] = {"cluster": "c", "namespace": "default", "create_namespace": False, "source": {"type": "local", "path": str(path)}}
        if decrypt is not None:
            apps[f"app{i}"]["decrypt"] = decrypt
    raw = {"daemon": {"state_dir": str(tmp_path / "state")}, "clusters": {"c": {"kubeconfig": "/k"}}, "apps": apps}
    plugins = PluginManager(builtins_only=True)
    config = validate_config(raw, plugins.types, label="<test config>")
    return stages.Workspace.create(config, plugins), config, artifacts


async def test_apps_without_decrypt_never_look_for_sops(tmp_path: Path, which_lookups: list[str]) -> None:
    """Finding ``sops`` on PATH is a search of every PATH directory: only apps that decrypt pay it."""
    workspace, config, artifacts = plain_apps(tmp_path)
    for i, artifact in enumerate(artifacts):
        rendered = await stages.render(workspace, config.apps[f"app{i}"], artifact)
        assert [m["metadata"]["name"] for m in rendered.manifests] == [f"cm{i}"]
    assert which_lookups == []


async def test_apps_with_decrypt_still_find_sops(tmp_path: Path, which_lookups: list[str]) -> None:
    """The counterpart: an app with ``decrypt`` looks ``sops`` up (and renders files that are not encrypted)."""
    key = tmp_path / "age.key"
    key.write_text("AGE-SECRET-KEY-1NOTUSED\n")
    key.chmod(0o600)
    workspace, config, artifacts = plain_apps(tmp_path, {"provider": "sops", "age_key_file": str(key)})
    rendered = await stages.render(workspace, config.apps["app0"], artifacts[0])
    assert [m["metadata"]["name"] for m in rendered.manifests] == ["cm0"]
    assert which_lookups == ["sops"]


async def test_small_renders_stay_on_the_event_loop_and_large_ones_go_to_a_thread(
    tmp_path: Path, thread_trips: list[str]
) -> None:
    """A trip to a worker thread costs the loop more than parsing a few small files; a large
    directory (or one with subdirectories) still goes to a thread so it cannot stall the loop."""
    workspace, config, artifacts = plain_apps(tmp_path)
    for i, artifact in enumerate(artifacts):
        await stages.render(workspace, config.apps[f"app{i}"], artifact)
    assert thread_trips == []

    big = artifacts[0].path
    (big / "big.yaml").write_text("---\n".join(configmap(f"many{i}") for i in range(600)))
    nested = artifacts[1].path
    (nested / "sub").mkdir()
    (nested / "sub" / "more.yaml").write_text(configmap("nested"))
    for artifact, app in ((big, "app0"), (nested, "app1")):
        moved = Artifact(path=artifact, revision="r2", digest=f"sha256:{app}-r2")
        rendered = await stages.render(workspace, config.apps[app], moved)
        assert len(rendered.manifests) in (601, 2)
    assert thread_trips == ["render_directory", "render_directory"]


def test_remembered_tags_are_pyyaml_s_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader remembers each plain scalar's tag: a second document of the same words asks
    PyYAML's resolver nothing, and every value still loads as PyYAML's safe loader loads it."""
    import yaml
    import yaml.resolver

    from gitopsd.core.yamlio import load_all

    asked: list[str] = []
    real_resolve = yaml.resolver.BaseResolver.resolve

    def resolve(self: Any, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode:
            asked.append(value)
        return real_resolve(self, kind, value, implicit)

    monkeypatch.setattr(yaml.resolver.BaseResolver, "resolve", resolve)  # PyYAML's, counted
    words = ["yes", "no", "on", "off", "~", "null", "1", "0x1F", "0o17", "1.5", ".inf", "2001-12-14", "1_000",
             "'1'", '"yes"', "plain text", "v1", "<<x", ""]
    text = "apiVersion: v1\nkind: ConfigMap\ndata:\n" + "".join(f"  k{i}: {w}\n" for i, w in enumerate(words))
    text += "  unique-marker-word: 7\n"
    load_all(text, "first")
    assert "unique-marker-word" in asked
    asked.clear()
    [(_, second)] = load_all(text, "second")
    assert [a for a in asked if a != ""] == []  # all remembered (quoted ones never ask)
    assert second == yaml.safe_load(text)


async def test_a_program_s_small_output_is_parsed_on_the_loop(thread_trips: list[str]) -> None:
    """helm/kustomize output: a few manifests are parsed inline, a large stream in a worker thread."""
    from gitopsd_plugins._render import INLINE_BYTES, parse_stream

    small = "---\n".join(configmap(f"cm{i}") for i in range(6)).encode()
    assert len(await parse_stream(small, "helm template output")) == 6
    assert thread_trips == []
    large = "---\n".join(configmap(f"cm{i}") for i in range(INLINE_BYTES // 40)).encode()
    assert len(await parse_stream(large, "helm template output")) == INLINE_BYTES // 40
    assert thread_trips == ["manifests_from_yaml"]


async def test_auto_detected_renderers_share_one_default_options(tmp_path: Path) -> None:
    """Options are frozen: apps without a ``render`` table share one default instance, not a model per render."""
    workspace, config, artifacts = plain_apps(tmp_path)
    first = workspace.renderer_for(config.apps["app0"], artifacts[0])
    second = workspace.renderer_for(config.apps["app1"], artifacts[1])
    assert type(first).__name__ == "PlainRenderer"
    assert first is not second and first.options is second.options
    assert first.cache_key == second.cache_key


async def test_a_small_app_is_listed_once_and_never_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain renderer lists a small app's directory once (the inline check and the walk share
    it) and resolves no path when there is no symlink to check."""
    import os

    from tests.calls import python_calls

    workspace, config, artifacts = plain_apps(tmp_path)
    app = artifacts[0].path
    for i in range(5):
        (app / f"more{i}.yaml").write_text(configmap(f"more{i}"))
    listed: list[str] = []
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        listed.append(os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # the real one, counted
    with python_calls() as calls:
        rendered = await stages.render(workspace, config.apps["app0"], artifacts[0])
    assert len(rendered.manifests) == 6
    assert listed == [str(app)]
    assert not [code for code in calls if code.co_name == "realpath" or (code.co_filename.endswith("pathlib.py")
                and code.co_name == "resolve")]


async def test_a_small_app_s_escaping_symlink_is_still_refused(tmp_path: Path, thread_trips: list[str]) -> None:
    """The inline path walks the entries it listed with the same symlink check as the thread's."""
    from gitopsd.core.errors import RenderError

    workspace, config, artifacts = plain_apps(tmp_path)
    (tmp_path / "secret.yaml").write_text(configmap("secret"))
    (artifacts[0].path / "leak.yaml").symlink_to("../secret.yaml")
    with pytest.raises(RenderError, match=r"plain: leak\.yaml is a symlink to \.\./secret\.yaml, outside the app's directory"):
        await stages.render(workspace, config.apps["app0"], artifacts[0])
    assert thread_trips == []  # refused inline
