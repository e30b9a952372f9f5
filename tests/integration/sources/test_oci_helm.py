"""OCI artifact and Helm chart sources against a real registry (docker-registry) and a real Helm repo."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import anyio
import pytest
import yaml

from gitopsd import PluginContext, SourceError
from gitopsd_plugins.helm import HelmChartOptions, HelmChartSource
from gitopsd_plugins.helm_template import HelmTemplateOptions, HelmTemplateRenderer
from gitopsd_plugins.oci import FLUX_LAYER, OCIOptions, OCISource

from .conftest import EXAMPLES, REGISTRY_PASSWORD, REGISTRY_USER, Registry, TokenRegistry, tar_gz

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"
PLAIN_TGZ = "application/vnd.oci.image.layer.v1.tar+gzip"


def oci(ctx: PluginContext, **options: object) -> OCISource:
    return OCISource(OCIOptions.model_validate({"insecure": True, **options}), ctx)


def chart_source(ctx: PluginContext, **options: object) -> HelmChartSource:
    return HelmChartSource(HelmChartOptions.model_validate({"insecure": True, **options}), ctx)


# -- OCI artifacts -------------------------------------------------------------------------


async def test_oci_tag_semver_digest_flux_and_plain_layers(ctx: PluginContext, registry: Registry) -> None:
    digests = {}
    for tag in ("v1.0.0", "v1.1.0", "v2.0.0"):
        layer = tar_gz({"deploy/cm.yaml": CM.format(name=tag.replace(".", "-"))})
        digests[tag] = registry.push_artifact("team/manifests", tag, layer, FLUX_LAYER)
    url = f"oci://{registry.host}/team/manifests"

    src = oci(ctx, url=url, semver="^1.0", path="deploy")
    rev = await src.latest_revision()
    assert rev == f"v1.1.0@{digests['v1.1.0']}"
    art = await src.fetch(rev)
    assert "v1-1-0" in (art.path / "cm.yaml").read_text()

    tagged = oci(ctx, url=url, tag="v2.0.0")
    assert await tagged.latest_revision() == f"v2.0.0@{digests['v2.0.0']}"

    pinned = oci(ctx, url=url, digest=digests["v1.0.0"], path="deploy")
    rev = await pinned.latest_revision()
    assert rev == digests["v1.0.0"]
    assert "v1-0-0" in ((await pinned.fetch(rev)).path / "cm.yaml").read_text()

    plain = registry.push_artifact("team/plain", "latest", tar_gz({"cm.yaml": CM.format(name="plain")}), PLAIN_TGZ,
                                   artifact_type="application/vnd.oci.image.config.v1+json")
    src = oci(ctx, url=f"oci://{registry.host}/team/plain", tag="latest")
    art = await src.fetch(await src.latest_revision())
    assert art.revision == f"latest@{plain}"
    assert yaml.safe_load((art.path / "cm.yaml").read_text())["metadata"]["name"] == "plain"


async def test_oci_basic_auth_from_files_and_docker_config(
    ctx: PluginContext, registry_auth: Registry, tmp_path: Path
) -> None:
    registry_auth.push_artifact("private/app", "v1.0.0", tar_gz({"cm.yaml": CM.format(name="private")}), FLUX_LAYER)
    url = f"oci://{registry_auth.host}/private/app"
    (tmp_path / "u").write_text(REGISTRY_USER + "\n")
    (tmp_path / "p").write_text(REGISTRY_PASSWORD + "\n")
    src = oci(ctx, url=url, tag="v1.0.0", username_file="u", password_file="p")
    art = await src.fetch(await src.latest_revision())
    assert (art.path / "cm.yaml").is_file()

    config = tmp_path / "docker.json"
    auth = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
    config.write_text(json.dumps({"auths": {registry_auth.host: {"auth": auth}}}))
    src = oci(ctx, url=url, semver=">=1", docker_config_file=str(config))
    assert (await src.latest_revision()).startswith("v1.0.0@sha256:")

    with pytest.raises(SourceError, match=r"HTTP 401 \(authentication required\)") as info:
        await oci(ctx, url=url, tag="v1.0.0").latest_revision()
    assert info.value.reason == "AuthFailed"

    (tmp_path / "bad").write_text("not-the-password\n")
    with pytest.raises(SourceError, match=r"HTTP 401 \(credentials rejected\)") as info:
        await oci(ctx, url=url, tag="v1.0.0", username_file="u", password_file="bad").latest_revision()
    assert info.value.reason == "AuthFailed"
    assert "not-the-password" not in str(info.value) and REGISTRY_PASSWORD not in str(info.value)


async def test_oci_404s(ctx: PluginContext, registry: Registry) -> None:
    registry.push_artifact("team/app", "v1", tar_gz({"cm.yaml": CM.format(name="x")}), FLUX_LAYER)
    with pytest.raises(SourceError, match=r"manifest team/app:v9: HTTP 404 \(manifest unknown\)") as info:
        await oci(ctx, url=f"oci://{registry.host}/team/app", tag="v9").latest_revision()
    assert info.value.reason == "RefNotFound"
    with pytest.raises(SourceError, match=r"tags of team/missing: HTTP 404 \(name unknown\)") as info:
        await oci(ctx, url=f"oci://{registry.host}/team/missing", semver="*").latest_revision()
    assert info.value.reason == "RepositoryNotFound"
    with pytest.raises(SourceError, match=r"no tag matches semver range '>=2' \(tags: v1\)") as info:
        await oci(ctx, url=f"oci://{registry.host}/team/app", semver=">=2").latest_revision()
    assert info.value.reason == "RefNotFound"


async def test_oci_over_size_limit(ctx: PluginContext, registry: Registry) -> None:
    big = tar_gz({"big.yaml": os.urandom(300_000)})
    registry.push_artifact("team/big", "v1", big, FLUX_LAYER)
    src = oci(ctx, url=f"oci://{registry.host}/team/big", tag="v1", max_size=100_000)
    with pytest.raises(SourceError, match=r"bytes, over the limit of 100000") as info:
        await src.fetch(await src.latest_revision())
    assert info.value.reason == "TooLarge"
    # a small layer that expands beyond the limit (a zip bomb) is stopped during extraction
    bomb = tar_gz({"zeros.yaml": b"0" * 5_000_000})
    registry.push_artifact("team/bomb", "v1", bomb, FLUX_LAYER)
    src = oci(ctx, url=f"oci://{registry.host}/team/bomb", tag="v1", max_size=1_000_000)
    with pytest.raises(SourceError, match=r"archive expands to more than 1000000 bytes") as info:
        await src.fetch(await src.latest_revision())
    assert info.value.reason == "TooLarge"


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        (tar_gz({}, raw_names=["../escape.yaml"]), r"archive member '../escape.yaml' has a '..' path component"),
        (tar_gz({}, raw_names=["/etc/cron.d/evil"]), r"archive member '/etc/cron.d/evil' has an absolute path"),
        (tar_gz({"a.yaml": "x"}, symlinks={"link": "../../../etc"}), r"symlink 'link' -> '../../../etc' points outside"),
        (tar_gz({"a.yaml": "x"}, symlinks={"abs": "/etc/passwd"}), r"symlink 'abs' -> '/etc/passwd' points outside"),
    ],
    ids=["dotdot", "absolute", "symlink-relative", "symlink-absolute"],
)
async def test_oci_unsafe_archives_rejected(
    ctx: PluginContext, registry: Registry, tmp_path: Path, archive: bytes, message: str
) -> None:
    registry.push_artifact("team/evil", "v1", archive, FLUX_LAYER)
    src = oci(ctx, url=f"oci://{registry.host}/team/evil", tag="v1")
    with pytest.raises(SourceError, match=message) as info:
        await src.fetch(await src.latest_revision())
    assert info.value.reason == "UnsafeArchive"
    assert not (tmp_path / "escape.yaml").exists()
    cache = ctx.state_dir / "cache" / "oci"
    assert [p.name for p in cache.iterdir()] == []  # nothing half-extracted left behind


async def test_oci_registry_that_hangs_times_out(ctx: PluginContext, hanging_server: int) -> None:
    src = oci(ctx, url=f"oci://127.0.0.1:{hanging_server}/team/app", tag="v1", timeout=1)
    with anyio.fail_after(10), pytest.raises(SourceError, match=r"timed out after 1s") as info:
        await src.latest_revision()
    assert info.value.reason == "Timeout"


# -- Helm charts -----------------------------------------------------------------------------


def helm_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "helmhome"
    return {**os.environ, "HELM_CONFIG_HOME": str(home / "c"), "HELM_CACHE_HOME": str(home / "ca"),
            "HELM_DATA_HOME": str(home / "d"), "HELM_REGISTRY_CONFIG": str(home / "reg.json")}


def helm_cli(ctx: PluginContext, tmp_path: Path, *args: str) -> str:
    """Run the real helm for set-up and references; its stdout."""
    return subprocess.run([ctx.tools.helm, *args], check=True, capture_output=True, text=True,
                          env=helm_env(tmp_path), timeout=60).stdout


def package(ctx: PluginContext, tmp_path: Path, version: str, out: Path) -> Path:
    chart = tmp_path / f"src-{version}" / "demo"
    shutil.copytree(EXAMPLES / "charts" / "demo", chart)
    text = (chart / "Chart.yaml").read_text()
    (chart / "Chart.yaml").write_text(
        "\n".join(f"version: {version}" if line.startswith("version:") else line for line in text.splitlines()) + "\n"
    )
    subprocess.run([ctx.tools.helm, "package", str(chart), "-d", str(out)], check=True, capture_output=True,
                   env=helm_env(tmp_path), timeout=60)
    return out / f"demo-{version}.tgz"


async def test_helm_https_repository_and_render(
    ctx: PluginContext, static_http: tuple[str, Path], tmp_path: Path
) -> None:
    url, www = static_http
    for version in ("0.1.0", "0.2.0", "1.0.0"):
        package(ctx, tmp_path, version, www)
    helm_cli(ctx, tmp_path, "repo", "index", str(www))
    src = chart_source(ctx, repo=url, chart="demo", version="<1.0.0")
    rev = await src.latest_revision()
    assert rev.startswith("0.2.0@sha256:")
    art = await src.fetch(rev)
    assert yaml.safe_load((art.path / "Chart.yaml").read_text())["version"] == "0.2.0"

    renderer = HelmTemplateRenderer(HelmTemplateOptions(values_files=["values-prod.yaml"]), ctx)
    from gitopsd import AppConfig
    from gitopsd.plugin.config import PluginTable

    app = AppConfig(name="web", cluster="c", namespace="prod", source=PluginTable(type="helm"))
    ours = await renderer.render(art, app)
    reference = helm_cli(ctx, tmp_path, "template", "web", str(www / "demo-0.2.0.tgz"), "--namespace", "prod",
                         "--include-crds", "--values", str(EXAMPLES / "charts" / "demo" / "values-prod.yaml"))
    assert ours == [d for d in yaml.safe_load_all(reference) if d]

    exact = chart_source(ctx, repo=url, chart="demo", version="0.1.0")
    assert (await exact.latest_revision()).startswith("0.1.0@sha256:")
    with pytest.raises(SourceError, match=r"no version matches '>=2' \(versions: 0.1.0, 0.2.0, 1.0.0\)") as info:
        await chart_source(ctx, repo=url, chart="demo", version=">=2").latest_revision()
    assert info.value.reason == "RefNotFound"
    with pytest.raises(SourceError, match=r"chart 'nginx' is not in the repository index"):
        await chart_source(ctx, repo=url, chart="nginx").latest_revision()


async def test_helm_chart_digest_mismatch_refused(
    ctx: PluginContext, static_http: tuple[str, Path], tmp_path: Path
) -> None:
    url, www = static_http
    package(ctx, tmp_path, "0.1.0", www)
    helm_cli(ctx, tmp_path, "repo", "index", str(www))
    package(ctx, tmp_path / "other", "0.1.0", tmp_path / "other-out")
    (www / "demo-0.1.0.tgz").write_bytes(b"tampered" + (www / "demo-0.1.0.tgz").read_bytes())
    src = chart_source(ctx, repo=url, chart="demo", version="0.1.0")
    with pytest.raises(SourceError, match=r"chart 0.1.0 should have digest sha256:") as info:
        await src.fetch(await src.latest_revision())
    assert info.value.reason == "VerificationFailed"


async def test_helm_chart_over_size_limit(ctx: PluginContext, static_http: tuple[str, Path], tmp_path: Path) -> None:
    url, www = static_http
    package(ctx, tmp_path, "0.1.0", www)
    helm_cli(ctx, tmp_path, "repo", "index", str(www))
    src = chart_source(ctx, repo=url, chart="demo", max_size=1000)
    with pytest.raises(SourceError, match=r"over the limit of 1000 bytes") as info:
        await src.fetch(await src.latest_revision())
    assert info.value.reason == "TooLarge"


async def test_helm_oci_chart_pushed_with_helm(ctx: PluginContext, registry: Registry, tmp_path: Path) -> None:
    for version in ("0.1.0", "0.3.0+build.1"):
        tgz = package(ctx, tmp_path, version, tmp_path / "pkgs")
        helm_cli(ctx, tmp_path, "push", str(tgz), f"oci://{registry.host}/charts", "--plain-http")
    src = chart_source(ctx, repo=f"oci://{registry.host}/charts", chart="demo", version="~0.3")
    rev = await src.latest_revision()
    assert rev.startswith("0.3.0+build.1@sha256:")  # helm stores '+' as '_' in the tag
    art = await src.fetch(rev)
    assert yaml.safe_load((art.path / "Chart.yaml").read_text())["version"] == "0.3.0+build.1"
    assert (art.path / "templates" / "deployment.yaml").is_file()

    with pytest.raises(SourceError, match=r"HTTP 404 \(name unknown\)") as info:
        await chart_source(ctx, repo=f"oci://{registry.host}/charts", chart="nope").latest_revision()
    assert info.value.reason == "RepositoryNotFound"


def test_helm_source_options() -> None:
    with pytest.raises(ValueError, match="plain http:// repositories need insecure = true"):
        HelmChartOptions(repo="http://example.test", chart="x")
    with pytest.raises(ValueError, match="repo must be an https:// or oci:// URL"):
        HelmChartOptions(repo="ftp://example.test", chart="x")
    with pytest.raises(ValueError, match="set exactly one of tag, semver, digest"):
        OCIOptions(url="oci://h/r", tag="a", semver="*")


async def test_oci_bearer_token_flow(ctx: PluginContext, registry_token: TokenRegistry, tmp_path: Path) -> None:
    digest = registry_token.push_artifact("team/app", "v1.0.0", tar_gz({"cm.yaml": CM.format(name="t")}), FLUX_LAYER)
    assert registry_token.token_requests is not None
    before = len(registry_token.token_requests)
    (tmp_path / "u").write_text(REGISTRY_USER)
    (tmp_path / "p").write_text(REGISTRY_PASSWORD)
    src = oci(ctx, url=f"oci://{registry_token.host}/team/app", semver="1.x", username_file="u", password_file="p")
    rev = await src.latest_revision()
    assert rev == f"v1.0.0@{digest}"
    art = await src.fetch(rev)
    assert (art.path / "cm.yaml").is_file()
    asked = registry_token.token_requests[before:]
    assert asked and all("scope=repository%3Ateam%2Fapp%3Apull" in r for r in asked)
    assert len(asked) == 1  # the token is reused for the same scope

    with pytest.raises(SourceError, match=r"token request to .* failed: HTTP 401") as info:
        await oci(ctx, url=f"oci://{registry_token.host}/team/app", tag="v1.0.0").latest_revision()
    assert info.value.reason == "AuthFailed"
