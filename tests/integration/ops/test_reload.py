"""Hot reload against the sandbox: valid, invalid and partly changed configs; restart without work."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import gitopsd
from gitopsd.core import events as ev
from gitopsd.core.events import Event
from gitopsd.core.models import SyncStatus
from gitopsd.plugin.manager import PluginManager
from gitopsd.sandbox import Sandbox

from .conftest import Env, configmap, running, wait_for

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(tls=True, rollout_delay=0.05) as sb:
        yield sb


def app_dir(root: Path, name: str, manifest: str) -> Path:
    path = root / "apps" / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "objects.yaml").write_text(manifest + "\n")
    return path


def service_account(name: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})


def apps_toml(apps: dict[str, dict[str, Any]]) -> str:
    out = []
    for name, table in apps.items():
        out.append(f"[apps.{name}]")
        out.append('cluster = "sb"')
        # one namespace per app: apps sharing a namespace object would both own it
        out.append(f'namespace = "{table.pop("namespace", name)}"')
        out.append(f'source = {{type = "local", path = "apps/{table.pop("dir", name)}"}}')
        for key, value in table.items():
            out.append(f"{key} = {json.dumps(value)}")
    return "\n".join(out) + "\n"


def cluster_toml(sb: Sandbox) -> str:
    return f'[clusters.sb]\nkubeconfig = "{sb.kubeconfig}"\n'


def requests_for(sb: Sandbox, resource: str) -> int:
    return sum(r["count"] for r in sb.counters()["requests"] if r["resource"] == resource)


async def wait_synced(daemon: Any, *names: str) -> None:
    def synced() -> bool:
        return all(
            n in daemon.apps
            and daemon.apps[n].runner.status.sync == SyncStatus.SYNCED
            and daemon.apps[n].runner.status.revision
            for n in names
        )

    await wait_for(synced, timeout=30)


async def test_reload_valid_invalid_and_partly_changed(env: Env, sandbox: Sandbox) -> None:
    app_dir(env.root, "keep", service_account("keeper"))
    app_dir(env.root, "change", configmap("change-me", a="1"))
    app_dir(env.root, "drop", configmap("dropped", a="1"))
    app_dir(env.root, "add", configmap("added", a="1"))
    base = env.daemon_toml() + cluster_toml(sandbox)
    config = env.write(base + apps_toml({"keep": {}, "change": {}, "drop": {}}))
    events: list[Event] = []
    async with running(env, config, events=events) as daemon:
        await wait_synced(daemon, "keep", "change", "drop")
        keep = daemon.apps["keep"]
        change = daemon.apps["change"]
        reconciles = keep.runner.status.reconciles
        sa_requests = requests_for(sandbox, "serviceaccounts")

        # 1. invalid: bad TOML, then a valid file with a reference error. Nothing changes.
        env.path.write_text(base + "[apps.keep\n")
        await daemon.reload_from_file()
        env.path.write_text(base + apps_toml({"keep": {}, "change": {"cluster_typo": 1}}))
        await daemon.reload_from_file()
        failed = [e for e in events if isinstance(e, ev.ConfigReloadFailed)]
        assert len(failed) == 2
        assert "invalid TOML" in failed[0].data["errors"][0]
        assert any("apps.change.cluster_typo: unknown key" in e for e in failed[1].data["errors"])
        assert daemon.config is config
        assert daemon.apps["keep"] is keep and daemon.apps["change"] is change and "drop" in daemon.apps

        # 2. partly changed: keep untouched, change restarted, drop removed, add started
        new = env.write(base + apps_toml({"keep": {}, "change": {"timeout": "60s"}, "add": {}}))
        summary = await daemon.reload(new)
        assert summary == {"added": ["add"], "removed": ["drop"], "changed": ["change"]}
        await wait_synced(daemon, "change", "add")
        assert daemon.apps["keep"] is keep and not keep.done.is_set()  # same runner, same task
        assert daemon.apps["change"] is not change and change.done.is_set()
        assert "drop" not in daemon.apps
        assert keep.runner.status.reconciles == reconciles  # no restart, no extra reconcile
        rows = [r for r in sandbox.counters()["requests"] if r["resource"] == "serviceaccounts"]
        assert requests_for(sandbox, "serviceaccounts") == sa_requests, rows  # and no request for its objects
        reloaded = [e for e in events if isinstance(e, ev.ConfigReloaded)]
        assert reloaded[-1].data == summary
    # the removed app's objects stay (prune_on_remove is false)
    assert await kube_get(sandbox, "/api/v1/namespaces/drop/configmaps/dropped") == 200
    assert await kube_get(sandbox, "/api/v1/namespaces/drop/configmaps/never-was") == 404
    assert not any(r["verb"] == "delete" for r in sandbox.counters()["requests"])


async def kube_get(sb: Sandbox, path: str) -> int:
    ca = sb.ca_pem.decode() if isinstance(sb.ca_pem, bytes) else sb.ca_pem
    context = ssl.create_default_context(cadata=ca)
    async with httpx.AsyncClient(verify=context, headers={"Authorization": f"Bearer {sb.token}"}) as client:
        return (await client.get(sb.url + path)).status_code


async def test_config_file_change_is_picked_up(env: Env, sandbox: Sandbox) -> None:
    app_dir(env.root, "one", configmap("one", a="1"))
    app_dir(env.root, "two", configmap("two", a="1"))
    base = env.daemon_toml(watch=True) + cluster_toml(sandbox)
    config = env.write(base + apps_toml({"one": {}}))
    async with running(env, config) as daemon:
        await wait_synced(daemon, "one")
        one = daemon.apps["one"]
        env.path.write_text(base + apps_toml({"one": {}, "two": {}}))
        await wait_synced(daemon, "two")
        assert daemon.apps["one"] is one


async def test_restart_without_work(env: Env, sandbox: Sandbox) -> None:
    app_dir(env.root, "web", configmap("web", a="1") + "\n---\n" + service_account("web"))
    app_dir(env.root, "api", configmap("api", b="2"))
    config = env.write(env.daemon_toml() + cluster_toml(sandbox) + apps_toml({"web": {}, "api": {}}))
    async with running(env, config) as daemon:
        await wait_synced(daemon, "web", "api")
        first = sandbox.counters()["writes"]
    assert first >= 3  # the first start did apply
    sandbox.reset_counters()
    async with running(env, config) as daemon:
        await wait_synced(daemon, "web", "api")
        assert all(daemon.apps[n].runner.status.reconciles >= 1 for n in ("web", "api"))
        await daemon.apps["web"].runner.busy.acquire()  # the first reconcile has finished
        daemon.apps["web"].runner.busy.release()
    counters = sandbox.counters()
    assert counters["writes"] == 0, counters["requests"]


class Tagger:
    """A plugin with options: labels objects and records the options its event hook sees."""

    class Options(gitopsd.Options):
        value: str = "none"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    @gitopsd.hookimpl
    def gitopsd_plugin_options(self) -> type[gitopsd.Options]:
        return self.Options

    @gitopsd.hookimpl
    def gitopsd_post_render(self, manifests: list[Any], options: Any) -> list[Any]:
        return [{**m, "metadata": {**m["metadata"], "labels": {"tagger": options.value}}} for m in manifests]

    @gitopsd.hookimpl
    def gitopsd_event(self, event: Event, options: Any) -> None:
        self.seen.append((event.name, event.app or "", options.value))


async def test_reload_gives_plugins_their_new_options(env: Env, sandbox: Sandbox) -> None:
    tagger = Tagger()
    env.plugins = PluginManager(builtins_only=True, plugins={"tagger": tagger})
    app_dir(env.root, "one", configmap("tagged", a="1"))
    base = env.daemon_toml() + cluster_toml(sandbox)
    config = env.write(base + '[plugins.tagger]\nvalue = "first"\n' + apps_toml({"one": {}}))
    async with running(env, config) as daemon:
        await wait_synced(daemon, "one")
        assert await kube_label(sandbox, "/api/v1/namespaces/one/configmaps/tagged") == "first"
        assert ("sync-succeeded", "one", "first") in tagger.seen

        summary = await daemon.reload(env.write(base + '[plugins.tagger]\nvalue = "second"\n' + apps_toml({"one": {}})))
        assert summary["changed"] == ["one"]  # its options changed: restarted, rendered again
        await wait_for(lambda: ("sync-succeeded", "one", "second") in tagger.seen, timeout=30)
        assert await kube_label(sandbox, "/api/v1/namespaces/one/configmaps/tagged") == "second"
        assert ("config-reloaded", "", "second") in tagger.seen


async def kube_label(sb: Sandbox, path: str) -> str:
    ca = sb.ca_pem.decode() if isinstance(sb.ca_pem, bytes) else sb.ca_pem
    context = ssl.create_default_context(cadata=ca)
    async with httpx.AsyncClient(verify=context, headers={"Authorization": f"Bearer {sb.token}"}) as client:
        response = await client.get(sb.url + path)
    return str(response.json()["metadata"]["labels"].get("tagger"))
