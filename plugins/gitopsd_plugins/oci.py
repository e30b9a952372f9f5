"""The ``oci`` source: manifests packaged as an OCI artifact in a container registry.

``url = "oci://host/repo"`` plus one of ``tag``, ``semver`` (highest matching tag) or
``digest``. The first layer of Flux's media type
(``application/vnd.cncf.flux.content.v1.tar+gzip``) or, failing that, the first plain
tar+gzip layer is downloaded (size-limited, digest-verified) and safely extracted into
``state_dir/cache/oci/<layer digest>``. Revisions look like ``v1.2.0@sha256:<manifest
digest>`` (``sha256:<hex>`` when pinned by digest). ``insecure = true`` allows plain HTTP
(loopback registries). One registry client per (host, credentials) is shared by all apps.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Hashable
from pathlib import Path

import anyio
from pydantic import Field, field_validator, model_validator

import gitopsd
from gitopsd import Artifact, Duration, Options, SourceError
from gitopsd.core.lazyre import LazyPattern

from ._archive import cache_entry, extract_tar
from ._oci import Credentials, Registry, checked_digest, split_oci_url
from ._once import one_at_a_time
from ._semverrange import SemverRange

FLUX_LAYER = "application/vnd.cncf.flux.content.v1.tar+gzip"
TAR_GZIP_LAYERS = (
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/tar+gzip",
    "application/gzip",
    "application/x-gzip",
)
_REVISION = LazyPattern(r"^(?:(?P<tag>.+)@)?(?P<digest>sha256:[0-9a-f]{64})$")


class OCIOptions(Options):
    """Options of ``type = "oci"``."""

    url: str = Field(description="oci://host[:port]/repository")
    tag: str | None = None
    semver: SemverRange | None = None
    digest: str | None = Field(None, description="sha256:<64 hex> of the manifest.")
    path: str = Field(".", description="Directory inside the artifact.")
    username_file: Path | None = None
    password_file: Path | None = None
    docker_config_file: Path | None = Field(None, description="A docker config.json with an auths entry for the host.")
    insecure: bool = Field(False, description="Plain HTTP (loopback test registries only).")
    timeout: Duration = Field(60.0, gt=0, description="Seconds per registry request.")
    max_size: int = Field(64 * 1024 * 1024, gt=0, description="Bytes a layer (and its extracted tree) may take.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        split_oci_url(value)
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        parts = [p for p in value.split("/") if p not in ("", ".")]
        if value.startswith("/") or ".." in parts:
            raise ValueError(f"path {value!r} must be relative and stay inside the artifact")
        return "/".join(parts) or "."

    @model_validator(mode="after")
    def _one_of(self) -> OCIOptions:
        chosen = [n for n in ("tag", "semver", "digest") if getattr(self, n)]
        if len(chosen) != 1:
            raise ValueError("set exactly one of tag, semver, digest")
        if self.digest and not re.match(r"^sha256:[0-9a-f]{64}$", self.digest):
            raise ValueError("digest must be sha256:<64 hex>")
        if bool(self.username_file) != bool(self.password_file):
            raise ValueError("username_file and password_file go together")
        return self


def shared_registry(ctx: gitopsd.PluginContext, host: str, insecure: bool, creds: Credentials, timeout: float,
                    identity: str) -> Registry:
    """One client per (host, scheme, credential files) for the whole daemon."""
    return ctx.shared.get(
        f"oci-registry:{host}:{insecure}:{identity}",
        lambda: Registry(host, insecure=insecure, credentials=creds, timeout=timeout),
    )


class OCISource(gitopsd.Source):
    """An OCI artifact; see the module docstring."""

    Options = OCIOptions

    def __init__(self, options: OCIOptions, ctx: gitopsd.PluginContext):
        super().__init__(options, ctx)
        self.host, self.repository = split_oci_url(options.url)
        self._registry: Registry | None = None

    @property
    def subdir(self) -> str:
        return self.options.path

    @property
    def ref(self) -> str:
        return str(self.options.tag or self.options.semver or self.options.digest or "")

    def _file(self, value: Path | None) -> Path | None:
        return None if value is None else self.ctx.config_dir / value

    def registry(self) -> Registry:
        if self._registry is None:
            o = self.options
            files = (self._file(o.username_file), self._file(o.password_file), self._file(o.docker_config_file))
            creds = Credentials.load(self.host, *files, strict=self.ctx.strict_secret_permissions)
            self._registry = shared_registry(self.ctx, self.host, o.insecure, creds, o.timeout, repr(files))
        return self._registry

    async def latest_revision(self) -> str:
        o = self.options
        if o.digest:
            return str(o.digest)
        tag = o.tag
        if o.semver:
            from ._semver import highest

            tags = await self.registry().tags(self.repository)
            tag = highest(o.semver, tags)
            if tag is None:
                shown = ", ".join(sorted(tags)[:20]) or "none"
                raise SourceError(f"oci {o.url}: no tag matches semver range {o.semver!r} (tags: {shown})",
                                  reason="RefNotFound")
        assert tag is not None
        _, digest = await self.registry().manifest(self.repository, tag)
        return f"{tag}@{digest}"

    async def fetch(self, revision: str) -> Artifact:
        m = _REVISION.match(revision)
        if not m:
            raise SourceError(f"oci {self.options.url}: invalid revision {revision!r}", reason="InvalidRevision")
        registry = self.registry()
        manifest, _ = await registry.manifest(self.repository, m["digest"])
        layers = [layer for layer in manifest["layers"] if isinstance(layer, dict)]
        chosen = next((lay for lay in layers if lay.get("mediaType") == FLUX_LAYER), None) or next(
            (lay for lay in layers if lay.get("mediaType") in TAR_GZIP_LAYERS), None
        )
        if chosen is None:
            types = ", ".join(sorted({str(lay.get("mediaType")) for lay in layers})) or "none"
            raise SourceError(f"oci {self.options.url}: no tar+gzip layer in {revision} (layer types: {types})",
                              reason="FetchFailed")
        where = f"oci {self.options.url} at {revision}"
        layer_digest = checked_digest(chosen.get("digest"), where)
        dest = cache_entry(self.ctx.cache_dir("oci", evictable=True), layer_digest.replace(":", "-"), where)

        async def download() -> None:
            data = await registry.blob(self.repository, chosen, self.options.max_size)
            await anyio.to_thread.run_sync(
                lambda: extract_tar(data, dest, where=f"oci {self.options.url} at {revision}",
                                    max_bytes=self.options.max_size)
            )

        pending: dict[Hashable, anyio.Event] = self.ctx.shared.get("oci-extract-pending", dict)
        await one_at_a_time(pending, dest, dest.is_dir, download)  # every app of the artifact at once
        path = dest if self.options.path == "." else dest / self.options.path
        if not path.is_dir():
            raise SourceError(f"oci {self.options.url}: path {self.options.path!r} does not exist in {revision}",
                              reason="PathNotFound")
        digest = "sha256:" + hashlib.sha256(f"oci-layer:{layer_digest}:{self.options.path}".encode()).hexdigest()
        return Artifact(path=path, revision=revision, digest=digest, url=self.options.url)

    async def aclose(self) -> None:
        # The registry client is shared by the daemon's apps: it lives as long as the daemon.
        return None


@gitopsd.hookimpl
def gitopsd_source_types() -> dict[str, type[gitopsd.Source]]:
    return {"oci": OCISource}
