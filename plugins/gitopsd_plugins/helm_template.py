"""The ``helm`` renderer: ``helm template`` on a chart directory, never talking to a cluster.

Options: ``release_name`` (default: the app name), the app's namespace, ``values_files``
(paths inside the artifact, applied in order), an inline ``values`` table (applied last),
``include_crds`` (default true, as GitOps tools do), ``kube_version`` and
``api_versions`` (what ``.Capabilities`` reports, since no cluster is asked). Helm runs
with its own empty config/cache/data homes and ``KUBECONFIG=/dev/null``, under the CPU
limiter and with a timeout; helm's own error message is kept in the RenderError.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

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
from ._render import inside, parse_stream


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
        }

    def inputs(self, artifact: Artifact, app: AppConfig) -> set[str] | None:
        return helm_inputs(artifact.path)

    async def render(self, artifact: Artifact, app: AppConfig) -> list[Manifest]:
        chart = artifact.path
        if not (chart / "Chart.yaml").is_file():
            raise RenderError(f"helm: no Chart.yaml in {chart}")
        for item in self.options.values_files:
            if not inside(chart, item, "render.values_files").is_file():
                raise RenderError(f"helm: values file {item!r} does not exist in the chart directory")
        with tempfile.TemporaryDirectory(prefix="gitopsd-helm-") as tmp:
            inline: Path | None = None
            if self.options.values:
                inline = Path(tmp) / "values.json"
                inline.write_text(json.dumps(self.options.values))
            try:
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


@gitopsd.hookimpl
def gitopsd_renderer_types() -> dict[str, type[Renderer]]:
    return {"helm": HelmTemplateRenderer}
