"""gitopsd.testing, used the way a plugin author would: git_repo + run_app + recorded_events."""

from __future__ import annotations

import io
import tarfile

import httpx
import pytest

import gitopsd
from gitopsd.testing.artifacts import OCIRegistry, find_registry_binary, push_oci_artifact, tar_gz
from tests.conftest import require_tool

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


def test_tar_gz_builds_the_archive_as_given() -> None:
    data = tar_gz({"a/cm.yaml": "text", "bin": b"\x00\x01", "../escape.yaml": "x"}, symlinks={"link": "../../etc/passwd"})
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        members = {m.name: m for m in archive.getmembers()}
        assert archive.extractfile(members["a/cm.yaml"]).read() == b"text"  # type: ignore[union-attr]
        assert archive.extractfile(members["bin"]).read() == b"\x00\x01"  # type: ignore[union-attr]
    assert "../escape.yaml" in members  # hostile names are kept, to test that plugins refuse them
    assert members["link"].issym() and members["link"].linkname == "../../etc/passwd"


@pytest.mark.anyio
async def test_oci_artifact_pushed_to_the_kit_registry_syncs(oci_registry, run_app, kube_get) -> None:
    digest = oci_registry.push_artifact("team/app", "v1", tar_gz({"cm.yaml": CONFIGMAP % "teal"}))
    async with httpx.AsyncClient() as client:
        head = await client.head(
            f"{oci_registry.url}/v2/team/app/manifests/v1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
    assert head.headers["Docker-Content-Digest"] == digest
    source = {"type": "oci", "url": f"oci://{oci_registry.host}/team/app", "tag": "v1", "insecure": True}
    result = await run_app({"name": "oci", "namespace": "kit-oci", "source": source})
    assert result.ok and result.revision == f"v1@{digest}", result.message
    live = await kube_get("/api/v1/namespaces/kit-oci/configmaps/settings")
    assert live is not None and live["data"] == {"color": "teal"}


def test_oci_registry_with_credentials_refuses_anonymous_pushes(tmp_path) -> None:
    if find_registry_binary() is None:
        require_tool("docker-registry")
    with OCIRegistry(tmp_path / "registry", credentials=("bot", "pass-123")) as registry:
        with pytest.raises(RuntimeError, match="HTTP 401"):
            push_oci_artifact(registry.url, "team/app", "v1", tar_gz({"a": "b"}))
        assert registry.push_artifact("team/app", "v1", tar_gz({"a": "b"})).startswith("sha256:")
    assert registry.host and registry._proc is None


class Labeller:
    """A post-render transform with options, registered under a name of our choosing."""

    class Options(gitopsd.Options):
        team: str = "nobody"

    @gitopsd.hookimpl
    def gitopsd_plugin_options(self):
        return self.Options

    @gitopsd.hookimpl
    def gitopsd_post_render(self, manifests, options):
        return [{**m, "metadata": {**m["metadata"], "labels": {"team": options.team}}} for m in manifests]


@pytest.mark.anyio
@pytest.mark.gitopsd_plugins(labeller=Labeller())
async def test_run_app_takes_plugin_options(git_repo, run_app, kube_get) -> None:
    git_repo.commit({"cm.yaml": CONFIGMAP % "red"})
    source = {"type": "git", "url": git_repo.url, "ref": "main"}
    app = {"name": "one", "namespace": "kit-opts", "source": source, "plugins": {"labeller": {"team": "apps"}}}
    result = await run_app(app, plugins={"labeller": {"team": "platform"}})
    assert result.ok, result.message
    live = await kube_get("/api/v1/namespaces/kit-opts/configmaps/settings")
    assert live is not None and live["metadata"]["labels"]["team"] == "apps"
    namespace = await kube_get("/api/v1/namespaces/kit-opts")  # created by gitopsd after post-render hooks
    assert namespace is not None and "team" not in namespace["metadata"].get("labels", {})
    with pytest.raises(gitopsd.ConfigError, match=r"plugins\.labeller\.tem: unknown key"):
        await run_app({"source": source}, plugins={"labeller": {"tem": "x"}})
