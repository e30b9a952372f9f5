"""The ``helm`` source: a chart from a Helm repository (``index.yaml``) or an OCI registry.

``repo = "https://charts.example.com"`` or ``repo = "oci://host/path"``; ``chart``;
``version`` exact or a semver range (highest match). ``latest_revision()`` reads the index
(or the tag list) and returns ``<version>@sha256:<digest>`` (the chart archive digest
from the index, or the OCI manifest digest). The archive is downloaded size-limited,
verified against its digest and safely extracted into ``state_dir/cache/helm/<digest>``;
``Artifact.path`` is the chart directory inside it. Render it with the ``helm`` renderer.
Charts kept in git need no source of their own: use the git source plus the helm renderer.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import anyio
from pydantic import Field, field_validator, model_validator

import gitopsd
from gitopsd import USER_AGENT, Artifact, Duration, Options, SourceError
from gitopsd.core.lazyre import LazyPattern

from ._archive import cache_entry, extract_tar
from ._oci import Credentials, Registry, split_oci_url
from ._once import one_at_a_time
from ._semverrange import SemverRange
from .oci import shared_registry

HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
_REVISION = LazyPattern(r"^(?P<version>[^@]+)@(?P<digest>sha256:[0-9a-f]{64})$")
_MAX_INDEX = 64 * 1024 * 1024


class HelmChartOptions(Options):
    """Options of ``type = "helm"`` in an app's ``source`` table."""

    repo: str = Field(description="https://... (a repository with index.yaml) or oci://host/path.")
    chart: str = Field(description="Chart name.")
    version: SemverRange = Field("*", description="Exact version or a semver range; default: the highest release.")
    username_file: Path | None = None
    password_file: Path | None = None
    insecure: bool = Field(False, description="Allow plain http:// (loopback test repositories only).")
    timeout: Duration = Field(60.0, gt=0, description="Seconds per request.")
    max_size: int = Field(32 * 1024 * 1024, gt=0, description="Bytes a chart archive (and its files) may take.")
    pass_credentials: bool = Field(
        False, description="UNSAFE: also send username/password to other hosts that index.yaml names for the chart "
        "archive (Helm's --pass-credentials). Off: they go only to the repository's own origin.")

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str) -> str:
        if not re.match(r"^(https?|oci)://", value):
            raise ValueError("repo must be an https:// or oci:// URL")
        return value.rstrip("/")

    @field_validator("chart")
    @classmethod
    def _chart(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", value):
            raise ValueError(f"invalid chart name {value!r}")
        return value

    @model_validator(mode="after")
    def _checks(self) -> HelmChartOptions:
        if self.repo.startswith("http://") and not self.insecure:
            raise ValueError("plain http:// repositories need insecure = true")
        if bool(self.username_file) != bool(self.password_file):
            raise ValueError("username_file and password_file go together")
        return self


def _pick(wanted: str, versions: list[str]) -> str | None:
    from ._semver import Version, highest

    exact = Version.parse(wanted)
    if exact is not None:
        return next((v for v in versions if Version.parse(v) == exact), None)
    return highest(wanted, versions)


class HelmChartSource(gitopsd.Source):
    """A Helm chart; see the module docstring."""

    Options = HelmChartOptions

    def __init__(self, options: HelmChartOptions, ctx: gitopsd.PluginContext):
        super().__init__(options, ctx)
        self.oci = options.repo.startswith("oci://")
        self._entries: dict[str, dict[str, Any]] = {}
        self._registry: Registry | None = None

    @property
    def url(self) -> str:
        return f"{self.options.repo}/{self.options.chart}"

    @property
    def ref(self) -> str:
        return str(self.options.version)

    def _credentials(self, host: str) -> Credentials:
        o = self.options
        path = self.ctx.config_dir
        return Credentials.load(
            host,
            path / o.username_file if o.username_file else None,
            path / o.password_file if o.password_file else None,
            None,
            strict=self.ctx.strict_secret_permissions,
        )

    def registry(self) -> tuple[Registry, str]:
        host, base = split_oci_url(self.options.repo + "/" + self.options.chart)
        if self._registry is None:
            o = self.options
            self._registry = shared_registry(self.ctx, host, o.insecure, self._credentials(host), o.timeout,
                                             f"{o.username_file}|{o.password_file}")
        return self._registry, base

    # -- https repositories -------------------------------------------------------------

    async def _http_get(self, url: str, what: str, limit: int) -> bytes:
        import httpx

        o = self.options
        if url.startswith("http://") and not o.insecure:
            raise SourceError(f"helm {o.repo}: {what} is on plain http (set insecure = true)", reason="InvalidConfig")
        basic = self._credentials(httpx.URL(url).host).basic if self._may_send_credentials(url) else None
        auth = httpx.BasicAuth(*basic) if basic else None
        try:
            with anyio.fail_after(o.timeout):
                async with (
                    httpx.AsyncClient(
                        timeout=o.timeout,
                        follow_redirects=True,
                        auth=auth,
                        headers={"User-Agent": USER_AGENT},
                    ) as client,
                    client.stream("GET", url) as response,
                ):
                    if response.status_code != 200:
                        reason = {401: "AuthFailed", 403: "AuthFailed", 404: "NotFound"}.get(
                            response.status_code, "NetworkError" if response.status_code >= 500 else "FetchFailed"
                        )
                        raise SourceError(f"helm {o.repo}: {what}: HTTP {response.status_code}", reason=reason)
                    chunks, total = [], 0
                    async for chunk in response.aiter_bytes():
                        total += len(chunk)
                        if total > limit:
                            raise SourceError(f"helm {o.repo}: {what} is over the limit of {limit} bytes",
                                              reason="TooLarge")
                        chunks.append(chunk)
                    return b"".join(chunks)
        except TimeoutError:
            raise SourceError(f"helm {o.repo}: {what}: timed out after {o.timeout:g}s", reason="Timeout") from None
        except httpx.TimeoutException:
            raise SourceError(f"helm {o.repo}: {what}: timed out after {o.timeout:g}s", reason="Timeout") from None
        except httpx.HTTPError as exc:
            raise SourceError(f"helm {o.repo}: {what}: {type(exc).__name__}: {exc}", reason="NetworkError") from None

    def _may_send_credentials(self, url: str) -> bool:
        """Credentials go to the repository's own origin (scheme, host, port) only, unless
        ``pass_credentials``: index.yaml may name any host for a chart archive (CVE-2021-32690)."""
        import httpx

        if self.options.pass_credentials:
            return True
        target, repo = httpx.URL(url), httpx.URL(self.options.repo)
        return (target.scheme, target.host, target.port) == (repo.scheme, repo.host, repo.port)

    async def _index_entries(self) -> list[dict[str, Any]]:
        o = self.options
        data = await self._http_get(f"{o.repo}/index.yaml", "index.yaml", _MAX_INDEX)
        # YAML loads on first use, not at start (docs/operations.md, "Start-up and readiness")
        from gitopsd.core.yamlio import load_all

        docs = await anyio.to_thread.run_sync(load_all, data.decode("utf-8", "replace"), f"{o.repo}/index.yaml")
        index = docs[0][1] if docs else None
        if not isinstance(index, dict) or not isinstance(index.get("entries"), dict):
            raise SourceError(f"helm {o.repo}: index.yaml has no entries", reason="FetchFailed")
        entries = index["entries"].get(o.chart)
        if not entries:
            raise SourceError(f"helm {o.repo}: chart {o.chart!r} is not in the repository index", reason="NotFound")
        return [e for e in entries if isinstance(e, dict) and isinstance(e.get("version"), str)]

    # -- the Source API -----------------------------------------------------------------

    async def latest_revision(self) -> str:
        o = self.options
        if self.oci:
            registry, repository = self.registry()
            tags = await registry.tags(repository)
            versions = {t.replace("_", "+"): t for t in tags}
            chosen = _pick(o.version, list(versions))
            if chosen is None:
                raise SourceError(f"helm {self.url}: no version matches {o.version!r} "
                                  f"(versions: {', '.join(sorted(versions)[:20]) or 'none'})", reason="RefNotFound")
            _, digest = await registry.manifest(repository, versions[chosen])
            return f"{chosen}@{digest}"
        entries = await self._index_entries()
        chosen = _pick(o.version, [e["version"] for e in entries])
        if chosen is None:
            shown = ", ".join(sorted(e["version"] for e in entries)[:20])
            raise SourceError(f"helm {self.url}: no version matches {o.version!r} (versions: {shown})",
                              reason="RefNotFound")
        entry = next(e for e in entries if e["version"] == chosen)
        digest = str(entry.get("digest") or "")
        if not re.match(r"^[0-9a-f]{64}$", digest):
            raise SourceError(f"helm {self.url}: version {chosen} has no sha256 digest in the index",
                              reason="VerificationFailed")
        self._entries[chosen] = entry
        return f"{chosen}@sha256:{digest}"

    async def fetch(self, revision: str) -> Artifact:
        m = _REVISION.match(revision)
        if not m:
            raise SourceError(f"helm {self.url}: invalid revision {revision!r}", reason="InvalidRevision")
        version, digest = m["version"], m["digest"]
        dest = cache_entry(self.ctx.cache_dir("helm", evictable=True), digest.replace(":", "-"), f"helm {self.url}")

        async def download() -> None:
            data = await (self._download_oci(digest) if self.oci else self._download_http(version, digest))
            await anyio.to_thread.run_sync(
                lambda: extract_tar(data, dest, where=f"helm chart {self.options.chart} {version}",
                                    max_bytes=self.options.max_size)
            )

        pending: dict[Hashable, anyio.Event] = self.ctx.shared.get("helm-extract-pending", dict)
        await one_at_a_time(pending, dest, dest.is_dir, download)  # every app of the chart version at once
        chart = dest / self.options.chart
        if not (chart / "Chart.yaml").is_file():
            found = [p.name for p in dest.iterdir() if (p / "Chart.yaml").is_file()]
            if len(found) != 1:
                raise SourceError(f"helm {self.url}: archive of {version} holds no chart directory",
                                  reason="FetchFailed")
            chart = dest / found[0]
        return Artifact(path=chart, revision=revision, digest=digest, url=self.url)

    async def _download_oci(self, digest: str) -> bytes:
        registry, repository = self.registry()
        manifest, _ = await registry.manifest(repository, digest)
        layer = next((lay for lay in manifest["layers"] if isinstance(lay, dict)
                      and lay.get("mediaType") == HELM_CHART_LAYER), None)
        if layer is None:
            raise SourceError(f"helm {self.url}: {digest} is not a Helm chart (no {HELM_CHART_LAYER} layer)",
                              reason="FetchFailed")
        return await registry.blob(repository, layer, self.options.max_size)

    async def _download_http(self, version: str, digest: str) -> bytes:
        entry = self._entries.get(version)
        if entry is None:
            entry = next((e for e in await self._index_entries() if e["version"] == version), None)
            if entry is None:
                raise SourceError(f"helm {self.url}: version {version} is not in the index", reason="RefNotFound")
        urls = entry.get("urls") or []
        if not urls or not isinstance(urls[0], str):
            raise SourceError(f"helm {self.url}: version {version} has no download URL", reason="FetchFailed")
        url = urljoin(self.options.repo + "/", urls[0])
        data = await self._http_get(url, f"chart {self.options.chart} {version}", self.options.max_size)
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise SourceError(f"helm {self.url}: chart {version} should have digest {digest}, got {actual}",
                              reason="VerificationFailed")
        return data


@gitopsd.hookimpl
def gitopsd_source_types() -> dict[str, type[gitopsd.Source]]:
    return {"helm": HelmChartSource}
