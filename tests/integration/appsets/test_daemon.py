"""Appsets in the daemon: a real git repository, sandboxes behind several clusters, push webhooks."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from gitopsd.core import events as ev
from gitopsd.core.events import Event
from gitopsd.core.models import SyncStatus
from gitopsd.sandbox import Sandbox
from tests.integration.ops.conftest import (
    API_TOKEN,
    Env,
    GitRepo,
    configmap,
    github_signature,
    running,
    wait_for,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

CLUSTERS = ("east", "west", "north")


@pytest.fixture
async def sandboxes() -> AsyncIterator[dict[str, Sandbox]]:
    """One sandbox per cluster, so "synced to the right cluster" is visible."""
    boxes: dict[str, Sandbox] = {}
    try:
        for name in CLUSTERS:
            boxes[name] = await Sandbox(tls=True, rollout_delay=0.05).start()
        yield boxes
    finally:
        for box in boxes.values():
            await box.stop()


async def kube_get(sb: Sandbox, path: str) -> int:
    ca = sb.ca_pem.decode() if isinstance(sb.ca_pem, bytes) else sb.ca_pem
    context = ssl.create_default_context(cadata=ca)
    async with httpx.AsyncClient(verify=context, headers={"Authorization": f"Bearer {sb.token}"}) as client:
        return (await client.get(sb.url + path)).status_code


def deletes(sb: Sandbox) -> int:
    return sum(r["count"] for r in sb.counters()["requests"] if r["verb"] == "delete")


def config_toml(env: Env, boxes: dict[str, Sandbox], repo: GitRepo, appset: str = "", interval: str = "1h") -> str:
    out = [env.daemon_toml()]
    for name, box in boxes.items():
        out.append(f'[clusters.{name}]\nkubeconfig = "{box.kubeconfig}"\nlabels = {{env = "prod", region = "{name}"}}\n')
    out.append(
        f"""
[appsets.svc]
generators = [{{type = "matrix", generators = [
  {{type = "git-directories", url = "{repo.url}", ref = "main", directories = ["apps/*"], exclude = ["apps/skip"]}},
  {{type = "clusters", selector = {{env = "prod"}}}},
]}}]
interval = "{interval}"
{appset}

