"""The ``kustomize`` renderer: ``kustomize build`` (if ``daemon.tools.kustomize`` is set) or
``kubectl kustomize`` on the artifact path.

The load restrictor stays on (``LoadRestrictionsRootOnly``: no files from outside a
kustomization's own directory, other kustomizations such as ``../base`` are fine).
Helm charts inside kustomize are off unless ``enable_helm = true``; then the chart is
inflated in a private copy of the artifact path (kustomize writes downloaded charts next
to the kustomization, and artifacts are shared read-only), so bases outside the path are
not available in that mode. kustomize 5.x runs only helm 3 for ``helmCharts``: with helm 4
as ``daemon.tools.helm`` the error says so. Runs under the CPU limiter with a timeout.

Remote resources (URLs, git targets, remote bases, ``helmCharts`` repositories) are refused
before kustomize runs unless ``allow_remote = true`` (see :mod:`._kustomize_remote`), and
kustomize runs with its HTTP(S) proxy pointed at a closed port and git limited to local
repositories, so a reference the check missed cannot reach the network either (loopback
addresses excepted: Go never proxies them).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import anyio.to_thread
from pydantic import Field

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

from ._inputs import kustomize_inputs
from ._kustomize_remote import KUSTOMIZATION_FILES, remote_references
from ._render import go_runtime_env, parse_stream

NO_NETWORK_ENV = {
    # Port 9 (discard) on loopback: every proxied request fails at once.
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "",
    "no_proxy": "",
    "GIT_ALLOW_PROTOCOL": "file",
    "GIT_TERMINAL_PROMPT": "0",
}
"""The environment of a kustomize run without ``allow_remote``."""


class KustomizeOptions(Options):
    """Options of ``type = "kustomize"``."""

    enable_helm: bool = Field(False, description="Allow helmCharts in kustomizations (runs daemon.tools.helm).")
    timeout: Duration = Field(120.0, gt=0, description="Seconds the build may take.")
    allow_remote: bool = Field(
        False, description="UNSAFE on a bastion: let kustomize fetch remote resources, bases and helmCharts "
        "(URLs, git targets). Off: they are refused before kustomize runs.")


class KustomizeRenderer(Renderer):
    """See the module docstring."""

    Options = KustomizeOptions
    detect = KUSTOMIZATION_FILES

    def command(self, path: Path) -> list[str]:
        """The argv that builds ``path``."""
        tools = self.ctx.tools
        if tools.kustomize:
            argv = [tools.require("kustomize"), "build", str(path)]
        else:
            argv = [tools.require("kubectl"), "kustomize", str(path)]
        argv.append("--load-restrictor=LoadRestrictionsRootOnly")
        if self.options.enable_helm:
            argv += ["--enable-helm", f"--helm-command={tools.require('helm')}"]
        return argv

    def inputs(self, artifact: Artifact, app: AppConfig) -> set[str] | None:
        return kustomize_inputs(artifact.path)

    async def render(self, artifact: Artifact, app: AppConfig) -> list[Manifest]:
        path = artifact.path
        if not path.is_dir():
            raise RenderError(f"kustomize: path {path} does not exist or is not a directory")
        if not any((path / name).is_file() for name in KUSTOMIZATION_FILES):
            raise RenderError(f"kustomize: no kustomization.yaml in {path}")
        if not self.options.allow_remote:
            remote = await anyio.to_thread.run_sync(remote_references, path)
            if remote:
                shown = "; ".join(remote[:5]) + (f" (and {len(remote) - 5} more)" if len(remote) > 5 else "")
                raise RenderError(
                    f"kustomize: app {app.name} refers to remote resources, which are refused: {shown} "
                    "(vendor them into the repository, or set allow_remote = true on the kustomize renderer)"
                )
        scratch: str | None = None
        try:
            if self.options.enable_helm:
                scratch = tempfile.mkdtemp(prefix="gitopsd-kustomize-")
                copy = Path(scratch) / "src"
                shutil.copytree(path, copy, symlinks=True)
                path = copy
            try:
                out = await run(
                    self.command(path),
                    timeout=self.options.timeout,
                    limiter=self.ctx.cpu_limiter,
                    cwd=path,
                    env={**go_runtime_env(), **({} if self.options.allow_remote else NO_NETWORK_ENV)},
                    what="kustomize build",
                )
            except CommandFailed as exc:
                detail = (exc.stderr or str(exc)).replace(str(path), ".")
                if self.options.enable_helm and ("requires helm V3" in detail or "flag: 'c' in -c" in detail):
                    detail = (
                        "helmCharts need helm 3 (kustomize cannot run helm 4): point daemon.tools.helm at a "
                        f"helm 3 binary, or render the chart with the helm renderer ({detail.strip()})"
                    )
                raise RenderError(f"kustomize build failed for app {app.name}: {detail}") from None
            return await parse_stream(out.stdout, "kustomize output")
        finally:
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)


@gitopsd.hookimpl
def gitopsd_renderer_types() -> dict[str, type[Renderer]]:
    return {"kustomize": KustomizeRenderer}
