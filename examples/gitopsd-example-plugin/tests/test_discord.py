"""The Discord notifier against a real loopback HTTP server, built through gitopsd.testing."""

import json

import pytest

import gitopsd
from gitopsd.core.events import SyncFailed
from gitopsd_example import discord


@pytest.fixture
def notifier(plugin_manager, http_server, tmp_path):
    (tmp_path / "url").write_text(f"{http_server.url}/hook\n")
    (tmp_path / "url").chmod(0o600)  # gitopsd refuses secret files others can read
    cls = plugin_manager.types.notifiers["discord"]
    options = cls.Options(webhook_url_file=tmp_path / "url")
    return cls("team", options, gitopsd.PluginContext(state_dir=tmp_path, config_dir=tmp_path))


@pytest.mark.anyio
@pytest.mark.gitopsd_plugins(discord)
async def test_posts_the_event(notifier, http_server):
    http_server.reply("/hook", status=204)
    await notifier.send(SyncFailed.make(app="web", message="Deployment web/api: ImagePullBackOff"))
    [(method, path, _, body)] = http_server.requests
    assert (method, path) == ("POST", "/hook")
    assert json.loads(body) == {"content": "❌ **web** sync-failed: Deployment web/api: ImagePullBackOff"}


@pytest.mark.anyio
@pytest.mark.gitopsd_plugins(discord)
async def test_rate_limit_and_revoked_webhook(notifier, http_server):
    http_server.reply("/hook", status=429, headers={"Retry-After": "2"})
    with pytest.raises(gitopsd.NotifyError) as info:
        await notifier.send(SyncFailed.make(app="web", message="x"))
    assert info.value.retry_after == 2 and not info.value.permanent
    http_server.reply("/hook", status=404)
    with pytest.raises(gitopsd.NotifyError) as info:
        await notifier.send(SyncFailed.make(app="web", message="x"))
    assert info.value.permanent and http_server.url not in str(info.value)
