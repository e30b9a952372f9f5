"""Appsets at config load: static generators, the template sandbox, errors, clashes and the guard."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gitopsd.core.errors import ConfigError
from gitopsd.daemon.appsets import guard
from gitopsd.plugin.appsets import PathParam
from gitopsd.plugin.config import AppSetConfig, Config
from gitopsd.plugin.loading import load_config
from gitopsd.plugin.manager import PluginManager

BASE = """
[daemon]
state_dir = "state"

[clusters.east]
kubeconfig = "kc"
labels = {env = "prod", region = "eu"}

[clusters.west]
kubeconfig = "kc"
labels = {env = "prod", region = "us"}

[clusters.lab]
kubeconfig = "kc"
labels = {env = "dev"}
"""

MATRIX = """
[appsets.svc]
generators = [{type = "matrix", generators = [
  {type = "list", elements = [{app = "web", port = 80}, {app = "api", port = 8080}]},
  {type = "clusters", selector = {env = "prod"}},
]}]
prune_on_remove = true

[appsets.svc.template]
name = "{{ app }}-{{ cluster.name }}"
cluster = "{{ cluster.name }}"
namespace = "{{ app }}"
source = {type = "local", path = "apps/{{ app }}/{{ cluster.labels.region }}"}
notify = []
"""


@pytest.fixture(scope="module")
def types():
    return PluginManager(builtins_only=True).types


def load(tmp_path: Path, types, text: str) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(text))
    return load_config(path, types)


def errors_of(tmp_path: Path, types, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, types, text)
    return info.value.errors


def test_matrix_of_list_and_clusters_expands_at_load(tmp_path: Path, types) -> None:
    config = load(tmp_path, types, BASE + MATRIX)
    assert sorted(config.apps) == ["api-east", "api-west", "web-east", "web-west"]
    app = config.apps["api-west"]
    assert (app.cluster, app.namespace, app.appset, app.prune_on_remove) == ("west", "api", "svc", True)
    assert app.source.options.path == Path("apps/api/us")


def test_list_and_clusters_alone_and_several_generators(tmp_path: Path, types) -> None:
    config = load(
        tmp_path,
        types,
        BASE
        + """
