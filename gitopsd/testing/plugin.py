"""pytest fixtures for plugin authors (entry point ``pytest11``: loaded when gitopsd is installed).

Fixtures:
    gitopsd_sandbox   a running Kubernetes API sandbox (HTTPS): ``.kubeconfig``, ``.counters()``
    git_repo          a real git repository in tmp_path: ``.write()``, ``.commit()``, ``.tag()``
    plugin_manager    an isolated plugin manager: built-ins plus the plugins the test names
                      (mark ``@pytest.mark.gitopsd_plugins(my_module, ...)``)
    recorded_events   every event emitted through :func:`run_app` in this test
    http_server       a real HTTP server on loopback with scripted replies, recording requests
    kube_get          ``await kube_get("/api/v1/namespaces/x/configmaps/y")`` -> the live object (or None)
    run_app           ``await run_app({...app table...})`` -> fetch, render, apply into the sandbox

Async fixtures and tests run on anyio (asyncio backend).
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gitopsd.core.events import Event
from gitopsd.core.models import SyncResult
from gitopsd.plugin.manager import PluginManager


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "gitopsd_plugins(*plugins): plugins (modules or objects) the plugin_manager fixture registers"
    )


class GitRepo:
    """A real git repository for tests: write files, commit, tag. ``url`` is its file:// URL."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.email", "test@gitopsd.invalid")
        self.git("config", "user.name", "gitopsd test")
        self.git("config", "commit.gpgsign", "false")

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.path, check=True, capture_output=True, text=True
        ).stdout.strip()

    def write(self, files: dict[str, str]) -> None:
        """Write (relative path -> text) files into the work tree."""
        for rel, text in files.items():
            target = self.path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")

    def commit(self, files: dict[str, str] | None = None, message: str = "change") -> str:
        """Write ``files`` (if any), commit everything, return the commit SHA."""
        if files:
            self.write(files)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def tag(self, name: str) -> None:
        self.git("tag", name)


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    """A fresh git repository with branch ``main`` and no commits."""
    return GitRepo(tmp_path / "repo")


@pytest.fixture
def plugin_manager(request: pytest.FixtureRequest) -> PluginManager:
    """A plugin manager with the built-ins and only the plugins named by ``@pytest.mark.gitopsd_plugins``."""
    marker = request.node.get_closest_marker("gitopsd_plugins")
    plugins = list(marker.args) if marker else []
    return PluginManager(builtins_only=True, plugins=plugins)


@pytest.fixture
def recorded_events() -> list[Event]:
    """Events emitted by :func:`run_app` during the test, in order."""
    return []


@pytest.fixture
async def gitopsd_sandbox() -> AsyncIterator[Any]:
    """A Kubernetes API sandbox over HTTPS for the test (see :class:`gitopsd.sandbox.Sandbox`)."""
    from gitopsd.sandbox import Sandbox

    async with Sandbox(tls=True, rollout_delay=0.05) as sandbox:
        yield sandbox


@pytest.fixture
def kube_get(gitopsd_sandbox: Any) -> Callable[[str], Awaitable[dict[str, Any] | None]]:
    """Read one object from the sandbox by its API path, over HTTPS like any client; None if absent."""
    import ssl

    import httpx

    async def get(path: str) -> dict[str, Any] | None:
        context = ssl.create_default_context(cadata=gitopsd_sandbox.ca_pem.decode())
        headers = {"Authorization": f"Bearer {gitopsd_sandbox.token}"}
        async with httpx.AsyncClient(base_url=gitopsd_sandbox.url, verify=context, headers=headers) as client:
            response = await client.get(path)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    return get


@pytest.fixture
def run_app(
    gitopsd_sandbox: Any, plugin_manager: PluginManager, recorded_events: list[Event], tmp_path: Path
) -> Callable[..., Awaitable[SyncResult]]:
    """``await run_app(app_table, notifiers=None)``: one fetch -> render -> apply into the sandbox.

    ``app_table`` is what you would write under ``[apps.NAME]`` (``name`` defaults to "app",
    ``cluster`` to the sandbox). Returns the SyncResult; events go to ``recorded_events``.
    """
    from gitopsd.engine.reconciler import sync_once

    async def run(app_table: dict[str, Any], *, dry_run: bool = False) -> SyncResult:
        table = {"cluster": "sandbox", **app_table}
        name = table.pop("name", "app")
        raw = {
            # Test files are written with the test runner's umask: the permission check of
            # secret files (on in production) would refuse them.
            "daemon": {"state_dir": str(tmp_path / "gitopsd-state"), "strict_secret_permissions": False},
            "clusters": {"sandbox": {"kubeconfig": str(gitopsd_sandbox.kubeconfig)}},
            "apps": {name: table},
        }
        return await sync_once(raw, name, plugin_manager, emit=recorded_events.append, dry_run=dry_run)

    return run


class HTTPServer:
    """A loopback HTTP server for tests: ``reply(path, body, status, headers)`` then request ``url + path``.

    Every request is recorded in ``requests`` as ``(method, path, headers, body)``.
    Unscripted paths answer 404.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self._replies: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.url = ""
        self._runner: Any = None

    def reply(self, path: str, body: bytes | str = b"", status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._replies[path] = (status, body.encode() if isinstance(body, str) else body, headers or {})

    async def start(self) -> None:
        from aiohttp import web

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            self.requests.append((request.method, request.path, dict(request.headers), body))
            status, payload, headers = self._replies.get(request.path, (404, b"not found", {}))
            return web.Response(status=status, body=payload, headers=headers)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self._runner.cleanup()


@pytest.fixture
async def http_server() -> AsyncIterator[HTTPServer]:
    """A started :class:`HTTPServer` on 127.0.0.1."""
    server = HTTPServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def anyio_backend() -> Iterator[str]:
    """gitopsd is asyncio-based (kubernetes-asyncio, asyncssh)."""
    yield "asyncio"
