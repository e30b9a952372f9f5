"""kustomize and helm renderers: object-for-object equivalence with the real tools, and bad input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitopsd import AppConfig, Artifact, PluginContext, RenderError
from gitopsd.plugin.config import PluginTable
from gitopsd_plugins._render import parse_stream
from gitopsd_plugins.git import GitOptions, GitSource
from gitopsd_plugins.helm_template import HelmTemplateOptions, HelmTemplateRenderer
from gitopsd_plugins.kustomize import KustomizeOptions, KustomizeRenderer

from .conftest import EXAMPLES, Repo, git

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

CHART = EXAMPLES / "charts" / "demo"


def app(name: str = "demo", namespace: str = "apps") -> AppConfig:
    return AppConfig(name=name, cluster="c", namespace=namespace, source=PluginTable(type="local"))


def artifact(path: Path) -> Artifact:
    return Artifact(path=path, revision="test", digest="sha256:test")


def direct(argv: list[str]) -> list[dict[str, Any]]:
    """Run the real tool directly and parse its output: the reference."""
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d is not None]
    result: list[dict[str, Any]] = []
    for doc in docs:
        result.extend(doc["items"] if doc.get("kind", "").endswith("List") and "items" in doc else [doc])
    return result


def tool_output(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout


def helm(ctx: PluginContext, **options: object) -> HelmTemplateRenderer:
    return HelmTemplateRenderer(HelmTemplateOptions.model_validate(options), ctx)


def kustomize(ctx: PluginContext, **options: object) -> KustomizeRenderer:
    return KustomizeRenderer(KustomizeOptions.model_validate(options), ctx)


# -- equivalence -------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", ["a", "b"])
async def test_kustomize_equals_kubectl_kustomize_through_git(
    ctx: PluginContext, repo: Repo, overlay: str
) -> None:
    """The examples/ tree committed to git, fetched by the git source, built by the renderer."""
    shutil.copytree(EXAMPLES / "kustomize", repo.work / "kustomize")
    repo.commit("kustomize")
    repo.push()
    src = GitSource(GitOptions(url=repo.bare.as_uri(), path=f"kustomize/overlays/{overlay}"), ctx)
    art = await src.fetch(await src.latest_revision())
    ours = await kustomize(ctx).render(art, app())
    reference = direct([ctx.tools.kubectl, "kustomize", str(EXAMPLES / "kustomize" / "overlays" / overlay)])
    assert ours == reference
    assert len(ours) == (3 if overlay == "a" else 4)
    assert all(obj["metadata"]["namespace"] == f"team-{overlay}" for obj in ours)


async def test_helm_equals_helm_template(ctx: PluginContext) -> None:
    ours = await helm(ctx, values_files=["values-prod.yaml"], values={"image": {"tag": "1.27.2"}}).render(
        artifact(CHART), app()
    )
    with_inline = Path(ctx.state_dir) / "inline.yaml"
    with_inline.write_text("image:\n  tag: 1.27.2\n")
    reference = direct([
        ctx.tools.helm, "template", "demo", str(CHART), "--namespace", "apps",
        "--values", str(CHART / "values-prod.yaml"), "--values", str(with_inline), "--include-crds",
    ])
    assert ours == reference
    kinds = sorted(o["kind"] for o in ours)
    assert kinds == sorted(
        ["CustomResourceDefinition", "ServiceAccount", "Service", "Deployment", "HorizontalPodAutoscaler", "Ingress", "Pod"]
    )
    deployment = next(o for o in ours if o["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.27.2")
    assert deployment["metadata"]["name"] == "demo"


async def test_helm_release_namespace_capabilities(ctx: PluginContext, tmp_path: Path) -> None:
    chart = tmp_path / "caps"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "caps.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: caps\n  namespace: {{ .Release.Namespace }}\ndata:\n"
        "  release: {{ .Release.Name }}\n  kube: {{ .Capabilities.KubeVersion.Version }}\n"
        "  monitoring: {{ .Capabilities.APIVersions.Has \"monitoring.coreos.com/v1\" | quote }}\n"
    )
    ours = await helm(
        ctx, release_name="web", include_crds=False, kube_version="1.31.4", api_versions=["monitoring.coreos.com/v1"],
        skip_tests=True,
    ).render(artifact(chart), app("demo", "prod"))
    caps = next(o for o in ours if o["kind"] == "ConfigMap")
    assert caps["data"] == {"release": "web", "kube": "v1.31.4", "monitoring": "true"}
    assert caps["metadata"]["namespace"] == "prod"
    assert "CustomResourceDefinition" not in {o["kind"] for o in ours}
    assert "Pod" not in {o["kind"] for o in ours}  # the test hook was skipped


async def test_auto_detection_files() -> None:
    assert "Chart.yaml" in HelmTemplateRenderer.detect
    assert "kustomization.yaml" in KustomizeRenderer.detect


async def test_renderers_registered_through_entry_points() -> None:
    from gitopsd.plugin.manager import PluginManager

    types = PluginManager(builtins_only=True).types
    assert types.renderers["kustomize"] is KustomizeRenderer
    assert types.renderers["helm"] is HelmTemplateRenderer
    assert types.sources["git"] is GitSource


# -- bad input ---------------------------------------------------------------------------


async def test_helm_template_failure_keeps_helms_message(ctx: PluginContext, tmp_path: Path) -> None:
    chart = tmp_path / "broken"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "bad.yaml").write_text("{{ .Values.nothing.deeper }}\n")
    with pytest.raises(RenderError) as info:
        await helm(ctx).render(artifact(chart), app())
    message = str(info.value)
    assert message.startswith("helm template failed for app demo:")
    assert "nil pointer evaluating interface {}.deeper" in message
    assert "bad.yaml" in message


async def test_helm_required_value_message(ctx: PluginContext, tmp_path: Path) -> None:
    chart = tmp_path / "req"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "req.yaml").write_text('{{ required "database.host is required" .Values.database }}\n')
    with pytest.raises(RenderError, match=r"database\.host is required"):
        await helm(ctx).render(artifact(chart), app())


async def test_helm_broken_yaml_output_names_document(ctx: PluginContext, tmp_path: Path) -> None:
    chart = tmp_path / "badyaml"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: badyaml\nversion: 0.1.0\n")
    (chart / "templates" / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    (chart / "templates" / "b.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b\n")
    with pytest.raises(RenderError) as info:
        await helm(ctx).render(artifact(chart), app())
    # helm itself refuses YAML it cannot parse, naming the template
    assert "b.yaml" in str(info.value)


async def test_helm_values_file_missing_or_outside(ctx: PluginContext) -> None:
    with pytest.raises(RenderError, match=r"values file 'nope\.yaml' does not exist in the chart directory"):
        await helm(ctx, values_files=["nope.yaml"]).render(artifact(CHART), app())
    with pytest.raises(ValueError, match="must be a relative path inside the artifact"):
        HelmTemplateOptions(values_files=["../../etc/passwd"])


async def test_helm_no_chart(ctx: PluginContext, tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=r"helm: no Chart.yaml in .*empty"):
        (tmp_path / "empty").mkdir()
        await helm(ctx).render(artifact(tmp_path / "empty"), app())


async def test_kustomize_failure(ctx: PluginContext, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    with pytest.raises(RenderError) as info:
        await kustomize(ctx).render(artifact(bad), app())
    assert str(info.value).startswith("kustomize build failed for app demo:")
    assert "missing.yaml" in str(info.value)


async def test_kustomize_load_restrictor_on(ctx: PluginContext, tmp_path: Path) -> None:
    (tmp_path / "secret.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: outside}\n")
    inner = tmp_path / "k"
    inner.mkdir()
    (inner / "kustomization.yaml").write_text("resources:\n  - ../secret.yaml\n")
    with pytest.raises(RenderError, match=r"security; file .* is not in or below"):
        await kustomize(ctx).render(artifact(inner), app())


async def test_kustomize_helm_off_unless_enabled(ctx: PluginContext, tmp_path: Path) -> None:
    k = tmp_path / "k"
    k.mkdir()
    shutil.copytree(CHART, k / "charts" / "demo")
    (k / "kustomization.yaml").write_text(
        "helmCharts:\n  - name: demo\n    releaseName: r\n    namespace: apps\n    valuesInline: {replicaCount: 2}\n"
    )
    with pytest.raises(RenderError, match="must specify --enable-helm"):
        await kustomize(ctx).render(artifact(k), app())
    helm_version = tool_output([ctx.tools.helm, "version", "--short"])
    if helm_version.startswith("v4"):
        # The pinned helm is 4; kustomize 5.6 runs only helm 3: a clear error, not a crash.
        with pytest.raises(RenderError, match=r"helmCharts need helm 3 .*daemon\.tools\.helm"):
            await kustomize(ctx, enable_helm=True).render(artifact(k), app())
    else:
        ours = await kustomize(ctx, enable_helm=True).render(artifact(k), app())
        assert next(o for o in ours if o["kind"] == "Deployment")["spec"]["replicas"] == 2
    # either way the artifact itself was not written to
    assert sorted(p.name for p in k.iterdir()) == ["charts", "kustomization.yaml"]


async def test_kustomize_broken_yaml_in_input(ctx: PluginContext, tmp_path: Path) -> None:
    k = tmp_path / "k"
    k.mkdir()
    (k / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    (k / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a\n")
    with pytest.raises(RenderError, match=r"kustomize build failed for app demo: .*cm.yaml"):
        await kustomize(ctx).render(artifact(k), app())


async def test_alias_bomb_in_rendered_output_is_bounded(ctx: PluginContext, tmp_path: Path) -> None:
    """A chart emitting a billion-laughs document: refused by the bounded loader, quickly."""
    chart = tmp_path / "bomb"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: bomb\nversion: 0.1.0\n")
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata: {name: bomb}", "data:", '  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        refs = ",".join([f"*a{i - 1}"] * 10)
        lines.append(f"  a{i}: &a{i} [{refs}]")
    (chart / "templates" / "bomb.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(RenderError, match=r"YAML parse error on bomb/templates/bomb.yaml: .*excessive aliasing"):
        await helm(ctx).render(artifact(chart), app())
    # Output that got past the tool is parsed with the bounded loader too.
    bomb = "\n".join(lines).encode()
    with pytest.raises(RenderError, match=r"kustomize output: document 0: YAML aliases expand to more than"):
        await parse_stream(bomb, "kustomize output")


async def test_missing_tool_is_named(ctx: PluginContext, tmp_path: Path) -> None:
    from gitopsd import ToolMissing, Tools

    broken = PluginContext(state_dir=ctx.state_dir, tools=Tools(helm=str(tmp_path / "no-helm")))
    with pytest.raises(ToolMissing, match=r"daemon\.tools\.helm"):
        await helm(broken).render(artifact(CHART), app())


def test_git_helper_available() -> None:
    assert git("--version").startswith("git version")


# -- cost of the tools -------------------------------------------------------------------


def env_recorder(tmp_path: Path, tool: str) -> tuple[str, Path]:
    """A real wrapper script for ``tool`` that records the GOGC it was started with, then runs the tool."""
    log = tmp_path / f"{Path(tool).name}-gogc.log"
    wrapper = tmp_path / f"{Path(tool).name}-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "GOGC=${{GOGC-unset}}" >> {log}\nexec {tool} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper), log


@pytest.mark.parametrize("operator_gogc", [None, "150"])
async def test_go_tools_run_with_a_lazier_collector_unless_the_operator_chose(
    ctx: PluginContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operator_gogc: str | None
) -> None:
    """helm and kubectl are started with GOGC=400 (a quarter less CPU per short run); a GOGC
    (or GOMEMLIMIT) in the daemon's environment is left as the operator set it."""
    from dataclasses import replace

    if operator_gogc is None:
        monkeypatch.delenv("GOGC", raising=False)
        monkeypatch.delenv("GOMEMLIMIT", raising=False)
    else:
        monkeypatch.setenv("GOGC", operator_gogc)
    helm_wrapper, helm_log = env_recorder(tmp_path, ctx.tools.helm)
    kubectl_wrapper, kubectl_log = env_recorder(tmp_path, ctx.tools.kubectl)
    wrapped = PluginContext(state_dir=ctx.state_dir, config_dir=ctx.config_dir,
                            tools=replace(ctx.tools, helm=helm_wrapper, kubectl=kubectl_wrapper))
    assert await helm(wrapped).render(artifact(CHART), app())
    base = tmp_path / "kustomize"
    base.mkdir()
    (base / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n")
    (base / "kustomization.yaml").write_text("resources:\n- cm.yaml\n")
    assert await kustomize(wrapped).render(artifact(base), app())
    expected = f"GOGC={operator_gogc or '400'}"
    assert helm_log.read_text().split() == [expected]
    assert kubectl_log.read_text().split() == [expected]


async def test_helm_checks_the_chart_in_one_trip_to_a_thread(ctx: PluginContext, thread_trips: list[str]) -> None:
    """The symlink check and the dependency check share one worker-thread trip; helm's run is the other."""
    assert await helm(ctx).render(artifact(CHART), app())
    assert len(thread_trips) == 2, thread_trips
