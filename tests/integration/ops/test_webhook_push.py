"""Push webhooks end to end: real git repositories (file:// URLs), the daemon's API, the sandbox."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from gitopsd.core.models import SyncStatus
from gitopsd.sandbox import Sandbox

from .conftest import (
    GITLAB_TOKEN,
    Env,
    GitRepo,
    configmap,
    gitea_signature,
    github_signature,
    running,
    wait_for,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(tls=True, rollout_delay=0.05) as sb:
        yield sb


def github_push(repo_url: str, ref: str) -> bytes:
    return json.dumps(
        {
            "ref": ref,
            "before": "0" * 40,
            "after": "1" * 40,
            "repository": {"clone_url": repo_url, "html_url": repo_url.removesuffix(".git"), "default_branch": "main"},
        }
    ).encode()


async def test_push_refreshes_exactly_the_matching_apps(env: Env, sandbox: Sandbox, http: httpx.AsyncClient) -> None:
    web = GitRepo(env.root, "web")
    other = GitRepo(env.root, "other")
    web.commit({"objects.yaml": configmap("web", rev="1")})
    web.commit({"objects.yaml": configmap("web", rev="dev-1")}, branch="dev")
    web.tag("v1")
    other.commit({"objects.yaml": configmap("other", rev="1")})
    apps = {
        "web-main": (web.url, "main"),
        "web-dev": (web.url, "dev"),
        "web-tag": (web.url, "v1"),
        "other": (other.url, "main"),
    }
    toml = env.daemon_toml() + f'[clusters.sb]\nkubeconfig = "{sandbox.kubeconfig}"\n'
    for name, (url, ref) in apps.items():
        toml += (
            f'[apps.{name}]\ncluster = "sb"\nnamespace = "{name}"\n'
            f'source = {{type = "git", url = "{url}", ref = "{ref}", poll_cache = 0}}\n'
        )
    config = env.write(toml)
    hook = f"{env.base_url}/hooks"
    async with running(env, config) as daemon:

        def synced() -> bool:
            return all(daemon.apps[n].runner.status.sync == SyncStatus.SYNCED for n in apps)

        await wait_for(synced, timeout=60)
        counts = {n: daemon.apps[n].runner.status.reconciles for n in apps}

        async def post(provider: str, body: bytes, **headers: str) -> httpx.Response:
            return await http.post(f"{hook}/{provider}", content=body, headers=headers)

        # refused: forged, missing, and a valid signature replayed over an altered body
        body = github_push(web.url, "refs/heads/main")
        altered = body.replace(b"refs/heads/main", b"refs/heads/dev ")
        for headers, content in (
            ({"X-Hub-Signature-256": github_signature(body, "forged-secret")}, body),
            ({}, body),
            ({"X-Hub-Signature-256": github_signature(body)}, altered),
        ):
            r = await post("github", content, **{"X-GitHub-Event": "push", **headers})
            assert r.status_code == 401
        # accepted and ignored: another repository, another branch
        r = await post("github", github_push("https://github.com/acme/unrelated.git", "refs/heads/main"),
                       **{"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(github_push("https://github.com/acme/unrelated.git", "refs/heads/main"))})
        assert r.status_code == 202 and r.json()["refreshed"] == []
        feature = github_push(web.url, "refs/heads/feature")
        r = await post("github", feature, **{"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(feature)})
        assert r.status_code == 202 and r.json() == {**r.json(), "status": "ignored", "refreshed": []}
        await anyio.sleep(0.5)
        assert {n: daemon.apps[n].runner.status.reconciles for n in apps} == counts  # nobody woke up

        # a real push to main, announced by GitHub: only web-main syncs it
        sha = web.commit({"objects.yaml": configmap("web", rev="2")})
        r = await post("github", body, **{"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(body)})
        assert r.status_code == 202 and r.json()["refreshed"] == ["web-main"]
        await wait_for(lambda: sha in daemon.apps["web-main"].runner.status.revision, timeout=20)
        cm = await kube_json(sandbox, "/api/v1/namespaces/web-main/configmaps/web")
        assert cm["data"] == {"rev": "2"}

        # a tag push (GitHub), the same repository spelled differently (no .git, upper case)
        web.tag("v1")
        tag_push = github_push(web.url.removesuffix(".git").upper().replace("FILE://", "file://"), "refs/tags/v1")
        r = await post("github", tag_push, **{"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(tag_push)})
        assert r.json()["refreshed"] == ["web-tag"]

        # GitLab (token) and Gitea (hex signature)
        gitlab = json.dumps({"ref": "refs/heads/dev", "project": {"git_http_url": web.url}}).encode()
        r = await post("gitlab", gitlab, **{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": GITLAB_TOKEN})
        assert r.status_code == 202 and r.json()["refreshed"] == ["web-dev"]
        r = await post("gitlab", gitlab, **{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "wrong"})
        assert r.status_code == 401
        gitea = json.dumps({"ref": "refs/heads/main", "repository": {"clone_url": other.url}}).encode()
        r = await post("gitea", gitea, **{"X-Gitea-Event": "push", "X-Gitea-Signature": gitea_signature(gitea)})
        assert r.status_code == 202 and r.json()["refreshed"] == ["other"]

        def woke() -> bool:
            now = {n: daemon.apps[n].runner.status.reconciles for n in apps}
            return all(now[n] > counts[n] for n in apps)

        await wait_for(woke, timeout=20)


async def kube_json(sb: Sandbox, path: str) -> Any:
    import ssl

    context = ssl.create_default_context(cadata=sb.ca_pem.decode())
    async with httpx.AsyncClient(verify=context, headers={"Authorization": f"Bearer {sb.token}"}) as client:
        r = await client.get(sb.url + path)
        r.raise_for_status()
        return r.json()
