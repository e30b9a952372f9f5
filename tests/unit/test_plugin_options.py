"""``[plugins.NAME]`` options: declared by a plugin, validated with the config, passed to its hooks."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import Field, field_validator

import gitopsd
from gitopsd.core.errors import ConfigError
from gitopsd.core.events import SyncFailed
from gitopsd.core.models import Health, HealthStatus
from gitopsd.plugin.loading import validate_config
from gitopsd.plugin.manager import PluginError, PluginManager


class StampOptions(gitopsd.Options):
    key: str = "example.com/stamp"
    value: str = "yes"
    level: int = Field(1, ge=0)

    @field_validator("key")
    @classmethod
    def _key(cls, key: str) -> str:
        if "/" not in key:
            raise ValueError(f"{key!r} needs a prefix, like 'example.com/{key}'")
        return key


class Stamp:
    """A plugin object with options and the three hooks that receive them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    @gitopsd.hookimpl
    def gitopsd_plugin_options(self) -> type[gitopsd.Options]:
        return StampOptions

    @gitopsd.hookimpl
    def gitopsd_post_render(self, app, manifests, options):
        return [{**m, "metadata": {**m["metadata"], "annotations": {options.key: options.value}}} for m in manifests]

    @gitopsd.hookimpl
    def gitopsd_health(self, obj, options):
        return HealthStatus(Health.DEGRADED, f"level {options.level}") if obj.get("kind") == "Widget" else None

    @gitopsd.hookimpl
    def gitopsd_event(self, event, options):
        self.events.append((event.app, options.value))


class NoOptions:
    """A plugin without options whose post-render hook takes only the argument it needs."""

    @gitopsd.hookimpl
    def gitopsd_post_render(self, manifests):
        return [*manifests, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "extra"}}]


def base(**extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "clusters": {"prod": {"kubeconfig": "/kubeconfig"}},
        "apps": {
            "web": {"cluster": "prod", "source": {"type": "local", "path": "/m"}},
            "api": {"cluster": "prod", "source": {"type": "local", "path": "/m"}},
        },
    }
    raw.update(extra)
    return raw


@pytest.fixture
def stamp() -> Stamp:
    return Stamp()


@pytest.fixture
def pm(stamp: Stamp) -> PluginManager:
    return PluginManager(builtins_only=True, plugins={"stamp": stamp, "bare": NoOptions()})


def errors_of(raw: dict[str, Any], pm: PluginManager) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config(raw, pm.types, label="config.toml")
    return info.value.errors


def test_options_are_validated_with_defaults_and_per_app_overrides(pm: PluginManager) -> None:
    raw = base(plugins={"stamp": {"value": "global", "level": 2}})
    raw["apps"]["web"]["plugins"] = {"stamp": {"value": "web-only"}}
    config = validate_config(raw, pm.types)
    assert config.plugins == {"stamp": StampOptions(value="global", level=2)}
    assert config.apps["web"].plugins["stamp"] == StampOptions(value="web-only", level=2)  # merged key by key
    assert config.apps["api"].plugins["stamp"] == StampOptions(value="global", level=2)
    assert "bare" not in config.plugins  # declares no options
    defaults = validate_config(base(), pm.types)
    assert defaults.plugins == {"stamp": StampOptions()}
    # Options are part of each app's config: a reload that changes them restarts (re-renders) the app.
    assert defaults.apps["api"] != config.apps["api"]


def test_plugin_option_errors_name_the_key(pm: PluginManager) -> None:
    errors = errors_of(base(plugins={"stamp": {"level": -1, "colour": "red", "key": "stamp"}}), pm)
    assert "config.toml: plugins.stamp.level: Input should be greater than or equal to 0" in errors
    assert "config.toml: plugins.stamp.colour: unknown key" in errors
    assert "config.toml: plugins.stamp.key: 'stamp' needs a prefix, like 'example.com/stamp'" in errors


def test_a_table_for_a_plugin_that_is_not_installed_names_the_installed_ones(pm: PluginManager) -> None:
    raw = base(plugins={"stammp": {"value": "x"}})
    raw["apps"]["web"]["plugins"] = {"nope": {}}
    errors = errors_of(raw, pm)
    installed = ", ".join(pm.types.plugins)
    assert "bare" in installed and "stamp" in installed and "local" in installed
    assert f"config.toml: plugins.stammp: no plugin 'stammp' is installed (installed: {installed})" in errors
    assert f"config.toml: apps.web.plugins.nope: no plugin 'nope' is installed (installed: {installed})" in errors


