"""The http-archive source, synced into a real sandbox with gitopsd.testing only."""

import hashlib

import pytest

from gitopsd.testing.artifacts import tar_gz
from gitopsd_example import http_archive

CONFIGMAP = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-archive}\ndata: {k: v}\n"


@pytest.mark.anyio
@pytest.mark.gitopsd_plugins(http_archive)
async def test_syncs_an_archive_into_the_sandbox(http_server, run_app, recorded_events):
    body = tar_gz({"cm.yaml": CONFIGMAP})
    http_server.reply("/app.tar.gz", body)
    source = {"type": "http-archive", "url": f"{http_server.url}/app.tar.gz", "sha256": hashlib.sha256(body).hexdigest()}
    result = await run_app({"namespace": "demo", "source": source})
    assert result.ok and result.revision == f"sha256:{source['sha256']}"
    assert sorted(str(o.ref) for o in result.objects if o.action == "created") == ["ConfigMap demo/from-archive", "Namespace demo"]
    assert "sync-succeeded" in [event.name for event in recorded_events]


@pytest.mark.anyio
@pytest.mark.gitopsd_plugins(http_archive)
async def test_a_wrong_pin_is_refused(http_server, run_app):
    http_server.reply("/app.tar.gz", tar_gz({"cm.yaml": CONFIGMAP}))
    source = {"type": "http-archive", "url": f"{http_server.url}/app.tar.gz", "sha256": "0" * 64}
    with pytest.raises(Exception, match="sha256 does not match the pin"):
        await run_app({"source": source})


@pytest.mark.anyio
@pytest.mark.gitopsd_plugins(http_archive)
async def test_path_traversal_is_refused(http_server, run_app, tmp_path):
    body = tar_gz({"ok.yaml": CONFIGMAP, "../escape.yaml": CONFIGMAP})
    http_server.reply("/evil.tar.gz", body)
    source = {"type": "http-archive", "url": f"{http_server.url}/evil.tar.gz", "sha256": hashlib.sha256(body).hexdigest()}
    with pytest.raises(Exception, match="outside the destination"):
        await run_app({"source": source})
    cache = tmp_path / "gitopsd-state" / "cache" / "http-archive"
    assert not (cache / source["sha256"]).exists()  # no half-unpacked tree is taken for the artifact later
    assert not (tmp_path / "gitopsd-state" / "cache" / "escape.yaml").exists()
