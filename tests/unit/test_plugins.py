"""Plugin loading: entry points (built-ins and third party), check_pending, blocking, duplicates."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import gitopsd
from gitopsd.core.events import SyncStarted
from gitopsd.plugin.manager import PluginError, PluginManager

ROOT = Path(__file__).resolve().parents[2]


def make_distribution(
    site: Path, name: str, module_source: str, ep_name: str | None = None, attr: str | None = None
) -> None:
    """A real installed distribution on sys.path: a module plus a dist-info with an entry point.

    With ``attr`` the entry point names an object in the module (``module:attr``).
    """
    module = f"{name.replace('-', '_')}_plugin"
    (site / f"{module}.py").write_text(textwrap.dedent(module_source))
    dist_info = site / f"{name.replace('-', '_')}-1.2.3.dist-info"  # the real naming rule
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    target = f"{module}:{attr}" if attr else module
    (dist_info / "entry_points.txt").write_text(f"[gitopsd]\n{ep_name or name} = {target}\n")


THIRD_PARTY = """
import gitopsd
from gitopsd import Source, Artifact

class EchoSource(Source):
    async def latest_revision(self):
        return "r1"
    async def fetch(self, revision):
        raise NotImplementedError

@gitopsd.hookimpl
def gitopsd_source_types():
    return {"echo": EchoSource}
"""

MISSPELLED = """
import gitopsd

@gitopsd.hookimpl
def gitopsd_source_typs():
    return {}
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site


def test_builtins_come_through_entry_points() -> None:
    pm = PluginManager(builtins_only=True)
    names = {info.name: info for info in pm.info()}
    assert {"local", "plain"} <= names.keys()
    assert names["local"].distribution == "gitopsd"
    assert names["local"].types == {"sources": ("local",)}
    assert "local" in pm.types.sources and "plain" in pm.types.renderers


def test_third_party_plugin_is_discovered(site: Path) -> None:
    make_distribution(site, "gitopsd-echo", THIRD_PARTY)
    pm = PluginManager()
    info = {i.name: i for i in pm.info()}["gitopsd-echo"]
    assert (info.distribution, info.version) == ("gitopsd-echo", "1.2.3")
    assert info.hooks == ("gitopsd_source_types",)
    assert pm.types.sources["echo"].__name__ == "EchoSource"
    assert "echo" not in PluginManager(builtins_only=True).types.sources


OBJECT_PLUGIN = """
import gitopsd
from gitopsd import Source

class EchoSource(Source):
    async def latest_revision(self):
        return "r1"
    async def fetch(self, revision):
        raise NotImplementedError

class Options(gitopsd.Options):
    greeting: str = "hello"

class EchoPlugin:
    \"\"\"A plugin object: its methods are the hookimpls.\"\"\"

    @gitopsd.hookimpl
    def gitopsd_source_types(self):
        return {"echo": EchoSource}

    @gitopsd.hookimpl
    def gitopsd_plugin_options(self):
        return Options

plugin = EchoPlugin()
"""


def test_an_entry_point_may_name_an_object(site: Path) -> None:
    make_distribution(site, "gitopsd-echo-object", OBJECT_PLUGIN, ep_name="echo", attr="plugin")
    pm = PluginManager()
    info = {i.name: i for i in pm.info()}["echo"]
    assert info.distribution == "gitopsd-echo-object" and info.types == {"sources": ("echo",)}
    assert info.hooks == ("gitopsd_plugin_options", "gitopsd_source_types") and info.options == ("greeting",)
    assert type(pm.pm.get_plugin("echo")).__name__ == "EchoPlugin"
    assert pm.types.sources["echo"].__name__ == "EchoSource"
    assert pm.types.plugin_options["echo"]().greeting == "hello"


def test_misspelled_hookimpl_is_an_error(site: Path) -> None:
    make_distribution(site, "gitopsd-typo", MISSPELLED)
    with pytest.raises(PluginError, match="gitopsd_source_typs"):
        PluginManager()


