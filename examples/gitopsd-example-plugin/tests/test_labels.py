"""The labels transform: options from [plugins.labels] and [apps.X.plugins.labels], synced into a sandbox."""

import subprocess
import sys
import textwrap

import pytest

import gitopsd
from gitopsd_example import labels

CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  labels: {team: from-git}\ndata: {k: v}\n"
SECRET = "apiVersion: v1\nkind: Secret\nmetadata: {name: token}\nstringData: {k: v}\n"


@pytest.mark.anyio
@pytest.mark.gitopsd_plugins(labels=labels)
async def test_labels_and_annotations_from_global_and_app_options(git_repo, run_app, kube_get):
    git_repo.commit({"cm.yaml": CONFIGMAP, "secret.yaml": SECRET})
    source = {"type": "git", "url": git_repo.url, "ref": "main"}
    options = {"labels": {"team": "platform", "tier": "web"}, "annotations": {"example.com/runbook": "https://x.test/r"}}
    app = {"name": "web", "namespace": "labels", "source": source, "plugins": {"labels": {"kinds": ["ConfigMap"]}}}
    result = await run_app(app, plugins={"labels": options})
    assert result.ok, result.message
    cm = await kube_get("/api/v1/namespaces/labels/configmaps/settings")
    assert cm is not None
    assert cm["metadata"]["labels"]["team"] == "from-git"  # the manifest's own value wins by default
    assert cm["metadata"]["labels"]["tier"] == "web"
    assert cm["metadata"]["annotations"]["example.com/runbook"] == "https://x.test/r"
    secret = await kube_get("/api/v1/namespaces/labels/secrets/token")
    assert secret is not None and "tier" not in secret["metadata"].get("labels", {})  # kinds = ["ConfigMap"]

    app["plugins"] = {"labels": {"overwrite": True}}
    assert (await run_app(app, plugins={"labels": options})).ok
    cm = await kube_get("/api/v1/namespaces/labels/configmaps/settings")
    secret = await kube_get("/api/v1/namespaces/labels/secrets/token")
    assert cm is not None and cm["metadata"]["labels"]["team"] == "platform"
    assert secret is not None and secret["metadata"]["labels"]["tier"] == "web"


@pytest.mark.anyio
@pytest.mark.gitopsd_plugins(labels=labels)
async def test_without_options_nothing_changes(git_repo, run_app, kube_get):
    git_repo.commit({"cm.yaml": CONFIGMAP})
    result = await run_app({"namespace": "plain", "source": {"type": "git", "url": git_repo.url, "ref": "main"}})
    assert result.ok, result.message
    cm = await kube_get("/api/v1/namespaces/plain/configmaps/settings")
    # Only gitopsd's own owner annotation: the transform added nothing.
    assert cm is not None and set(cm["metadata"].get("annotations", {})) == {"gitopsd.dev/owner"}


@pytest.mark.anyio
@pytest.mark.gitopsd_plugins(labels=labels)
async def test_invalid_labels_are_explained(run_app, tmp_path):
    source = {"type": "local", "path": str(tmp_path)}
    bad = {"labels": {"team": "a b", "gitopsd.dev/app": "x"}, "annotations": {"Bad_Prefix.com/x": "y"}}
    with pytest.raises(gitopsd.ConfigError) as info:
        await run_app({"source": source, "plugins": {"labels": {"kinds": "ConfigMap"}}}, plugins={"labels": bad})
    errors = "\n".join(info.value.errors)
    assert "plugins.labels.labels.team: label value 'a b': use at most 63 letters" in errors
    assert "plugins.labels.labels.gitopsd.dev/app: key 'gitopsd.dev/app': keys under gitopsd.dev/ are gitopsd's own" in errors
    assert "plugins.labels.annotations.Bad_Prefix.com/x: key 'Bad_Prefix.com/x': the prefix before '/'" in errors
    assert "apps.app.plugins.labels.kinds: expected an array, got a string" in errors


def test_gitopsd_check_validates_the_installed_plugin(tmp_path):
    """Through the real entry point, as an operator would meet it."""
    config = tmp_path / "config.toml"
    config.write_text(textwrap.dedent(f"""
        [clusters.prod]
        kubeconfig = "kubeconfig"

        [plugins.labels]
        labels = {{ team = "platform" }}
        overwrite = "yes"

        [plugins.labelz]

        [apps.web]
        cluster = "prod"
        source = {{ type = "local", path = "{tmp_path}" }}
        plugins.labels = {{ labels = {{ team = "web team" }} }}
    """))
    result = subprocess.run([sys.executable, "-m", "gitopsd", "check", "-c", str(config)], capture_output=True, text=True)
    assert result.returncode == 1, result.stdout
    assert "config.toml: apps.web.plugins.labels.labels.team: label value 'web team'" in result.stderr
    assert "config.toml: plugins.labels.overwrite: expected a boolean, got a string" in result.stderr
    assert "config.toml: plugins.labelz: no plugin 'labelz' is installed (installed: " in result.stderr
    assert "labels" in result.stderr.split("installed: ")[1]
