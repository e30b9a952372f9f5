"""/readyz: ready once started, whatever the clusters do (docs/operations.md, "Start-up and readiness")."""

from __future__ import annotations

import httpx
import pytest

from gitopsd.core.events import Event
from tests.integration.ops.conftest import Env, GitRepo, configmap, free_port, running, wait_for

pytestmark = pytest.mark.anyio


async def test_ready_while_a_cluster_is_down(env: Env, http: httpx.AsyncClient) -> None:
    """An app whose cluster refuses connections fails its syncs; the daemon stays ready.

    Readiness used to look at the clusters: a first /readyz after a failed request said
    "cluster ... not reached yet" (503), one before it said ready, and stayed so.
    """
    repo = GitRepo(env.root, "app")
    repo.commit({"cm.yaml": configmap("settings", a="1")})
    kubeconfig = env.root / "down.kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{free_port()}', insecure-skip-tls-verify: true}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    config = env.write(
        env.daemon_toml()
        + f'[clusters.down]\nkubeconfig = "{kubeconfig}"\n\n'
        + f'[apps.web]\ncluster = "down"\nnamespace = "web"\nsource = {{ type = "git", url = "{repo.url}", ref = "main" }}\n'
    )
    events: list[Event] = []
    async with running(env, config, events=events):
        await wait_for(lambda: any(e.name == "cluster-unreachable" for e in events), timeout=60)
        r = await http.get(f"{env.base_url}/readyz")
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "ready"}
