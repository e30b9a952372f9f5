"""Source ``http-archive``: a tar.gz of manifests at a URL, pinned by its sha256."""

import hashlib
import io
import tarfile

import httpx

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
            async with httpx.AsyncClient(timeout=30) as client:
                response = await client.get(self.options.url)
            if response.status_code != 200:
                raise gitopsd.SourceError(f"{self.options.url}: HTTP {response.status_code}")
            if hashlib.sha256(response.content).hexdigest() != self.options.sha256:
                raise gitopsd.SourceError(f"{self.options.url}: sha256 does not match the pin", reason="DigestMismatch")
            with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
                archive.extractall(target, filter="data")  # refuses .., absolute paths, escaping links
        return gitopsd.Artifact(path=target, revision=revision, digest=revision, url=self.options.url)


@gitopsd.hookimpl
def gitopsd_source_types():
    return {"http-archive": HTTPArchiveSource}
