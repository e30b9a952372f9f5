"""`gitopsd sync` and `gitopsd diff` as a person runs them, against the sandbox."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

from gitopsd.sandbox import Sandbox
from tests.integration.test_engine import DEPLOYMENT, manifests_dir, write_config

pytestmark = pytest.mark.anyio


async def gitopsd(*args: str) -> tuple[int, str, str]:
    result = await anyio.run_process([sys.executable, "-m", "gitopsd", *args], check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def test_sync_then_diff(tmp_path: Path) -> None:
    async with Sandbox(tls=True, rollout_delay=0.05) as sandbox:
        sandbox.write_kubeconfig(tmp_path / "kubeconfig")
        directory = manifests_dir(tmp_path, "m", DEPLOYMENT)
        config = str(write_config(tmp_path, tmp_path / "kubeconfig", {"web": str(directory)}))

        code, out, err = await gitopsd("sync", "-c", config, "web", "--dry-run")
        assert code == 0, err
        assert "dry run" in out and sandbox.counters()["writes"] == 0

        code, out, err = await gitopsd("sync", "-c", config, "web")
        assert code == 0, err
        assert "created   Deployment.apps web/web  [Healthy]" in out
        assert "web: synced sha256:" in out and "3 created" in out

        code, out, err = await gitopsd("diff", "-c", config, "web")
        assert (code, out) == (0, ""), err

        (directory / "app.yaml").write_text(DEPLOYMENT.replace("replicas: 2", "replicas: 3"))
        code, out, err = await gitopsd("diff", "-c", config, "web")
        assert code == 1, err
        assert "-  replicas: 2" in out and "+  replicas: 3" in out

        code, out, _ = await gitopsd("sync", "-c", config, "web")
        assert code == 0 and "changed   Deployment.apps web/web" in out and "1 changed" in out

        (directory / "app.yaml").write_text("kind: [broken\n")
        code, _, err = await gitopsd("diff", "-c", config, "web")
        assert code == 2 and "app.yaml: document 0" in err
