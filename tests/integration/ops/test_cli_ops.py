"""The operator CLI against a running daemon (real API, real sandbox)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner, Result

from gitopsd.cli.main import cli
from gitopsd.core.models import SyncStatus
from gitopsd.sandbox import Sandbox

from .conftest import Env, configmap, running, wait_for

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(tls=True, rollout_delay=0.05) as sb:
        yield sb


async def gitopsd(config: Path, *args: str) -> Result:
    runner = CliRunner()
    return await anyio.to_thread.run_sync(lambda: runner.invoke(cli, ["-c", str(config), *args], catch_exceptions=False))


def app_config(env: Env, sandbox: Sandbox, *, token: bool = True, read_token: bool = False) -> str:
    app = env.root / "apps" / "web"
    app.mkdir(parents=True, exist_ok=True)
    (app / "cm.yaml").write_text(configmap("web", v="1"))
    return (
        env.daemon_toml(token=token, read_token=read_token)
        + f'[clusters.sb]\nkubeconfig = "{sandbox.kubeconfig}"\n'
        + '[apps.web]\ncluster = "sb"\nnamespace = "web"\nsource = {type = "local", path = "apps/web"}\n'
    )


async def test_status_refresh_suspend_resume_history_rollback(env: Env, sandbox: Sandbox) -> None:
    config = env.write(app_config(env, sandbox))
    async with running(env, config) as daemon:
        runner = daemon.apps["web"].runner
        await wait_for(lambda: runner.status.sync == SyncStatus.SYNCED and runner.status.last_result == "succeeded")
        first = runner.status.revision

        result = await gitopsd(env.path, "status")
        assert result.exit_code == 0, result.output
        header, row = result.output.splitlines()
        assert header.split() == ["APP", "CLUSTER", "REVISION", "SYNC", "HEALTH", "LAST", "SYNC", "MESSAGE"]
        assert row.split()[:5] == ["web", "sb", first.rpartition(":")[0] + ":" + first.rpartition(":")[2][:12], "Synced", "Healthy"]

        result = await gitopsd(env.path, "status", "-o", "json")
        (app,) = json.loads(result.output)
        assert app["name"] == "web" and app["revision"] == first and app["history"][0]["result"] == "succeeded"

        before = runner.status.reconciles
        result = await gitopsd(env.path, "refresh", "web")
        assert result.exit_code == 0 and "refresh requested" in result.output
        await wait_for(lambda: runner.status.reconciles > before)

        assert (await gitopsd(env.path, "suspend", "web")).exit_code == 0
        assert runner.status.suspended and (await daemon.store.pin("web")).suspended  # type: ignore[union-attr]
        assert "(suspended)" in (await gitopsd(env.path, "status")).output
        assert (await gitopsd(env.path, "resume", "web")).exit_code == 0
        assert not runner.status.suspended

        # a second revision, then roll back to the first by a prefix of its digest
        (env.root / "apps" / "web" / "cm.yaml").write_text(configmap("web", v="2"))
        await wait_for(lambda: runner.status.revision != first and runner.status.last_result == "succeeded")
        result = await gitopsd(env.path, "history", "web")
        assert result.exit_code == 0 and first in result.output and runner.status.revision in result.output
        digest = first.rpartition(":")[2]
        result = await gitopsd(env.path, "rollback", "web", digest[:10])
        assert result.exit_code == 0, result.output
        assert runner.status.pinned_revision == first
        result = await gitopsd(env.path, "rollback", "web", "not-in-history")
        assert result.exit_code == 1 and "HTTP 409" in result.output
        result = await gitopsd(env.path, "resume", "web")
        assert runner.status.pinned_revision == ""

        result = await gitopsd(env.path, "refresh", "nope")
        assert result.exit_code == 1 and "no app named 'nope'" in result.output


async def test_mutating_commands_without_a_token(env: Env, sandbox: Sandbox) -> None:
    config = env.write(app_config(env, sandbox, token=False))
    async with running(env, config):
        result = await gitopsd(env.path, "suspend", "web")
        assert result.exit_code == 1 and "HTTP 403" in result.output and "api_token_file" in result.output
        result = await gitopsd(env.path, "status")  # reading needs a token too
        assert result.exit_code == 1 and "HTTP 403" in result.output and "read_token_file" in result.output


async def test_read_token_reads_but_cannot_change(env: Env, sandbox: Sandbox) -> None:
    config = env.write(app_config(env, sandbox, token=False, read_token=True))
    async with running(env, config):
        result = await gitopsd(env.path, "status")
        assert result.exit_code == 0 and "web" in result.output, result.output
        result = await gitopsd(env.path, "suspend", "web")
        assert result.exit_code == 1 and "HTTP 403" in result.output and "read token" in result.output


async def test_daemon_not_running(env: Env) -> None:
    env.write(env.daemon_toml())
    result = await gitopsd(env.path, "status")
    assert result.exit_code == 1 and "cannot reach gitopsd" in result.output
