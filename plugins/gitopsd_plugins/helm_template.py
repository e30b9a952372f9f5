"""The ``helm`` renderer: ``helm template`` on a chart directory, never talking to a cluster.

Options: ``release_name`` (default: the app name), the app's namespace, ``values_files``
(paths inside the artifact, applied in order), an inline ``values`` table (applied last),
``include_crds`` (default true, as GitOps tools do), ``kube_version`` and
``api_versions`` (what ``.Capabilities`` reports, since no cluster is asked). Helm runs
with its own empty config/cache/data homes and ``KUBECONFIG=/dev/null``, under the CPU
limiter and with a timeout; helm's own error message is kept in the RenderError.

Chart dependencies must be vendored in ``charts/`` (``helm dependency build``, committed):
one that is not is refused with its name and repository before helm runs, unless
``allow_remote = true``, which lets helm download them (``helm dependency update`` in a
private copy of the chart: artifacts are shared and read-only).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import anyio.to_thread
from pydantic import Field, field_validator

import gitopsd
from gitopsd import (
    AppConfig,
    Artifact,
    CommandFailed,
    Duration,
    Manifest,
    Options,
    Renderer,
    RenderError,
)
from gitopsd.core.proc import run

from ._inputs import helm_inputs
from ._render import go_runtime_env, inside, parse_stream, refuse_escaping_symlinks


class HelmTemplateOptions(Options):
    """Options of ``type = "helm"`` in an app's ``render`` table."""

    release_name: str | None = Field(None, description="Release name; default: the app name.")
    values_files: list[str] = Field(default_factory=list, description="Values files inside the artifact, in order.")
    values: dict[str, Any] = Field(default_factory=dict, description="Inline values, applied after values_files.")
    include_crds: bool = Field(True, description="Render the chart's crds/ directory too.")
    kube_version: str | None = Field(None, description="Kubernetes version for .Capabilities (e.g. '1.33.0').")
    api_versions: list[str] = Field(default_factory=list, description="Extra API versions for .Capabilities.")
    skip_tests: bool = Field(False, description="Leave out the chart's test hooks.")
    timeout: Duration = Field(120.0, gt=0, description="Seconds helm template may take.")
    allow_remote: bool = Field(
        False, description="UNSAFE on a bastion: let helm download chart dependencies missing from charts/ "
        "(helm dependency update, in a private copy). Off: such a chart is refused, naming the dependency.")

    @field_validator("values_files")
    @classmethod
    def _relative(cls, value: list[str]) -> list[str]:
        for item in value:
            if item.startswith("/") or ".." in item.replace("\\", "/").split("/"):
                raise ValueError(f"values file {item!r} must be a relative path inside the artifact")
        return value


