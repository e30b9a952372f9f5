"""Config validation: every error names the file and the dotted key, all at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gitopsd.core.errors import ConfigError
from gitopsd.plugin.config import parse_duration
from gitopsd.plugin.loading import load_config
from gitopsd.plugin.manager import PluginManager

ROOT = Path(__file__).resolve().parents[2]

VALID = """
[daemon]
state_dir = "state"

[clusters.prod]
kubeconfig = "kubeconfig"

[apps.web]
cluster = "prod"
namespace = "web"
source = { type = "local", path = "manifests" }
interval = "1m"
"""


@pytest.fixture(scope="module")
def types():
    return PluginManager(builtins_only=True).types


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(tmp_path: Path, text: str, types) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), types)
    return info.value.errors


def test_valid_config_loads_with_defaults_and_relative_paths(tmp_path, types) -> None:
    config = load_config(write(tmp_path, VALID), types)
    app = config.apps["web"]
    assert app.name == "web" and app.cluster == "prod" and app.interval == 60.0
    assert app.prune is False and app.self_heal is True and app.force_conflicts is True
    assert config.interval(app) == 60.0
    assert config.daemon.state_dir == tmp_path / "state"
    assert config.clusters["prod"].kubeconfig == tmp_path / "kubeconfig"
    assert app.source.type == "local" and str(app.source.options.path) == "manifests"


INVALID = [
    ("wrong type", VALID.replace('namespace = "web"', "namespace = 3"), "config.toml: apps.web.namespace: expected a string, got an integer"),
    ("unknown top key", VALID + "\n[extra]\nx = 1\n", "config.toml: extra: unknown key"),
    ("unknown app key", VALID.replace('interval = "1m"', 'interval = "1m"\nprunee = true'), "config.toml: apps.web.prunee: unknown key"),
    ("bad duration", VALID.replace('interval = "1m"', 'interval = "1 minute"'), "config.toml: apps.web.interval: invalid duration '1 minute'"),
    ("duration bool", VALID.replace('interval = "1m"', "interval = true"), "config.toml: apps.web.interval: expected a duration like '30s', '5m' or '1h', got a boolean"),
    ("unknown cluster", VALID.replace('cluster = "prod"', 'cluster = "staging"'), "config.toml: apps.web.cluster: unknown cluster 'staging' (defined: prod)"),
    ("unknown notifier", VALID.replace('interval = "1m"', 'interval = "1m"\nnotify = ["ops"]'), "config.toml: apps.web.notify[0]: unknown notifier 'ops' (defined: none)"),
    ("unknown source type", VALID.replace('type = "local"', 'type = "svn"'), "config.toml: apps.web.source.type: unknown source type 'svn'"),
    ("source option typo", VALID.replace('path = "manifests"', 'path = "manifests", pth = "x"'), "config.toml: apps.web.source.pth: unknown key"),
    ("source option missing", VALID.replace(', path = "manifests"', ""), "config.toml: apps.web.source.path: missing required key"),
    ("source without type", VALID.replace('type = "local", ', ""), "config.toml: apps.web.source.type: missing required key"),
    ("unknown renderer", VALID.replace('interval = "1m"', 'interval = "1m"\nrender = { type = "jsonnet" }'), "config.toml: apps.web.render.type: unknown renderer type 'jsonnet'"),
    ("renderer option typo", VALID.replace('interval = "1m"', 'interval = "1m"\nrender = { type = "plain", recurse = true }'), "config.toml: apps.web.render.recurse: unknown key"),
    ("bad app name", VALID.replace("[apps.web]", "[apps.Web_App]"), "config.toml: apps.Web_App: invalid name 'Web_App'"),
    ("bad namespace", VALID.replace('namespace = "web"', 'namespace = "Web"'), "config.toml: apps.web.namespace: invalid namespace 'Web'"),
    ("bad listen", VALID.replace('state_dir = "state"', 'state_dir = "state"\nlisten = "9420"'), "config.toml: daemon.listen: expected HOST:PORT, got '9420'"),
    ("bad log format", VALID.replace('state_dir = "state"', 'state_dir = "state"\nlog_format = "xml"'), "config.toml: daemon.log_format: expected 'auto', 'json' or 'console', got 'xml'"),
    ("cluster missing kubeconfig", VALID.replace('kubeconfig = "kubeconfig"', 'context = "x"'), "config.toml: clusters.prod.kubeconfig: missing required key"),
    ("too many jumps", VALID + textwrap.dedent('''
        [clusters.prod.ssh]
        host = "h"
        identity_file = "k"
        known_hosts = "kh"
        jump = [{host="a", identity_file="k", known_hosts="kh"}, {host="b", identity_file="k", known_hosts="kh"}, {host="c", identity_file="k", known_hosts="kh"}]
        '''), "config.toml: clusters.prod.ssh.jump: List should have at most 2 items"),
    ("ssh missing known_hosts", VALID + '\n[clusters.prod.ssh]\nhost = "h"\nidentity_file = "k"\n', "config.toml: clusters.prod.ssh.known_hosts: missing required key"),
    ("negative duration", VALID.replace('interval = "1m"', "interval = -5"), "config.toml: apps.web.interval: a duration cannot be negative"),
    ("apps not a table", "apps = 3\n" + VALID.split("[apps.web]")[0], "config.toml: apps: expected a table, got an integer"),
    ("bool as string", VALID.replace('interval = "1m"', 'interval = "1m"\nprune = "yes"'), "config.toml: apps.web.prune: expected a boolean, got a string"),
    ("tools typo", VALID.replace('state_dir = "state"', 'state_dir = "state"\n[daemon.tools]\nhelmm = "/bin/helm"'), "config.toml: daemon.tools.helmm: unknown key"),
]


@pytest.mark.parametrize(("case", "text", "expected"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_config_is_explained(tmp_path, types, case, text, expected) -> None:
    errors = errors_of(tmp_path, text, types)
    assert any(e.startswith(expected) for e in errors), errors


def test_all_errors_are_reported_at_once(tmp_path, types) -> None:
    text = VALID.replace('namespace = "web"', "namespace = 3").replace('cluster = "prod"', 'cluster = "nope"')
    text = text.replace('state_dir = "state"', 'state_dir = "state"\nlog_level = "loud"')
    errors = errors_of(tmp_path, text, types)
    assert len(errors) >= 2
    assert any("apps.web.namespace" in e for e in errors) and any("daemon.log_level" in e for e in errors)


def test_broken_toml_names_file_and_line(tmp_path, types) -> None:
    errors = errors_of(tmp_path, "[daemon\nstate_dir = 1\n", types)
    assert errors[0].startswith("config.toml: invalid TOML:") and "line 1" in errors[0]


def test_missing_file(tmp_path, types) -> None:
    with pytest.raises(ConfigError, match="config file does not exist"):
        load_config(tmp_path / "nope.toml", types)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("250ms", 0.25), (12, 12), ("2d", 172800)]
)
def test_durations(text, seconds) -> None:
    assert parse_duration(text) == seconds


def test_check_command_exit_codes(tmp_path) -> None:
    good = write(tmp_path, VALID)
    ok = subprocess.run([sys.executable, "-m", "gitopsd", "check", "-c", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "ok (1 apps, 1 clusters, 0 notifiers)" in ok.stdout
    assert "warning: apps.web: no policy: the app may change any object" in ok.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(VALID.replace('namespace = "web"', "namespace = 3"))
    failed = subprocess.run([sys.executable, "-m", "gitopsd", "check", "-c", str(bad)], capture_output=True, text=True)
    assert failed.returncode == 1
    assert "bad.toml: apps.web.namespace: expected a string, got an integer" in failed.stderr
    usage = subprocess.run([sys.executable, "-m", "gitopsd", "check", "--bogus"], capture_output=True, text=True)
    assert usage.returncode == 2


def test_example_configs_pass_check() -> None:
    for name in ("config.example.toml", "examples/demo.toml"):
        result = subprocess.run(
            [sys.executable, "-m", "gitopsd", "check", "-c", str(ROOT / name)], capture_output=True, text=True
        )
        assert result.returncode == 0, f"{name}: {result.stderr}"


THREE = VALID + """
[apps.api]
cluster = "prod"
source = { type = "local", path = "api" }
depends_on = ["db"]