[appsets.each]
generators = [{type = "clusters"}, {type = "list", elements = [{cluster = {name = "lab", labels = {}}, extra = "x"}]}]
[appsets.each.template]
name = "mon-{{ cluster.name }}{{ '-' ~ extra if extra is defined else '' }}"
cluster = "{{ cluster.name }}"
source = {type = "local", path = "mon"}
""",
    )
    assert sorted(config.apps) == ["mon-east", "mon-lab", "mon-lab-x", "mon-west"]


def test_undefined_placeholder_names_it_the_appset_and_the_key(tmp_path: Path, types) -> None:
    errors = errors_of(tmp_path, types, BASE + MATRIX.replace("cluster.labels.region", "cluster.labels.zone"))
    assert len(errors) == 1
    assert "appsets.svc.template.source.path" in errors[0] and "zone" in errors[0]
    errors = errors_of(tmp_path, types, BASE + MATRIX.replace("{{ app }}-", "{{ service }}-"))
    assert "appsets.svc.template.name" in errors[0] and "'service' is undefined" in errors[0]


def test_template_runs_sandboxed(tmp_path: Path, types) -> None:
    bad = MATRIX.replace('namespace = "{{ app }}"', "namespace = \"{{ app.__class__.__mro__ }}\"")
    errors = errors_of(tmp_path, types, BASE + bad)
    assert any("appsets.svc.template.namespace" in e for e in errors), errors


def test_generated_apps_are_validated_like_apps(tmp_path: Path, types) -> None:
    errors = errors_of(tmp_path, types, BASE + MATRIX.replace('namespace = "{{ app }}"', 'namespace = "{{ app }}_X"'))
    assert any("appsets.svc.template (app 'web-east').namespace" in e and "DNS-1123" in e for e in errors), errors
    errors = errors_of(tmp_path, types, BASE + MATRIX.replace('cluster = "{{ cluster.name }}"', 'cluster = "nowhere"'))
    assert any("unknown cluster 'nowhere'" in e and "appsets.svc" in e for e in errors), errors
    errors = errors_of(tmp_path, types, BASE + MATRIX + 'prune_on_remove = true\n')
    assert any("appsets.svc.template.prune_on_remove: set on the appset" in e for e in errors), errors


def test_name_clashes_name_both_sources(tmp_path: Path, types) -> None:
    static = '[apps.web-east]\ncluster = "east"\nsource = {type = "local", path = "x"}\n'
    errors = errors_of(tmp_path, types, BASE + static + MATRIX)
    assert errors == ["config.toml: appsets.svc: generated app 'web-east' clashes with the app of the same name from [apps.web-east]"]
    twice = MATRIX.replace("{{ app }}-{{ cluster.name }}", "{{ app }}")
    errors = errors_of(tmp_path, types, BASE + twice)
    assert any("generates app 'web' twice" in e for e in errors), errors
    other = MATRIX.replace("appsets.svc", "appsets.other")
    errors = errors_of(tmp_path, types, BASE + MATRIX + other)
    assert any("appsets.other: generated app 'web-east' clashes" in e and "appsets.svc" in e for e in errors), errors


def test_generator_options_are_validated_nested_ones_too(tmp_path: Path, types) -> None:
    text = BASE + MATRIX.replace('{type = "clusters", selector = {env = "prod"}}', '{type = "clusters", selektor = {}}')
    errors = errors_of(tmp_path, types, text)
    assert errors == ["config.toml: appsets.svc.generators[0].generators[1].selektor: unknown key"]
    text = BASE + MATRIX.replace('type = "matrix"', 'type = "matrix-ish"')
    assert "unknown generator type 'matrix-ish'" in errors_of(tmp_path, types, text)[0]
    text = BASE + '[appsets.g]\ngenerators = [{type = "git-directories", url = "file:///r", directories = []}]\ntemplate = {name = "x"}\n'
    assert any("appsets.g.generators[0].directories" in e for e in errors_of(tmp_path, types, text))


def test_apps_cannot_claim_an_appset(tmp_path: Path, types) -> None:
    text = BASE + '[apps.web]\ncluster = "east"\nappset = "svc"\nsource = {type = "local", path = "x"}\n'
    assert errors_of(tmp_path, types, text) == ["config.toml: apps.web.appset: unknown key (gitopsd sets it on apps an appset generates)"]


def test_max_removals_and_the_guard(tmp_path: Path, types) -> None:
    config = load(tmp_path, types, BASE + MATRIX)
    apps = dict(config.apps)
    appset = config.appsets["svc"]
    assert appset.allowed_removals(4) == 0  # 20 % of 4
    kept, blocked = guard(appset, apps, {k: v for k, v in apps.items() if k != "web-east"})
    assert blocked == ["web-east"] and kept.keys() == apps.keys()
    loose = AppSetConfig.model_validate({**appset.model_dump(), "max_removals": "50%"})
    kept, blocked = guard(loose, apps, {k: v for k, v in apps.items() if k != "web-east"})
    assert blocked == [] and "web-east" not in kept
    everything = AppSetConfig.model_validate({**appset.model_dump(), "max_removals": 100})
    kept, blocked = guard(everything, apps, {})
    assert sorted(blocked) == sorted(apps) and kept == apps  # zero apps: always guarded
    for bad in ("150%", "x", -1, True):
        with pytest.raises(ValueError):
            AppSetConfig.model_validate({**appset.model_dump(), "max_removals": bad})


def test_path_parameter() -> None:
    path = PathParam("apps/My_Svc.v2")
    assert str(path) == "apps/My_Svc.v2" and path == "apps/My_Svc.v2"
    assert (path.basename, path.basename_normalized, path.segments, path.dirname) == (
        "My_Svc.v2", "my-svc-v2", ["apps", "My_Svc.v2"], "apps"
    )


def test_check_prints_apps_per_appset(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(BASE + MATRIX))
    out = subprocess.run(
        [sys.executable, "-m", "gitopsd", "check", "-c", str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "(4 apps, 3 clusters, 0 notifiers)" in out.stdout and "appsets.svc: 4 apps" in out.stdout
