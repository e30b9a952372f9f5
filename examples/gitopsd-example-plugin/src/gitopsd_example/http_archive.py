"""Source ``http-archive``: a tar.gz of manifests at a URL, pinned by its sha256."""

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import anyio

import gitopsd


class HTTPArchiveOptions(gitopsd.Options):
    url: str
    sha256: str


class HTTPArchiveSource(gitopsd.Source):
    """A tar.gz at ``url``; the pin is the revision, so polling costs nothing."""

    Options = HTTPArchiveOptions

    async def latest_revision(self) -> str:
        return f"sha256:{self.options.sha256}"

    async def fetch(self, revision: str) -> gitopsd.Artifact:
        target = self.ctx.cache_dir("http-archive") / self.options.sha256
        if not target.exists():
            import httpx  # where it is used: the daemon starts without it

            async with httpx.AsyncClient(timeout=30) as client:
                response = await client.get(self.options.url)
            if response.status_code != 200:
                raise gitopsd.SourceError(f"{self.options.url}: HTTP {response.status_code}")
            # Hashing and unpacking block: run them in a worker thread, never on the event loop.
            await anyio.to_thread.run_sync(self._unpack, response.content, target)
        return gitopsd.Artifact(path=target, revision=revision, digest=revision, url=self.options.url)

    def _unpack(self, body: bytes, target: Path) -> None:
        if hashlib.sha256(body).hexdigest() != self.options.sha256:
            raise gitopsd.SourceError(f"{self.options.url}: sha256 does not match the pin", reason="DigestMismatch")
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted unpack
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
            archive.extractall(partial, filter="data")  # refuses .., absolute paths, escaping links
        partial.rename(target)  # all or nothing: a failed unpack never leaves a half tree behind


@gitopsd.hookimpl
def gitopsd_source_types():
    return {"http-archive": HTTPArchiveSource}
