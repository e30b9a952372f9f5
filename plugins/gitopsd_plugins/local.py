"""The ``local`` source: a directory on the bastion host.

The revision is a digest of the tree's paths and contents, stable across runs. The
directory is watched with watchfiles, so a change triggers a reconcile within a
second (debounced) without polling.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread
from pydantic import Field

import gitopsd
from gitopsd import Artifact, Options, Source, SourceError


class LocalOptions(Options):
    path: Path = Field(description="Directory holding the manifests (absolute, or relative to the config file).")
    debounce: float = Field(0.3, ge=0, description="Seconds of quiet before a change triggers a reconcile.")


def tree_digest(root: Path) -> str:
    """sha256 over every file's relative path, mode bit and content, in sorted order.

    A symlink pointing outside ``root`` is refused: renderers would read (and apply) files
    the source was never meant to expose.
    """
    digest = hashlib.sha256()
    root_real = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in sorted(filenames):
            full = Path(dirpath, name)
            rel = full.relative_to(root).as_posix()
            digest.update(rel.encode() + b"\0")
            if full.is_symlink():
                target = full.resolve()
                if target != root_real and root_real not in target.parents:
                    raise SourceError(
                        f"local source: {rel} is a symlink to {os.readlink(full)}, outside {root}", reason="UnsafeSymlink"
                    )
                digest.update(b"L" + os.readlink(full).encode())
            else:
                digest.update(b"X" if os.access(full, os.X_OK) else b"F")
                digest.update(full.read_bytes())
            digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


class LocalSource(Source):
    """A directory; see the module docstring."""

    Options = LocalOptions

    @property
    def path(self) -> Path:
        return (self.ctx.config_dir / self.options.path).resolve()

    @property
    def url(self) -> str:
        return self.path.as_uri()

    async def _digest(self) -> str:
        path = self.path
        if not path.is_dir():
            raise SourceError(f"local source: {path} is not a directory", reason="NotFound")
        return await anyio.to_thread.run_sync(tree_digest, path)

    async def latest_revision(self) -> str:
        return await self._digest()

    async def fetch(self, revision: str) -> Artifact:
        digest = await self._digest()
        return Artifact(path=self.path, revision=digest, digest=digest, url=self.url)

    def changes(self) -> AsyncIterator[None]:
        return self._watch()

    async def _watch(self) -> AsyncIterator[None]:
        debounce_ms = int(self.options.debounce * 1000)
        import watchfiles  # here: most configurations have no local source

        # rust_timeout bounds how long a stopped app waits for the watcher thread to notice.
        async for _ in watchfiles.awatch(self.path, debounce=max(debounce_ms, 1), step=50, rust_timeout=500):
            yield None


@gitopsd.hookimpl
def gitopsd_source_types() -> dict[str, type[Source]]:
    return {"local": LocalSource}
