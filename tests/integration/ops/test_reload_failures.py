"""A reload that fails in any way leaves the daemon running with the previous config (issue 13)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import gitopsd
from gitopsd.core import events as ev
from gitopsd.core.events import Event
from gitopsd.core.models import SyncStatus
from gitopsd.plugin.manager import PluginManager
from gitopsd.sandbox import Sandbox
from gitopsd_plugins.local import LocalSource

from .conftest import Env, configmap, running, wait_for

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(tls=True, rollout_delay=0.05) as sb:
        yield sb


def app_toml(name: str, source: str) -> str:
    return f'[apps.{name}]\ncluster = "sb"\nnamespace = "{name}"\nsource = {source}\n'


def local(root: Path, name: str) -> None:
    """An app directory ``apps/NAME`` with one ConfigMap."""
    path = root / "apps" / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "objects.yaml").write_text(configmap(name, a="1") + "\n")


async def test_source_constructor_oserror_keeps_the_old_config(env: Env, sandbox: Sandbox) -> None:
    """Adding a git app whose cache directory cannot be created (a file is in the way): reload-failed, nothing changes."""
    base = env.daemon_toml() + f'[clusters.sb]\nkubeconfig = "{sandbox.kubeconfig}"\n'
    config = env.write(base + app_toml("keep", '{ type = "local", path = "apps/keep" }'))
    local(env.root, "keep")
    events: list[Event] = []
    async with running(env, config, events=events) as daemon:
        await wait_for(lambda: daemon.apps["keep"].runner.status.sync == SyncStatus.SYNCED, timeout=30)
        runner = daemon.apps["keep"].runner
        (env.state / "cache").mkdir(parents=True, exist_ok=True)
        (env.state / "cache" / "git").write_text("not a directory")
        env.path.write_text(base + app_toml("keep", '{ type = "local", path = "apps/drop-me" }')
                            + app_toml("git-app", '{ type = "git", url = "https://git.example.test/r.git" }'))
        await daemon.reload_from_file()
        failed = [e for e in events if e.name == ev.ConfigReloadFailed.name]
        assert failed and "cannot create an app's source: FileExistsError" in failed[-1].message, failed
        assert daemon.config is config and set(daemon.apps) == {"keep"}
        assert daemon.apps["keep"].runner is runner, "the running app was restarted by a failed reload"
        await anyio.sleep(0.2)
        assert not daemon.stopping.is_set()
        assert daemon.metrics.exposition().decode().count('result="failed"} 1.0') == 1


class CloseFails(LocalSource):
    """A local source whose plugin has a bug in aclose()."""

    async def aclose(self) -> None:
        raise RuntimeError("plugin bug in aclose")


class Plugin:
    @gitopsd.hookimpl
    def gitopsd_source_types(self) -> dict[str, type[gitopsd.Source]]:
        return {"local-close-fails": CloseFails}


async def test_plugin_aclose_raising_fails_the_reload_and_keeps_the_old_config(env: Env, sandbox: Sandbox) -> None:
    env.plugins = PluginManager(builtins_only=True, plugins=[Plugin()])
    local(env.root, "buggy")
    local(env.root, "other")
    base = env.daemon_toml() + f'[clusters.sb]\nkubeconfig = "{sandbox.kubeconfig}"\n'
    config = env.write(base + app_toml("buggy", '{ type = "local-close-fails", path = "apps/buggy" }')
                       + app_toml("other", '{ type = "local", path = "apps/other" }'))
    events: list[Event] = []
    async with running(env, config, events=events) as daemon:
        await wait_for(lambda: all(daemon.apps[n].runner.status.sync == SyncStatus.SYNCED for n in ("buggy", "other")),
                       timeout=30)
        env.path.write_text(base + app_toml("other", '{ type = "local", path = "apps/other" }')
                            + app_toml("added", '{ type = "local", path = "apps/other" }'))
        await daemon.reload_from_file()
        failed = [e for e in events if e.name.startswith("config-reload")]
        assert [e.name for e in failed] == [ev.ConfigReloadFailed.name]
        assert "apps.buggy: closing its source failed: RuntimeError: plugin bug in aclose" in failed[0].message
        # the previous config goes on: the app is running again, nothing was added
        assert set(daemon.apps) == {"buggy", "other"} and "added" not in daemon.config.apps
        await wait_for(lambda: daemon.apps["buggy"].runner.status.reconciles >= 1, timeout=30)
        assert not daemon.stopping.is_set()
