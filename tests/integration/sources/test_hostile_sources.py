"""Hostile sources and credential scoping (issue 13), against real servers on loopback.

An attacker with write access to one app's repository, registry or chart repository must not
read host files, reach the network from the renderer, exhaust memory, or collect the
credentials of another origin.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import anyio
import pytest

from gitopsd import AppConfig, Artifact, ConfigError, PluginContext, RenderError, SourceError
from gitopsd.core.secrets import read_secret_file
from gitopsd.plugin.config import PluginTable
from gitopsd_plugins._gitcmd import CREDENTIAL_HELPER
from gitopsd_plugins.git import GitOptions, GitSource
from gitopsd_plugins.helm import HelmChartOptions, HelmChartSource
from gitopsd_plugins.helm_template import HelmTemplateOptions, HelmTemplateRenderer
from gitopsd_plugins.kustomize import KustomizeOptions, KustomizeRenderer
from gitopsd_plugins.oci import FLUX_LAYER, OCIOptions, OCISource

from .conftest import (
    EXAMPLES,
    HTTP_PASSWORD,
    HTTP_USER,
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    Repo,
    TokenRegistry,
    _GitHTTPHandler,
    _serve,
    tar_gz,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: '{value}'\n"


def app(name: str = "web") -> AppConfig:
    return AppConfig(name=name, cluster="c", namespace="apps", source=PluginTable(type="local"))


def artifact(path: Path) -> Artifact:
    return Artifact(path=path, revision="test", digest="sha256:" + hashlib.sha256(str(path).encode()).hexdigest())


class Recording(BaseHTTPRequestHandler):
    """Serves ``files`` (path -> (status, headers, body)); records (path, Authorization) per request."""

    files: dict[str, tuple[int, dict[str, str], bytes]]
    seen: list[tuple[str, str]]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization") or ""))
        status, headers, body = self.files.get(self.path.partition("?")[0], (404, {}, b"not found"))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET


def recording_server() -> Iterator[tuple[str, dict[str, tuple[int, dict[str, str], bytes]], list[tuple[str, str]]]]:
    files: dict[str, tuple[int, dict[str, str], bytes]] = {}
    seen: list[tuple[str, str]] = []
    handler = type("R", (Recording,), {"files": files, "seen": seen})
    for server in _serve(handler):
        yield f"http://127.0.0.1:{server.server_address[1]}", files, seen


@pytest.fixture
def web() -> Iterator[tuple[str, dict[str, tuple[int, dict[str, str], bytes]], list[tuple[str, str]]]]:
    """A loopback HTTP server: (base URL, files to serve, requests seen)."""
    yield from recording_server()


@pytest.fixture
def web2() -> Iterator[tuple[str, dict[str, tuple[int, dict[str, str], bytes]], list[tuple[str, str]]]]:
    """A second one (another origin)."""
    yield from recording_server()


# -- OCI: digests from a hostile registry ---------------------------------------------------


async def test_oci_layer_digest_with_path_traversal_is_refused(ctx: PluginContext, web: Any) -> None:
    """A manifest whose layer digest is ``../../victim`` must not turn a host directory into the artifact."""
    url, files, _ = web
    victim = ctx.state_dir / "victim"
    victim.mkdir()
    (victim / "secret.yaml").write_text(CM.format(name="stolen", value="host file"))
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.flux.config.v1+json", "digest": "sha256:" + "0" * 64, "size": 2},
        "layers": [{"mediaType": FLUX_LAYER, "digest": "../../victim", "size": 10}],
    }).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json", "Docker-Content-Digest": digest}
    files["/v2/team/app/manifests/v1"] = (200, headers, manifest)
    files[f"/v2/team/app/manifests/{digest}"] = (200, headers, manifest)
    src = OCISource(OCIOptions(url=f"oci://{url.removeprefix('http://')}/team/app", tag="v1", insecure=True), ctx)
    rev = await src.latest_revision()
    with pytest.raises(SourceError, match=r"digest '\.\./\.\./victim' is not sha256:<64 hex>") as info:
        await src.fetch(rev)
    assert info.value.reason == "VerificationFailed"


def test_cache_entry_stays_inside_the_cache(tmp_path: Path) -> None:
    from gitopsd_plugins._archive import cache_entry

    (tmp_path / "cache").mkdir()
    os.symlink(tmp_path, tmp_path / "cache" / "link")
    assert cache_entry(tmp_path / "cache", "sha256-" + "a" * 64, "x") == tmp_path / "cache" / ("sha256-" + "a" * 64)
    for name in ("..", "../etc", "a/b", "link"):
        with pytest.raises(SourceError, match="would leave the cache"):
            cache_entry(tmp_path / "cache", name, "x")


# -- OCI: where credentials go ------------------------------------------------------------------


async def test_oci_credentials_not_sent_to_a_plain_http_realm_elsewhere(
    ctx: PluginContext, registry_token_elsewhere: TokenRegistry, tmp_path: Path
) -> None:
    reg = registry_token_elsewhere
    (tmp_path / "u").write_text(REGISTRY_USER)
    (tmp_path / "p").write_text(REGISTRY_PASSWORD)
    src = OCISource(OCIOptions(url=f"oci://{reg.host}/team/app", tag="v1", insecure=True,
                               username_file=Path("u"), password_file=Path("p")), ctx)
    assert reg.token_auth is not None
    with pytest.raises(SourceError, match=r"token realm http://localhost:\d+/token is not https: credentials not sent"):
        await src.latest_revision()
    assert all(not header for header in reg.token_auth), "basic credentials went to a plain-http realm on another host"


async def test_oci_rejected_token_is_requested_again(
    ctx: PluginContext, registry_token: TokenRegistry, tmp_path: Path
) -> None:
    """A token the registry refuses (expired, revoked, rotated key) is dropped and a new one asked for."""
    digest = registry_token.push_artifact("team/app", "v1", tar_gz({"cm.yaml": CM.format(name="t", value="1")}),
                                          FLUX_LAYER)
    (tmp_path / "u").write_text(REGISTRY_USER)
    (tmp_path / "p").write_text(REGISTRY_PASSWORD)
    src = OCISource(OCIOptions(url=f"oci://{registry_token.host}/team/app", tag="v1", insecure=True,
                               username_file=Path("u"), password_file=Path("p")), ctx)
    assert registry_token.rogue_tokens is not None and registry_token.token_requests is not None
    registry_token.rogue_tokens[0] = 1
    before = len(registry_token.token_requests)
    assert await src.latest_revision() == f"v1@{digest}"
    assert len(registry_token.token_requests) - before == 2  # the refused token, then a good one


# -- Helm: credentials only to the repository's origin ----------------------------------------


def _chart_archive(ctx: PluginContext, tmp_path: Path) -> tuple[bytes, str]:
    chart = tmp_path / "src" / "demo"
    shutil.copytree(EXAMPLES / "charts" / "demo", chart)
    out = tmp_path / "pkg"
    subprocess.run([ctx.tools.helm, "package", str(chart), "-d", str(out)], check=True, capture_output=True,
                   timeout=60, env={**os.environ, "HELM_CONFIG_HOME": str(tmp_path / "h"),
                                    "HELM_CACHE_HOME": str(tmp_path / "h"), "HELM_DATA_HOME": str(tmp_path / "h")})
    [tgz] = out.glob("*.tgz")
    version = tgz.name.removeprefix("demo-").removesuffix(".tgz")
    return tgz.read_bytes(), version


@pytest.mark.parametrize("pass_credentials", [False, True])
async def test_helm_credentials_stay_with_the_repository_origin(
    ctx: PluginContext, tmp_path: Path, web: Any, web2: Any, pass_credentials: bool
) -> None:
    repo_url, repo_files, repo_seen = web
    other_url, other_files, other_seen = web2
    data, version = _chart_archive(ctx, tmp_path)
    index = (
        "apiVersion: v1\nentries:\n  demo:\n"
        f"  - name: demo\n    version: {version}\n    digest: {hashlib.sha256(data).hexdigest()}\n"
        f"    urls: [{other_url}/charts/demo-{version}.tgz]\n"
    )
    repo_files["/index.yaml"] = (200, {}, index.encode())
    other_files[f"/charts/demo-{version}.tgz"] = (200, {}, data)
    (tmp_path / "u").write_text("chart-user")
    (tmp_path / "p").write_text("chart-password-77")
    src = HelmChartSource(HelmChartOptions(repo=repo_url, chart="demo", insecure=True, username_file=Path("u"),
                                           password_file=Path("p"), pass_credentials=pass_credentials), ctx)
    art = await src.fetch(await src.latest_revision())
    assert (art.path / "Chart.yaml").is_file()
    basic = "Basic " + base64.b64encode(b"chart-user:chart-password-77").decode()
    assert [auth for _, auth in repo_seen] == [basic]  # the repository's own origin gets them
    assert [auth for _, auth in other_seen] == [basic if pass_credentials else ""]


# -- git over HTTP: no credentials after a redirect to another host -----------------------------


def test_credential_helper_answers_only_for_the_configured_host(tmp_path: Path) -> None:
    """git's request reaches the helper on stdin (not argv); it answers only for the configured host."""
    script = tmp_path / "helper.sh"
    script.write_text(CREDENTIAL_HELPER)
    (tmp_path / "user").write_text("bot\n")
    (tmp_path / "pw").write_text("git-password-1\n")
    env = {"PATH": os.environ["PATH"], "GITOPSD_GIT_HOST": "git.example.test:8443",
           "GITOPSD_GIT_PASSWORD_FILE": str(tmp_path / "pw"), "GITOPSD_GIT_USERNAME_FILE": str(tmp_path / "user")}

    def ask(host: str, op: str = "get") -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", str(script), op], input=f"protocol=https\nhost={host}\n\n", env=env,
                              capture_output=True, text=True, timeout=10)

    good = ask("git.example.test:8443")
    assert (good.returncode, good.stdout) == (0, "username=bot\npassword=git-password-1\n")
    for host in ("evil.example.test", "git.example.test", "git.example.test:8443.evil.test"):
        assert ask(host).stdout == "", host
    assert ask("git.example.test:8443", "store").stdout == ""