[apps.db]
cluster = "prod"
source = { type = "local", path = "db" }
"""


def test_depends_on_and_the_repository_options_load(tmp_path, types) -> None:
    text = THREE.replace('interval = "1m"', '''interval = "1m"
depends_on = ["api"]
ignore_differences = [{ kind = "Deployment", name = "web", json_pointers = ["/spec/replicas"] }]
decrypt = { provider = "sops", age_key_file = "keys/age.txt" }''')
    config = load_config(write(tmp_path, text), types)
    web = config.apps["web"]
    assert web.depends_on == ["api"] and config.apps["api"].depends_on == ["db"]
    assert web.ignore_differences[0].json_pointers == ["/spec/replicas"]
    assert web.decrypt is not None and web.decrypt.age_key_file == tmp_path / "keys/age.txt"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (('depends_on = ["db"]', 'depends_on = ["web"]'), None),  # web -> api -> web
        (('depends_on = ["db"]', 'depends_on = ["dbb"]'), "config.toml: apps.api.depends_on[0]: unknown app 'dbb' (defined: api, db, web)"),
    ],
    ids=["cycle", "unknown"],
)
def test_depends_on_errors(tmp_path, types, edit, expected) -> None:
    text = THREE.replace(*edit).replace('interval = "1m"', 'interval = "1m"\ndepends_on = ["api"]')
    errors = errors_of(tmp_path, text, types)
    if expected is None:
        assert errors == ["config.toml: apps.api.depends_on: dependency cycle: api -> web -> api"], errors
    else:
        assert expected in errors, errors


def test_self_dependency_is_a_cycle(tmp_path, types) -> None:
    errors = errors_of(tmp_path, VALID.replace('interval = "1m"', 'interval = "1m"\ndepends_on = ["web"]'), types)
    assert errors == ["config.toml: apps.web.depends_on: dependency cycle: web -> web"]


def test_bad_ignore_pointer(tmp_path, types) -> None:
    text = VALID.replace('interval = "1m"', 'interval = "1m"\nignore_differences = [{ kind = "Deployment", json_pointers = ["spec/replicas"] }]')
    errors = errors_of(tmp_path, text, types)
    assert any("apps.web.ignore_differences[0].json_pointers" in e and "must start with '/'" in e for e in errors), errors