def test_a_plugin_without_options_takes_no_keys(pm: PluginManager) -> None:
    assert validate_config(base(plugins={"bare": {}}), pm.types).plugins == {"stamp": StampOptions()}
    assert errors_of(base(plugins={"bare": {"x": 1}}), pm) == ["config.toml: plugins.bare.x: unknown key"]
    assert errors_of(base(plugins={"bare": 3}), pm) == ["config.toml: plugins.bare: expected a table, got an integer"]


def test_app_override_errors_are_reported_where_they_are(pm: PluginManager) -> None:
    raw = base(plugins={"stamp": {"level": "high"}})
    raw["apps"]["web"]["plugins"] = {"stamp": {"value": 3}}
    errors = errors_of(raw, pm)
    # The global error once, under plugins.stamp; the app's own error under the app.
    assert errors == [
        "config.toml: apps.web.plugins.stamp.value: expected a string, got an integer",
        "config.toml: plugins.stamp.level: expected an integer, got a string",
    ]


def test_every_error_is_reported_at_once(pm: PluginManager) -> None:
    """A structural error (interval) no longer hides references or plugin options."""
    raw = base(
        plugins={"stamp": {"level": "high"}},
        notifiers={"team": {"type": "webhook", "url": "https://example.test/hook", "timeout": "soon"}},
    )
    raw["apps"]["web"].update(interval="1 minute", cluster="staging", notify=["team", "ops"])
    raw["apps"]["web"]["source"]["pth"] = "typo"
    errors = errors_of(raw, pm)
    expected = [
        "config.toml: apps.web.interval: invalid duration '1 minute'",
        "config.toml: apps.web.cluster: unknown cluster 'staging' (defined: prod)",
        "config.toml: apps.web.notify[1]: unknown notifier 'ops' (defined: team)",
        "config.toml: apps.web.source.pth: unknown key",
        "config.toml: plugins.stamp.level: expected an integer, got a string",
        "config.toml: notifiers.team.timeout: expected a number, got a string",
    ]
    for line in expected:
        assert any(e.startswith(line) for e in errors), (line, errors)
    assert len(errors) == len(expected), errors
    groups = [e.split(": ")[1].split(".")[:2] for e in errors]
    assert groups == sorted(groups)  # one table's errors together


def test_hooks_receive_their_own_options(pm: PluginManager, stamp: Stamp) -> None:
    raw = base(plugins={"stamp": {"value": "global", "level": 3}})
    raw["apps"]["web"]["plugins"] = {"stamp": {"value": "web-only"}}
    config = validate_config(raw, pm.types)
    pm.configure(config)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    web = pm.hooks.post_render(config.apps["web"], [cm])
    api = pm.hooks.post_render(config.apps["api"], [cm])
    assert web[0]["metadata"]["annotations"] == {"example.com/stamp": "web-only"}
    assert api[0]["metadata"]["annotations"] == {"example.com/stamp": "global"}
    assert [m["metadata"]["name"] for m in web] == ["x", "extra"]  # the subset-of-arguments hook ran too
    assert pm.hooks.health({"kind": "Widget"}) == HealthStatus(Health.DEGRADED, "level 3")
    pm.hooks.event(SyncFailed.make(app="web", message="x"))
    pm.hooks.event(SyncFailed.make(app="api", message="x"))
    pm.hooks.event(SyncFailed.make(app="gone", message="x"))
    assert stamp.events == [("web", "web-only"), ("api", "global"), ("gone", "global")]


def test_hooks_see_defaults_before_any_config(pm: PluginManager) -> None:
    assert pm.hooks.health({"kind": "Widget"}) == HealthStatus(Health.DEGRADED, "level 1")


def test_options_hook_must_return_an_options_model() -> None:
    class Wrong:
        @gitopsd.hookimpl
        def gitopsd_plugin_options(self):
            return dict

    with pytest.raises(PluginError, match=r"plugin 'wrong': gitopsd_plugin_options must return a subclass of gitopsd\.Options"):
        PluginManager(builtins_only=True, plugins={"wrong": Wrong()})
