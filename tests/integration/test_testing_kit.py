"""gitopsd.testing, used the way a plugin author would: git_repo + run_app + recorded_events."""

from __future__ import annotations

import pytest

import gitopsd

CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {color: %s}\n"


class Stamp:
    """A post-render transform, registered in code through the plugin_manager fixture."""

    @gitopsd.hookimpl
    def gitopsd_post_render(self, app, manifests):
        return [{**m, "metadata": {**m["metadata"], "annotations": {"stamped-by": app.name}}} for m in manifests]


@pytest.mark.anyio
@pytest.mark.gitopsd_plugins(Stamp())
async def test_git_repo_synced_through_run_app(git_repo, run_app, recorded_events, gitopsd_sandbox, kube_get) -> None:
    first = git_repo.commit({"app/cm.yaml": CONFIGMAP % "blue"})
    source = {"type": "git", "url": git_repo.url, "ref": "main", "path": "app"}
    result = await run_app({"name": "colors", "namespace": "kit", "source": source})
    assert result.ok and result.revision == f"main@sha1:{first}"
    assert "sync-succeeded" in [e.name for e in recorded_events]

    second = git_repo.commit({"app/cm.yaml": CONFIGMAP % "green"})
    gitopsd_sandbox.reset_counters()
    result = await run_app({"name": "colors", "namespace": "kit", "source": source})
    assert result.ok and result.revision == f"main@sha1:{second}"
    assert [(str(o.ref), o.action) for o in result.objects if o.action != "unchanged"] == [
        ("ConfigMap kit/settings", "changed")
    ]
    assert gitopsd_sandbox.counters()["writes"] == 1
    live = await kube_get("/api/v1/namespaces/kit/configmaps/settings")
    assert live is not None and live["data"] == {"color": "green"}
    assert live["metadata"]["annotations"]["stamped-by"] == "colors"
    assert await kube_get("/api/v1/namespaces/kit/configmaps/absent") is None


def test_plugin_manager_fixture_is_isolated(plugin_manager) -> None:
    names = {info.name for info in plugin_manager.info()}
    assert {"git", "local", "plain"} <= names
    assert all(info.distribution == "gitopsd" for info in plugin_manager.info())