class HelmTemplateRenderer(Renderer):
    """See the module docstring."""

    Options = HelmTemplateOptions
    detect = ("Chart.yaml",)

    def argv(self, chart: Path, app: AppConfig, inline: Path | None) -> list[str]:
        """The ``helm template`` command line for ``chart``."""
        o = self.options
        argv = [self.ctx.tools.require("helm"), "template", o.release_name or app.name, str(chart),
                "--namespace", app.namespace]
        for item in o.values_files:
            argv += ["--values", str(inside(chart, item, "render.values_files"))]
        if inline is not None:
            argv += ["--values", str(inline)]
        if o.include_crds:
            argv.append("--include-crds")
        if o.skip_tests:
            argv.append("--skip-tests")
        if o.kube_version:
            argv += ["--kube-version", o.kube_version]
        for api in o.api_versions:
            argv += ["--api-versions", api]
        return argv

    def env(self) -> dict[str, str]:
        home = self.ctx.cache_dir("helm-home")
        return {
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data"),
            "KUBECONFIG": os.devnull,
            "HELM_NAMESPACE": "",
            **go_runtime_env(),
        }

    def inputs(self, artifact: Artifact, app: AppConfig) -> set[str] | None:
        return helm_inputs(artifact.path)

    async def render(self, artifact: Artifact, app: AppConfig) -> list[Manifest]:
        chart = artifact.path
        if not (chart / "Chart.yaml").is_file():
            raise RenderError(f"helm: no Chart.yaml in {chart}")
        missing = await anyio.to_thread.run_sync(_checked_chart, chart)  # one trip to a thread for both
        if missing and not self.options.allow_remote:
            raise RenderError(
                f"helm: app {app.name}: chart dependencies are not vendored in charts/ and would be downloaded: "
                f"{', '.join(missing)} (run `helm dependency build` and commit charts/, or set allow_remote = true "
                "on the helm renderer)"
            )
        for item in self.options.values_files:
            if not inside(chart, item, "render.values_files").is_file():
                raise RenderError(f"helm: values file {item!r} does not exist in the chart directory")
        with tempfile.TemporaryDirectory(prefix="gitopsd-helm-") as tmp:
            inline: Path | None = None
            if self.options.values:
                inline = Path(tmp) / "values.json"
                inline.write_text(json.dumps(self.options.values))
            try:
                if missing:  # allow_remote: download them into a private copy
                    copy = Path(tmp) / "chart"
                    await anyio.to_thread.run_sync(lambda: shutil.copytree(chart, copy, symlinks=True))
                    await run([self.ctx.tools.require("helm"), "dependency", "update", str(copy)],
                              timeout=self.options.timeout, env=self.env(), limiter=self.ctx.cpu_limiter, cwd=tmp,
                              what="helm dependency update")
                    chart = copy
                out = await run(
                    self.argv(chart, app, inline),
                    timeout=self.options.timeout,
                    env=self.env(),
                    limiter=self.ctx.cpu_limiter,
                    cwd=tmp,
                    what="helm template",
                )
            except CommandFailed as exc:
                detail = (exc.stderr or str(exc)).replace(str(chart), ".")
                raise RenderError(f"helm template failed for app {app.name}: {detail}") from None
        return await parse_stream(out.stdout, "helm template output")


def _checked_chart(chart: Path) -> list[str]:
    """:func:`refuse_escaping_symlinks`, then :func:`missing_dependencies`."""
    refuse_escaping_symlinks(chart, "helm")
    return missing_dependencies(chart)


def _load_chart_file(path: Path) -> Any:
    """One YAML document (the fast safe loader of :mod:`gitopsd.core.yamlio`); None when unreadable or malformed."""
    # YAML loads on first use, not at start (docs/operations.md, "Start-up and readiness")
    from gitopsd.core.yamlio import load_all

    try:
        docs = load_all(path.read_text(encoding="utf-8", errors="replace"), path.name)
    except (OSError, RenderError):
        return None
    return docs[0][1] if len(docs) == 1 else None


def missing_dependencies(chart: Path) -> list[str]:
    """``name (repository)`` of each dependency in Chart.yaml (or v1 requirements.yaml) not in ``charts/``.

    A dependency is vendored when ``charts/`` holds a directory whose Chart.yaml has its name
    or an archive ``<name>-*.tgz``. A malformed Chart.yaml is left for helm to report.
    """
    deps: list[Any] = []
    for name in ("Chart.yaml", "requirements.yaml"):
        doc = _load_chart_file(chart / name)
        if isinstance(doc, dict) and isinstance(doc.get("dependencies"), list):
            deps += doc["dependencies"]
    vendored: set[str] = set()
    charts = chart / "charts"
    if charts.is_dir():
        for entry in charts.iterdir():
            if entry.name.endswith(".tgz"):
                vendored.add(entry.name[:-4].rsplit("-", 1)[0])
                vendored.add(entry.name[:-4])
            elif (entry / "Chart.yaml").is_file():
                vendored.add(entry.name)
                sub = _load_chart_file(entry / "Chart.yaml")
                if isinstance(sub, dict) and isinstance(sub.get("name"), str):
                    vendored.add(sub["name"])
    missing = []
    for dep in deps:
        if not isinstance(dep, dict) or not isinstance(dep.get("name"), str):
            continue
        if dep["name"] not in vendored:
            missing.append(f"{dep['name']} ({dep.get('repository') or 'no repository'})")
    return missing


@gitopsd.hookimpl
def gitopsd_renderer_types() -> dict[str, type[Renderer]]:
    return {"helm": HelmTemplateRenderer}