async def test_git_credentials_do_not_follow_a_redirect_to_another_host(
    ctx: PluginContext, repo: Repo, served: Path, tmp_path: Path, web: Any
) -> None:
    seen: list[str] = []

    class Recorder(_GitHTTPHandler):
        def _handle(self) -> None:
            seen.append(self.headers.get("Authorization") or "")
            super()._handle()

    handler = type("H", (Recorder,), {"root": served, "credentials": (HTTP_USER, HTTP_PASSWORD), "requests": []})
    for server in _serve(handler):
        # The attacker's redirect: the same server under another host name.
        target = f"http://localhost:{server.server_address[1]}"
        url, files, _ = web
        files["/app.git/info/refs"] = (302, {"Location": f"{target}/app.git/info/refs?service=git-upload-pack"}, b"")
        (tmp_path / "user").write_text(HTTP_USER)
        (tmp_path / "password").write_text(HTTP_PASSWORD)
        src = GitSource(GitOptions(url=f"{url}/app.git", ref="main", username_file=Path("user"),
                                   password_file=Path("password"), timeout=20), ctx)
        with pytest.raises(SourceError):
            await src.latest_revision()
        assert not any(seen), "the password went to the host the redirect named"


# -- git archive: streamed, capped while reading ----------------------------------------------


