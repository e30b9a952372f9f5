"""`GET /api/v1/version` on a running daemon."""

from __future__ import annotations

import platform

import httpx
import pytest

from gitopsd import __version__

from .conftest import Env, running

pytestmark = pytest.mark.anyio


async def test_version_endpoint_needs_no_token(env: Env, http: httpx.AsyncClient) -> None:
    config = env.write(env.daemon_toml())
    async with running(env, config):
        r = await http.get(f"{env.base_url}/api/v1/version")
    assert r.status_code == 200
    assert r.json() == {"version": __version__, "python": platform.python_version()}
