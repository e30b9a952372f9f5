"""Replayed push webhooks (issue 13): a delivery ID seen within the hour is answered 202 and ignored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from gitopsd.core.models import SyncStatus
from gitopsd.sandbox import Sandbox
from gitopsd.server.push import DeliveryLog

from .conftest import GITLAB_TOKEN, Env, GitRepo, configmap, github_signature, running, wait_for

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(tls=True, rollout_delay=0.05) as sb:
        yield sb


def test_delivery_log_remembers_for_the_ttl() -> None:
    now = [0.0]
    log = DeliveryLog(ttl=3600, max_entries=3, clock=lambda: now[0])
    assert log.first_time("github", "d1") and not log.first_time("github", "d1")
    assert log.first_time("gitea", "d1")  # per provider
    assert log.first_time("github", "") and log.first_time("github", "")  # no ID: cannot tell
    now[0] = 3599.0
    assert not log.first_time("github", "d1")
    now[0] = 3601.0
    assert log.first_time("github", "d1")  # forgotten after an hour
    for i in range(10):
        log.first_time("github", f"x{i}")
    assert len(log._seen) <= 3  # bounded


async def test_replayed_delivery_is_ignored(env: Env, sandbox: Sandbox, http: httpx.AsyncClient) -> None:
    repo = GitRepo(env.root, "web")
    repo.commit({"objects.yaml": configmap("web", rev="1")})
    toml = env.daemon_toml() + f'[clusters.sb]\nkubeconfig = "{sandbox.kubeconfig}"\n'
    toml += ('[apps.web]\ncluster = "sb"\nnamespace = "web"\n'
             f'source = {{type = "git", url = "{repo.url}", ref = "main", poll_cache = 0}}\n')
    config = env.write(toml)
    body = json.dumps({"ref": "refs/heads/main", "repository": {"clone_url": repo.url, "default_branch": "main"}}).encode()
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(body),
               "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}
    async with running(env, config) as daemon:
        status = daemon.apps["web"].runner.status
        await wait_for(lambda: status.sync == SyncStatus.SYNCED, timeout=60)
        first = await http.post(f"{env.base_url}/hooks/github", content=body, headers=headers)
        assert first.status_code == 202 and first.json()["refreshed"] == ["web"]
        await wait_for(lambda: daemon.apps["web"].runner.status.reconciles >= 2, timeout=30)
        await anyio.sleep(1.0)
        count = daemon.apps["web"].runner.status.reconciles
        replay = await http.post(f"{env.base_url}/hooks/github", content=body, headers=headers)
        assert replay.status_code == 202
        assert replay.json() == {"status": "ignored", "reason": "delivery already received"}
        await anyio.sleep(1.0)
        assert daemon.apps["web"].runner.status.reconciles == count, "the replay triggered a reconcile"
        metrics = (await http.get(f"{env.base_url}/metrics")).text
        assert 'provider="github",outcome="replayed"} 1.0' in metrics or \
            'outcome="replayed",provider="github"} 1.0' in metrics, metrics[-2000:]
        # A new delivery of the same payload is a new event; GitLab's ID header works the same way.
        fresh = await http.post(f"{env.base_url}/hooks/github", content=body,
                                headers={**headers, "X-GitHub-Delivery": "another-delivery"})
        assert fresh.json()["refreshed"] == ["web"]
        gitlab = json.dumps({"ref": "refs/heads/main", "project": {"git_http_url": repo.url}}).encode()
        gl = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": GITLAB_TOKEN, "X-Gitlab-Event-UUID": "gl-1"}
        assert (await http.post(f"{env.base_url}/hooks/gitlab", content=gitlab, headers=gl)).json()["refreshed"] == ["web"]
        again = await http.post(f"{env.base_url}/hooks/gitlab", content=gitlab, headers=gl)
        assert again.json()["status"] == "ignored"