async def test_git_archive_is_streamed_with_the_size_cap(ctx: PluginContext, repo: Repo) -> None:
    """A 64 MiB tree with max_size = 1 MiB is refused without holding the archive in memory."""
    (repo.work / "big.bin").write_bytes(os.urandom(1024) * (64 * 1024))
    repo.commit("big")
    repo.push()
    src = GitSource(GitOptions(url=repo.bare.as_uri(), ref="main", max_size=1024 * 1024), ctx)
    rev = await src.latest_revision()
    tracemalloc.start()
    try:
        with pytest.raises(SourceError, match="expands to more than 1048576 bytes") as info:
            await src.fetch(rev)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.reason == "TooLarge"
    assert peak < 16 * 1024 * 1024, f"{peak} bytes held in memory for a capped archive"
    assert not list((ctx.state_dir / "cache" / "git-trees").glob(".extract-*")), "a partial tree was left behind"


async def test_git_max_size_holds_for_a_tree_another_app_extracted(ctx: PluginContext, repo: Repo) -> None:
    (repo.work / "big.bin").write_bytes(os.urandom(1024) * 2048)
    repo.commit("big")
    repo.push()
    roomy = GitSource(GitOptions(url=repo.bare.as_uri(), ref="main"), ctx)
    rev = await roomy.latest_revision()
    assert (await roomy.fetch(rev)).path.is_dir()  # extracted once, shared by tree id
    strict = GitSource(GitOptions(url=repo.bare.as_uri(), ref="main", max_size=1024 * 1024), ctx)
    with pytest.raises(SourceError, match="expands to more than 1048576 bytes") as info:
        await strict.fetch(rev)
    assert info.value.reason == "TooLarge"


