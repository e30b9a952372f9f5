"""The http-archive source, synced into a real sandbox with gitopsd.testing only."""

import hashlib
import io
import tarfile

import pytest

from gitopsd_example import http_archive

CONFIGMAP = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-archive}\ndata: {k: v}\n"


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.anyio
@pytest.mark.gitopsd_plugins(http_archive)
async def test_syncs_an_archive_into_the_sandbox(http_server, run_app, recorded_events):
    body = tarball({"cm.yaml": CONFIGMAP})
    http_server.reply("/app.tar.gz", body)
    source = {"type": "http-archive", "url": f"{http_server.url}/app.tar.gz", "sha256": hashlib.sha256(body).hexdigest()}
    result = await run_app({"namespace": "demo", "source": source})
    assert result.ok and result.revision == f"sha256:{source['sha256']}"
    assert sorted(str(o.ref) for o in result.objects if o.action == "created") == ["ConfigMap demo/from-archive", "Namespace demo"]
    assert "sync-succeeded" in [event.name for event in recorded_events]


@pytest.mark.anyio
@pytest.mark.gitopsd_plugins(http_archive)
async def test_a_wrong_pin_is_refused(http_server, run_app):
    http_server.reply("/app.tar.gz", tarball({"cm.yaml": CONFIGMAP}))
    source = {"type": "http-archive", "url": f"{http_server.url}/app.tar.gz", "sha256": "0" * 64}
    with pytest.raises(Exception, match="sha256 does not match the pin"):
        await run_app({"source": source})


@pytest.mark.anyio
@pytest.mark.gitopsd_plugins(http_archive)
async def test_path_traversal_is_refused(http_server, run_app):
    body = tarball({"../escape.yaml": CONFIGMAP})
    http_server.reply("/evil.tar.gz", body)
    source = {"type": "http-archive", "url": f"{http_server.url}/evil.tar.gz", "sha256": hashlib.sha256(body).hexdigest()}
    with pytest.raises(Exception, match="outside the destination"):
        await run_app({"source": source})
