"""pytest fixtures for plugin authors (entry point ``pytest11``: loaded when gitopsd is installed).

Fixtures:
    gitopsd_sandbox   a running Kubernetes API sandbox (HTTPS): ``.kubeconfig``, ``.counters()``
    git_repo          a real git repository in tmp_path: ``.write()``, ``.commit()``, ``.tag()``
    plugin_manager    an isolated plugin manager: built-ins plus the plugins the test names
                      (mark ``@pytest.mark.gitopsd_plugins(my_module, ..., name=my_plugin)``)
    recorded_events   every event emitted through :func:`run_app` in this test
    http_server       a real HTTP server on loopback with scripted replies, recording requests
    kube_get          ``await kube_get("/api/v1/namespaces/x/configmaps/y")`` -> the live object (or None)
    run_app           ``await run_app({...app table...}, plugins={...})`` -> fetch, render, apply
                      into the sandbox
    oci_registry      a real OCI registry on loopback (Debian's ``docker-registry``):
                      ``.push_artifact(repo, tag, tar_gz({...}))``, ``.host``

Functions (:mod:`gitopsd.testing.artifacts`): ``tar_gz({name: text})`` builds an archive in
memory; ``push_oci_artifact(url, repo, tag, layer)`` pushes to any registry.

Async fixtures and tests run on anyio (asyncio backend).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gitopsd.core.events import Event
from gitopsd.core.models import SyncResult
from gitopsd.plugin.manager import PluginManager
from gitopsd.testing.artifacts import OCIRegistry, find_registry_binary, push_oci_artifact, tar_gz

__all__ = ["GitRepo", "HTTPServer", "OCIRegistry", "push_oci_artifact", "tar_gz"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "gitopsd_plugins(*plugins, **named): plugins (modules or objects) the plugin_manager fixture registers; "
        "a keyword gives the plugin its name (the NAME of its [plugins.NAME] table)",
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
    """A plugin manager with the built-ins and only the plugins named by ``@pytest.mark.gitopsd_plugins``.

    Positional plugins are named by their ``__name__`` (a module's dotted name) or class name;
    ``@pytest.mark.gitopsd_plugins(labels=my_module)`` registers ``my_module`` as ``labels``,
    the name its entry point gives it, so ``[plugins.labels]`` options reach it.
    """
    marker = request.node.get_closest_marker("gitopsd_plugins")
    plugins: dict[str, object] = {}
    if marker:
        plugins.update((getattr(p, "__name__", None) or type(p).__name__, p) for p in marker.args)
        plugins.update(marker.kwargs)
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
    """``await run_app(app_table, *, plugins=None, dry_run=False)``: one reconcile into the sandbox, as the daemon runs it.

    Args:
        app_table: What you would write under ``[apps.NAME]``: ``name`` defaults to "app",
            ``cluster`` to the sandbox; ``plugins`` in it are this app's plugin overrides.
        plugins: The ``[plugins.NAME]`` tables, e.g. ``{"labels": {"labels": {"team": "a"}}}``.
        dry_run: Compute and report the changes without writing them.

    Returns the SyncResult; the events (the same ones the daemon would emit) go to
    ``recorded_events``. Source and render errors are raised. The config is validated like a
    config file: a bad option raises ``gitopsd.ConfigError`` listing every problem.
    """
    from gitopsd.daemon.wiring import one_app
    from gitopsd.plugin.loading import validate_config

    async def run(
        app_table: dict[str, Any], *, plugins: dict[str, dict[str, Any]] | None = None, dry_run: bool = False
    ) -> SyncResult:
        table = {"cluster": "sandbox", **app_table}
        name = table.pop("name", "app")
        raw: dict[str, Any] = {
            "daemon": {"state_dir": str(tmp_path / "gitopsd-state")},
            "clusters": {"sandbox": {"kubeconfig": str(gitopsd_sandbox.kubeconfig)}},
            "apps": {name: table},
        }
        if plugins is not None:
            raw["plugins"] = plugins
        config = validate_config(raw, plugin_manager.types, label="<test config>")
        async with one_app(config, name, plugin_manager, emit=recorded_events.append) as reconciler:
            result = await reconciler.reconcile(["manual"], force=True, dry_run=dry_run)
        assert result is not None, f"app {name} is suspended"
        return result

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
def oci_registry(tmp_path: Path) -> Iterator[OCIRegistry]:
    """A running :class:`~gitopsd.testing.artifacts.OCIRegistry` without auth, for this test.

    Needs Debian's ``docker-registry``: without it the test is skipped, or fails when ``CI=true``
    (a CI that silently skips would hide the gap).
    """
    if find_registry_binary() is None:
        message = "docker-registry is not installed (Debian package docker-registry)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with OCIRegistry(tmp_path / "oci-registry") as registry:
        yield registry


@pytest.fixture
def anyio_backend() -> Iterator[str]:
    """gitopsd is asyncio-based (kubernetes-asyncio, asyncssh)."""
    yield "asyncio"