def test_disabled_plugins_are_not_loaded(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_distribution(site, "gitopsd-typo", MISSPELLED)
    monkeypatch.setenv("GITOPSD_DISABLE_PLUGINS", "gitopsd-typo, plain")
    pm = PluginManager()
    assert "plain" not in pm.types.renderers and "local" in pm.types.sources


def test_duplicate_type_names_both_plugins(site: Path) -> None:
    make_distribution(site, "gitopsd-local2", THIRD_PARTY.replace('"echo"', '"local"'))
    with pytest.raises(PluginError, match="source type 'local' is registered twice"):
        PluginManager()


def test_plugins_in_code_and_hooks_chain() -> None:
    class AddLabel:
        @gitopsd.hookimpl
        def gitopsd_post_render(self, app, manifests):
            return [{**m, "metadata": {**m["metadata"], "labels": {"team": "a"}}} for m in manifests]

    class Health:
        @gitopsd.hookimpl
        def gitopsd_health(self, obj):
            return gitopsd.HealthStatus(gitopsd.Health.DEGRADED, "custom") if obj["kind"] == "Widget" else None

    pm = PluginManager(builtins_only=True, plugins=[AddLabel(), Health()])
    out = pm.hooks.post_render(None, [{"kind": "ConfigMap", "metadata": {"name": "x"}}])
    assert out[0]["metadata"]["labels"] == {"team": "a"}
    assert pm.hooks.health({"kind": "Widget"}) == gitopsd.HealthStatus(gitopsd.Health.DEGRADED, "custom")
    assert pm.hooks.health({"kind": "Gadget"}) is None


def test_plugins_command_lists_builtins() -> None:
    result = subprocess.run([sys.executable, "-m", "gitopsd", "plugins"], capture_output=True, text=True, check=True)
    assert "local  (gitopsd 0.1.0)" in result.stdout
    assert "sources: local" in result.stdout and "renderers: plain" in result.stdout


def test_every_hookspec_is_documented() -> None:
    from gitopsd.plugin import hookspecs
    specs = [getattr(hookspecs, n) for n in dir(hookspecs) if n.startswith("gitopsd_")]
    assert len(specs) >= 6
    for spec in specs:
        doc = spec.__doc__ or ""
        assert "Returns" in doc or "return" in doc, spec.__name__
        assert "firstresult" in doc, spec.__name__


def test_wheel_has_exactly_the_two_import_packages(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("gitopsd-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
        entry_points = z.read(next(n for n in z.namelist() if n.endswith("entry_points.txt"))).decode()
    assert top == {"gitopsd", "gitopsd_plugins"}
    # the web page's templates and assets are package data: served from the wheel, no CDN
    for asset in ("templates/list.html", "templates/app_main.html", "static/app.js", "static/app.css"):
        assert f"gitopsd/server/ui/{asset}" in names, asset
    assert "[gitopsd]" in entry_points and "local = gitopsd_plugins.local" in entry_points


def test_trace_logs_every_hook_call_with_its_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    import structlog

    monkeypatch.setenv("GITOPSD_TRACE_PLUGINS", "1")
    with structlog.testing.capture_logs() as logs:
        pm = PluginManager(builtins_only=True)
        pm.hooks.health({"kind": "Widget"})
        pm.hooks.event(SyncStarted.make(app="web"))  # traced even when no plugin listens
    calls = [entry for entry in logs if entry["event"] == "hook call"]
    assert {c["hook"] for c in calls} >= {"gitopsd_source_types", "gitopsd_renderer_types", "gitopsd_health", "gitopsd_event"}
    assert all(isinstance(c["ms"], float) and c["ms"] >= 0 for c in calls)
    assert "local" in next(c for c in calls if c["hook"] == "gitopsd_source_types")["plugins"]


def test_module_plugins_hooks_are_found_without_looking_at_every_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same hook implementations as pluggy's own discovery, for every built-in plugin and a
    staticmethod/classmethod-bearing module; ``inspect.getattr_static`` (what pluggy looks each
    name up with) only for the names that can be one: about 1 % of the start."""
    import inspect
    import types

    import pluggy

    from gitopsd.plugin import hookspecs

    extra = types.ModuleType("extra_plugin")
    exec(  # a module plugin, built in the test
        "import gitopsd\n"
        "class _Holder:\n"
        "    @staticmethod\n"
        "    @gitopsd.hookimpl\n"
        "    def gitopsd_event(event): pass\n"
        "gitopsd_event = _Holder.gitopsd_event\n"
        "CONSTANT = 1\n",
        extra.__dict__,
    )
    ours = PluginManager(builtins_only=True, plugins={"extra": extra})
    plain = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    plain.add_hookspecs(hookspecs)
    for name, plugin in ours.pm.list_name_plugin():
        plain.register(plugin, name=name)
        found = sorted(h.name for h in ours.pm.get_hookcallers(plugin) or [])
        assert found == sorted(h.name for h in plain.get_hookcallers(plugin) or []), name
    assert [h.name for h in ours.pm.get_hookcallers(extra) or []] == ["gitopsd_event"]

    looked_up = []
    real = inspect.getattr_static
    monkeypatch.setattr(inspect, "getattr_static", lambda obj, name, *a: looked_up.append(name) or real(obj, name, *a))
    again = PluginManager(builtins_only=True)
    names = [n for _, p in again.pm.list_name_plugin() if isinstance(p, types.ModuleType) for n in dir(p)]
    assert 0 < len(looked_up) < len(names) / 2
