"""Fixtures for the sandbox tests: a running Sandbox, a raw HTTP client, and kubectl runners."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gitopsd.sandbox import Sandbox
from tests.conftest import require_tool

SYSTEM_KUBECTL = "/usr/bin/kubectl"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(rollout_delay=0.1, bookmark_interval=0.2) as sb:
        yield sb


@dataclass
class Http:
    """A tiny JSON client for the sandbox's REST API."""

    session: aiohttp.ClientSession
    sb: Sandbox

    async def call(
        self, method: str, path: str, body: Any = None, ctype: str = "application/json",
        token: str | None = None, **params: Any,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token or self.sb.token}"}
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = ctype
        query = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}
        async with self.session.request(method, self.sb.url + path, data=data, headers=headers,
                                        params=query) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text


@pytest.fixture
async def http(sandbox: Sandbox) -> AsyncIterator[Http]:
    ctx = ssl.create_default_context(cadata=sandbox.ca_pem.decode())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        yield Http(session, sandbox)


@dataclass
class Kubectl:
    """Runs a kubectl binary against a sandbox without blocking the sandbox's event loop."""

    binary: str
    kubeconfig: Path
    cache_dir: Path

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache_dir), *args]

    async def run(self, *args: str, stdin: str | None = None, timeout: float = 60) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*args),
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "HOME": str(self.cache_dir.parent)},
        )
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), timeout)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def ok(self, *args: str, stdin: str | None = None) -> str:
        code, out, err = await self.run(*args, stdin=stdin)
        assert code == 0, f"kubectl {' '.join(args)} failed ({code}): {err}{out}"
        return out

    async def json(self, *args: str) -> Any:
        return json.loads(await self.ok(*args, "-o", "json"))


def kubectl_binary(version: str) -> str:
    """The pinned kubectl (1.33) or the image's (1.32); CI fails when one is missing."""
    if version == "pinned":
        return require_tool("kubectl")
    if Path(SYSTEM_KUBECTL).exists():
        return SYSTEM_KUBECTL
    found = shutil.which("kubectl")
    if found and found != require_tool("kubectl"):
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("the image's kubectl (/usr/bin/kubectl) is missing")
    pytest.skip("the image's kubectl (/usr/bin/kubectl) is missing")


@pytest.fixture(params=["pinned", "image"])
def kubectl_path(request: pytest.FixtureRequest) -> str:
    return kubectl_binary(request.param)


@pytest.fixture
def kubectl(sandbox: Sandbox, kubectl_path: str, tmp_path: Path) -> Kubectl:
    cache = tmp_path / "kubectl-cache"
    cache.mkdir()
    return Kubectl(kubectl_path, sandbox.kubeconfig, cache)


def require_protos() -> Path:
    """The Kubernetes protobuf descriptors (scripts/install-tools.sh); CI fails when missing."""
    from gitopsd.sandbox.protobuf import default_protos_dir

    path = default_protos_dir()
    if path.is_dir() and any(path.glob("*.pb")):
        return path
    message = f"no Kubernetes protobuf descriptors in {path} (run scripts/install-tools.sh)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
