"""Which changed files can affect a render: the path matching and the Kustomize/Helm input scans."""

from __future__ import annotations

from pathlib import Path

from gitopsd.engine.stages import touches
from gitopsd_plugins._inputs import helm_inputs, kustomize_inputs


def test_touches_matches_inputs_and_nothing_else() -> None:
    assert touches({"deploy.yaml"}, {"."})
    assert touches({"sub/deploy.yaml"}, {"."})
    assert not touches({"../other/deploy.yaml"}, {"."})
    assert touches({"../base/cm.yaml"}, {".", "../base"})
    assert not touches({"../base2/cm.yaml"}, {".", "../base"})
    assert touches({"../values.yaml"}, {"../values.yaml"})
    assert not touches(set(), {"."})


def test_kustomize_inputs_follow_bases_and_components(tmp_path: Path) -> None:
    (tmp_path / "app" / "sub").mkdir(parents=True)
    (tmp_path / "base").mkdir()
    (tmp_path / "common").mkdir()
    (tmp_path / "app" / "kustomization.yaml").write_text(
        "resources: [sub, ../base, 'https://github.com/x/y//z?ref=v1']\nimages: [{name: nginx, newTag: '1.2'}]\n"
    )
    (tmp_path / "app" / "sub" / "kustomization.yaml").write_text("components: [../../common]\n")
    (tmp_path / "base" / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    inputs = kustomize_inputs(tmp_path / "app")
    assert inputs is not None
    assert {".", "../base", "../common"} <= inputs
    assert all(i == "." or i.startswith("../base") or i == "../common" for i in inputs)
    (tmp_path / "base" / "kustomization.yaml").write_text("resources: [: not yaml\n")
    assert kustomize_inputs(tmp_path / "app") is None


def test_helm_inputs_follow_local_dependencies(tmp_path: Path) -> None:
    (tmp_path / "chart").mkdir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "chart" / "Chart.yaml").write_text(
        "apiVersion: v2\nname: c\nversion: 0.1.0\ndependencies:\n"
        "- {name: lib, version: 0.1.0, repository: 'file://../lib'}\n"
        "- {name: redis, version: 1.0.0, repository: 'https://charts.example.com'}\n"
    )
    (tmp_path / "lib" / "Chart.yaml").write_text("apiVersion: v2\nname: lib\nversion: 0.1.0\n")
    assert helm_inputs(tmp_path / "chart") == {".", "../lib"}


def test_an_alias_bomb_in_a_kustomization_means_cannot_tell(tmp_path: Path) -> None:
    """The scan parses with a render's YAML limits: a bomb is not walked (2,000,000 strings) but
    answered with None (the app renders, and kustomize reports the file)."""
    levels = ["a0: &a0 [" + ", ".join(["x"] * 20) + "]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 20) + "]" for i in range(1, 5)]
    (tmp_path / "kustomization.yaml").write_text("\n".join(levels) + "\nresources: [cm.yaml]\n")
    assert kustomize_inputs(tmp_path) is None
    (tmp_path / "kustomization.yaml").write_text("resources: [cm.yaml]\n---\nresources: [../elsewhere]\n")
    assert kustomize_inputs(tmp_path) is None  # two documents: not a kustomization kustomize reads