[appsets.svc.template]
name = "{{{{ path.basename }}}}-{{{{ cluster.name }}}}"
cluster = "{{{{ cluster.name }}}}"
namespace = "{{{{ path.basename }}}}"
source = {{type = "git", url = "{repo.url}", ref = "main", path = "{{{{ path }}}}"}}
"""
    )
    return "\n".join(out)


def synced(daemon: Any, names: set[str]) -> bool:
    return names <= daemon.apps.keys() and all(
        daemon.apps[n].runner.status.sync == SyncStatus.SYNCED and daemon.apps[n].runner.status.revision for n in names
    )


def app_files(*names: str) -> dict[str, str]:
    return {f"apps/{n}/objects.yaml": configmap(f"cm-{n}", app=n) + "\n" for n in names}


def expected(*dirs: str) -> set[str]:
    return {f"{d}-{c}" for d in dirs for c in CLUSTERS}


async def test_directories_times_clusters_then_a_pushed_directory_within_one_poll(
    env: Env, sandboxes: dict[str, Sandbox]
) -> None:
    repo = GitRepo(env.root, "repo")
    repo.commit({**app_files("web", "api"), "apps/skip/objects.yaml": configmap("skipped") + "\n", "README": "x\n"})
    config = env.write(config_toml(env, sandboxes, repo, interval="1s"))
    assert not config.apps  # git-based: expanded by the daemon, not at load
    async with running(env, config) as daemon:
        await wait_for(lambda: synced(daemon, expected("web", "api")), timeout=60)
        assert set(daemon.apps) == expected("web", "api")  # 2 dirs x 3 clusters; apps/skip excluded
        for cluster, box in sandboxes.items():
            assert daemon.apps[f"web-{cluster}"].runner.app.cluster == cluster
            for d in ("web", "api"):
                assert await kube_get(box, f"/api/v1/namespaces/{d}/configmaps/cm-{d}") == 200
            assert await kube_get(box, "/api/v1/namespaces/skip/configmaps/skipped") == 404
        # a new directory appears within one poll of the repository (interval 1s)
        repo.commit(app_files("db"))
        await wait_for(lambda: synced(daemon, expected("web", "api", "db")), timeout=60)
        for box in sandboxes.values():
            assert await kube_get(box, "/api/v1/namespaces/db/configmaps/cm-db") == 200


async def test_push_webhook_refreshes_the_appset_at_once(env: Env, sandboxes: dict[str, Sandbox], http: httpx.AsyncClient) -> None:
    repo = GitRepo(env.root, "repo")
    repo.commit(app_files("web"))
    config = env.write(config_toml(env, sandboxes, repo, interval="1h"))
    async with running(env, config) as daemon:
        await wait_for(lambda: synced(daemon, expected("web")), timeout=60)
        sha = repo.commit(app_files("queue"))
        body = json.dumps(
            {"ref": "refs/heads/main", "after": sha, "repository": {"clone_url": repo.url, "default_branch": "main"}}
        ).encode()
        response = await http.post(
            f"{env.base_url}/hooks/github",
            content=body,
            headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(body), "Content-Type": "application/json"},
        )
        assert response.status_code == 202, response.text
        assert "appset:svc" in response.json()["refreshed"]
        await wait_for(lambda: synced(daemon, expected("web", "queue")), timeout=60)
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        listed = (await http.get(f"{env.base_url}/api/v1/apps/queue-west", headers=auth)).json()
        assert (listed["appset"], listed["cluster"], listed["sync"]) == ("svc", "west", "Synced")


async def test_removed_directory_app_gone_objects_kept(env: Env, sandboxes: dict[str, Sandbox]) -> None:
    repo = GitRepo(env.root, "repo")
    repo.commit(app_files("web", "api"))
    config = env.write(config_toml(env, sandboxes, repo, appset='max_removals = "50%"', interval="1s"))
    async with running(env, config) as daemon:
        await wait_for(lambda: synced(daemon, expected("web", "api")), timeout=60)
        before = {name: deletes(box) for name, box in sandboxes.items()}
        _remove_dir(repo, "apps/api")
        await wait_for(lambda: set(daemon.apps) == expected("web"), timeout=60)
        for name, box in sandboxes.items():
            assert await kube_get(box, "/api/v1/namespaces/api/configmaps/cm-api") == 200  # kept
            assert deletes(box) == before[name]


async def test_removed_directory_pruned_with_prune_on_remove(env: Env, sandboxes: dict[str, Sandbox]) -> None:
    repo = GitRepo(env.root, "repo")
    repo.commit(app_files("web", "api"))
    appset = 'max_removals = 3\nprune_on_remove = true'
    config = env.write(config_toml(env, sandboxes, repo, appset=appset, interval="1s"))
    async with running(env, config) as daemon:
        await wait_for(lambda: synced(daemon, expected("web", "api")), timeout=60)
        _remove_dir(repo, "apps/api")
        await wait_for(lambda: set(daemon.apps) == expected("web"), timeout=60)
        for box in sandboxes.values():
            await wait_for_status(box, "/api/v1/namespaces/api/configmaps/cm-api", 404)
            assert await kube_get(box, "/api/v1/namespaces/web/configmaps/cm-web") == 200


async def test_guard_empty_generator_and_too_many_removals_remove_nothing(env: Env, sandboxes: dict[str, Sandbox]) -> None:
    repo = GitRepo(env.root, "repo")
    repo.commit(app_files("a", "b", "c", "d", "e"))
    events: list[Event] = []
    config = env.write(config_toml(env, sandboxes, repo, interval="1s"))
    async with running(env, config, events=events) as daemon:
        everything = expected("a", "b", "c", "d", "e")
        await wait_for(lambda: synced(daemon, everything), timeout=90)
        # one directory of five = 3 of 15 apps = 20 %: allowed
        _remove_dir(repo, "apps/e")
        await wait_for(lambda: set(daemon.apps) == expected("a", "b", "c", "d"), timeout=60)
        assert not [e for e in events if isinstance(e, ev.AppSetGuard)]
        # two more directories = 6 of 12 apps = 50 % > 20 %: guarded, nothing removed
        _remove_dir(repo, "apps/d", "apps/c")
        await wait_for(lambda: any(isinstance(e, ev.AppSetGuard) for e in events), timeout=60)
        guard = next(e for e in events if isinstance(e, ev.AppSetGuard))
        assert guard.reason == "TooManyRemovals" and guard.data["appset"] == "svc"
        assert sorted(guard.data["removed"]) == sorted(expected("c", "d"))
        assert set(daemon.apps) == expected("a", "b", "c", "d")
        # every directory gone: the generator returns nothing -> guard, nothing removed
        _remove_dir(repo, "apps/a", "apps/b")
        repo.commit({"README": "empty now\n"})
        await wait_for(lambda: any(e.reason == "NoApps" for e in events if isinstance(e, ev.AppSetGuard)), timeout=60)
        assert set(daemon.apps) == expected("a", "b", "c", "d")
        for box in sandboxes.values():
            for d in "abcd":
                assert await kube_get(box, f"/api/v1/namespaces/{d}/configmaps/cm-{d}") == 200
            assert deletes(box) == 0


async def wait_for_status(box: Sandbox, path: str, status: int, timeout: float = 30) -> None:
    with anyio.fail_after(timeout):
        while await kube_get(box, path) != status:
            await anyio.sleep(0.1)


def _remove_dir(repo: GitRepo, *paths: str) -> None:
    from tests.integration.ops.conftest import git

    for path in paths:
        git("rm", "-r", "-q", path, cwd=repo.work)
    git("commit", "-q", "-m", "remove", cwd=repo.work)
    git("push", "-q", "origin", "main", cwd=repo.work)


async def test_config_reload_keeps_fetched_apps_and_applies_the_new_template(env: Env, sandboxes: dict[str, Sandbox]) -> None:
    repo = GitRepo(env.root, "repo")
    repo.commit(app_files("web", "api"))
    events: list[Event] = []
    config = env.write(config_toml(env, sandboxes, repo))
    async with running(env, config, events=events) as daemon:
        await wait_for(lambda: synced(daemon, expected("web", "api")), timeout=60)
        runner = daemon.apps["web-east"].runner
        # a reload with the same appset: its git-generated apps stay, untouched
        env.path.write_text(config_toml(env, sandboxes, repo) + "\n# a comment\n")
        await daemon.reload_from_file()
        assert set(daemon.apps) == expected("web", "api") and daemon.apps["web-east"].runner is runner
        # a new template: the apps are regenerated from the last fetch and restarted
        env.path.write_text(config_toml(env, sandboxes, repo).replace('namespace = "{{ path.basename }}"', 'namespace = "{{ path.basename }}-v2"'))
        await daemon.reload_from_file()
        assert set(daemon.apps) == expected("web", "api")
        assert daemon.apps["web-east"].runner.app.namespace == "web-v2"
        await wait_for(lambda: synced(daemon, expected("web", "api")), timeout=60)
        assert await kube_get(sandboxes["east"], "/api/v1/namespaces/web-v2/configmaps/cm-web") == 200
        assert not [e for e in events if isinstance(e, ev.ConfigReloadFailed | ev.AppSetGuard)]


async def test_labels_added_to_a_cluster_add_its_apps_on_reload(env: Env, sandboxes: dict[str, Sandbox]) -> None:
    def toml(west_env: str, east_tier: str = "1") -> str:
        out = [env.daemon_toml()]
        for name, box in sandboxes.items():
            labels = f'env = "{west_env if name == "west" else "prod"}"' + (f', tier = "{east_tier}"' if name == "east" else "")
            out.append(f'[clusters.{name}]\nkubeconfig = "{box.kubeconfig}"\nlabels = {{{labels}}}\n')
        out.append(
            """
[appsets.mon]
generators = [{type = "clusters", selector = {env = "prod"}}]
[appsets.mon.template]
name = "mon-{{ cluster.name }}"
cluster = "{{ cluster.name }}"
namespace = "mon"
source = {type = "local", path = "mon"}
"""
        )
        return "\n".join(out)

    (env.root / "mon").mkdir()
    (env.root / "mon" / "cm.yaml").write_text(configmap("mon") + "\n")
    config = env.write(toml("dev"))
    assert set(config.apps) == {"mon-east", "mon-north"}
    async with running(env, config) as daemon:
        await wait_for(lambda: synced(daemon, {"mon-east", "mon-north"}), timeout=60)
        east = daemon.apps["mon-east"].runner
        env.path.write_text(toml("prod", east_tier="2"))
        await daemon.reload_from_file()
        await wait_for(lambda: synced(daemon, {"mon-east", "mon-west", "mon-north"}), timeout=60)
        assert daemon.apps["mon-east"].runner is east  # its cluster's labels changed: not restarted
        assert await kube_get(sandboxes["west"], "/api/v1/namespaces/mon/configmaps/mon") == 200