# -- kustomize: no remote resources -------------------------------------------------------------


def _kustomization(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


REMOTE_CASES = {
    "url-resource": ({"kustomization.yaml": "resources:\n- {URL}/cm.yaml\n"}, "kustomization.yaml: resources[0]"),
    "remote-in-base": ({"overlay/kustomization.yaml": "resources:\n- ../base\n",
                        "base/kustomization.yaml": "resources:\n- cm.yaml\n- {URL}/cm.yaml\n",
                        "base/cm.yaml": CM.format(name="local", value="1")}, "base/kustomization.yaml: resources[1]"),
    "git-target": ({"kustomization.yaml": "resources:\n- github.com/example/repo//deploy?ref=v1\n"},
                   "resources[0]: github.com/example/repo//deploy?ref=v1"),
    "remote-bases": ({"kustomization.yaml": "bases:\n- git@github.com:example/repo.git\n"}, "bases[0]"),
    "patch-url": ({"kustomization.yaml": "resources:\n- cm.yaml\npatches:\n- path: {URL}/patch.yaml\n",
                   "cm.yaml": CM.format(name="local", value="1")}, "patches[0].path"),
    "helm-chart-repo": ({"kustomization.yaml": "helmCharts:\n- name: x\n  repo: {URL}/charts\n  version: 1.0.0\n"},
                        "helmCharts[0].repo"),
}


@pytest.mark.parametrize("case", sorted(REMOTE_CASES))
async def test_kustomize_remote_resources_are_refused(ctx: PluginContext, tmp_path: Path, web: Any, case: str) -> None:
    url, files, seen = web
    files["/cm.yaml"] = (200, {}, CM.format(name="remote", value="fetched").encode())
    files["/patch.yaml"] = (200, {}, CM.format(name="local", value="patched").encode())
    tree, where = REMOTE_CASES[case]
    root = _kustomization(tmp_path / "k", {k: v.replace("{URL}", url) for k, v in tree.items()})
    path = root / "overlay" if case == "remote-in-base" else root
    renderer = KustomizeRenderer(KustomizeOptions(enable_helm=case == "helm-chart-repo"), ctx)
    with pytest.raises(RenderError, match="refers to remote resources, which are refused") as info:
        await renderer.render(artifact(path), app())
    assert where.replace("{URL}", url) in str(info.value)
    assert "allow_remote = true" in str(info.value)
    assert seen == [], "kustomize reached the network"


async def test_kustomize_allow_remote_fetches(ctx: PluginContext, tmp_path: Path, web: Any) -> None:
    url, files, seen = web
    files["/cm.yaml"] = (200, {}, CM.format(name="remote", value="fetched").encode())
    root = _kustomization(tmp_path / "k", {"kustomization.yaml": f"resources:\n- {url}/cm.yaml\n"})
    out = await KustomizeRenderer(KustomizeOptions(allow_remote=True), ctx).render(artifact(root), app())
    assert [m["metadata"]["name"] for m in out] == ["remote"] and seen


def test_kustomize_without_allow_remote_cannot_reach_the_network(ctx: PluginContext) -> None:
    """Defence in depth: even a reference the check missed meets a proxy that refuses (and git only for files)."""
    from gitopsd_plugins.kustomize import NO_NETWORK_ENV

    failed = subprocess.run([ctx.tools.require("git"), "ls-remote", "https://github.com/kubernetes/kubernetes.git"],
                            capture_output=True, text=True, timeout=30, env={**os.environ, **NO_NETWORK_ENV})
    assert failed.returncode != 0 and "transport 'https' not allowed" in failed.stderr


# -- helm: dependencies must be vendored ------------------------------------------------------


def _chart_with_dependency(root: Path, repository: str, vendored: bool) -> Path:
    chart = root / "parent"
    shutil.copytree(EXAMPLES / "charts" / "demo", chart)
    text = (chart / "Chart.yaml").read_text()
    (chart / "Chart.yaml").write_text(text + f"dependencies:\n- name: sub\n  version: 0.1.0\n  repository: {repository}\n")
    if vendored:
        sub = chart / "charts" / "sub"
        (sub / "templates").mkdir(parents=True)
        (sub / "Chart.yaml").write_text("apiVersion: v2\nname: sub\nversion: 0.1.0\n")
        (sub / "templates" / "cm.yaml").write_text(CM.format(name="sub", value="vendored"))
    return chart


async def test_helm_unvendored_dependency_is_refused(ctx: PluginContext, tmp_path: Path) -> None:
    chart = _chart_with_dependency(tmp_path, "https://charts.example.invalid", vendored=False)
    renderer = HelmTemplateRenderer(HelmTemplateOptions(), ctx)
    with pytest.raises(RenderError, match=r"not vendored in charts/ and would be downloaded: "
                                          r"sub \(https://charts\.example\.invalid\).*allow_remote = true"):
        await renderer.render(artifact(chart), app())
    vendored = _chart_with_dependency(tmp_path / "v", "https://charts.example.invalid", vendored=True)
    names = [m["metadata"]["name"] for m in await renderer.render(artifact(vendored), app())]
    assert "sub" in names


def _helm_repository(ctx: PluginContext, tmp_path: Path, url: str) -> Path:
    """A chart repository directory holding chart ``sub`` 0.1.0, indexed for ``url``."""
    sub = tmp_path / "subsrc" / "sub"
    (sub / "templates").mkdir(parents=True)
    (sub / "Chart.yaml").write_text("apiVersion: v2\nname: sub\nversion: 0.1.0\n")
    (sub / "templates" / "cm.yaml").write_text(CM.format(name="sub", value="downloaded"))
    env = {**os.environ, "HELM_CONFIG_HOME": str(tmp_path / "h"), "HELM_CACHE_HOME": str(tmp_path / "h"),
           "HELM_DATA_HOME": str(tmp_path / "h")}
    subprocess.run([ctx.tools.helm, "package", str(sub), "-d", str(tmp_path / "www")], check=True,
                   capture_output=True, timeout=60, env=env)
    subprocess.run([ctx.tools.helm, "repo", "index", str(tmp_path / "www"), "--url", url], check=True,
                   capture_output=True, timeout=60, env=env)
    return tmp_path / "www"


async def test_helm_allow_remote_downloads_dependencies(ctx: PluginContext, tmp_path: Path, web: Any) -> None:
    url, files, seen = web
    for f in _helm_repository(ctx, tmp_path, url).iterdir():
        files[f"/{f.name}"] = (200, {}, f.read_bytes())
    chart = _chart_with_dependency(tmp_path, url, vendored=False)
    out = await HelmTemplateRenderer(HelmTemplateOptions(allow_remote=True), ctx).render(artifact(chart), app())
    assert "sub" in [m["metadata"]["name"] for m in out] and seen


# -- secret files --------------------------------------------------------------------------------


def test_secret_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("a-secret-value\n")
    secret.chmod(0o640)
    with pytest.raises(ConfigError, match=rf"daemon.api_token_file: secret file {secret} has mode 0640: group or "
                                          rf"others may access it: run `chmod 600 {secret}`"):
        read_secret_file(secret, "daemon.api_token_file")
    assert read_secret_file(secret, "daemon.api_token_file", strict=False).reveal() == "a-secret-value"
    secret.chmod(0o600)
    assert read_secret_file(secret, "daemon.api_token_file").reveal() == "a-secret-value"
    if os.geteuid() == 0:
        os.chown(secret, 4242, -1)
        with pytest.raises(ConfigError, match=r"is owned by uid 4242, not by the daemon's user"):
            read_secret_file(secret, "daemon.api_token_file")


async def test_source_with_world_readable_password_file_is_refused(ctx: PluginContext, repo: Repo,
                                                                   tmp_path: Path) -> None:
    (tmp_path / "user").write_text(HTTP_USER)
    (tmp_path / "password").write_text(HTTP_PASSWORD)
    (tmp_path / "password").chmod(0o644)
    src = GitSource(GitOptions(url="http://127.0.0.1:9/app.git", username_file=Path("user"),
                               password_file=Path("password")), ctx)
    with pytest.raises(SourceError, match=r"source.password_file: secret file .*password has mode 0644.*chmod 600"):
        await src.latest_revision()
    relaxed = PluginContext(state_dir=ctx.state_dir, config_dir=ctx.config_dir, tools=ctx.tools,
                            strict_secret_permissions=False)
    src = GitSource(GitOptions(url="http://127.0.0.1:9/app.git", username_file=Path("user"),
                               password_file=Path("password"), timeout=5), relaxed)
    with anyio.fail_after(30), pytest.raises(SourceError) as info:
        await src.latest_revision()
    assert info.value.reason == "NetworkError"  # it got as far as connecting
