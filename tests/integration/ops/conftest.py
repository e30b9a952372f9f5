"""Helpers for the operations tests: a daemon on a loopback port, configs, git repos, an sd_notify socket."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from gitopsd.core.events import Event
from gitopsd.daemon.supervisor import Daemon
from gitopsd.plugin.config import Config
from gitopsd.plugin.loading import load_config
from gitopsd.plugin.manager import PluginManager
from gitopsd.server.systemd import SystemdNotifier

API_TOKEN = "api-token-0123456789abcdef"
READ_TOKEN = "read-token-fedcba9876543210"
GITHUB_SECRET = "gh-webhook-secret-42"
GITLAB_TOKEN = "gl-webhook-token-42"
GITEA_SECRET = "gitea-webhook-secret-42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def github_signature(body: bytes, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def gitea_signature(body: bytes, secret: str = GITEA_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def git(*args: str, cwd: Path | None = None) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def configmap(name: str, **data: str) -> str:
    """A ConfigMap manifest (JSON is YAML) without a namespace: the app's namespace is used."""
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})


class GitRepo:
    """A bare repository (the "remote", reached by file:// URL) and a work tree that pushes to it."""

    def __init__(self, root: Path, name: str):
        self.bare = root / f"{name}.git"
        self.work = root / f"{name}-work"
        git("init", "-q", "--bare", "-b", "main", str(self.bare))
        git("init", "-q", "-b", "main", str(self.work))
        git("remote", "add", "origin", str(self.bare), cwd=self.work)

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def commit(self, files: dict[str, str], branch: str = "main") -> str:
        git("checkout", "-q", "-B", branch, cwd=self.work)
        for rel, text in files.items():
            path = self.work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", "change", cwd=self.work)
        git("push", "-q", "-f", "origin", branch, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def tag(self, name: str) -> None:
        git("tag", "-f", name, cwd=self.work)
        git("push", "-q", "-f", "origin", f"refs/tags/{name}", cwd=self.work)


class Env:
    """A config directory with secret files, and a writer for the config file."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.path = root / "config.toml"
        self.state = root / "state"
        for name, value in (
            ("token", API_TOKEN),
            ("read-token", READ_TOKEN),
            ("github", GITHUB_SECRET),
            ("gitlab", GITLAB_TOKEN),
            ("gitea", GITEA_SECRET),
        ):
            (root / name).write_text(value + "\n")
        self.plugins = PluginManager(builtins_only=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def daemon_toml(
        self, *, token: bool = True, hooks: bool = True, extra: str = "", watch: bool = False, read_token: bool = False
    ) -> str:
        lines = [
            "[daemon]",
            f'state_dir = "{self.state}"',
            f'listen = "127.0.0.1:{self.port}"',
            'default_interval = "1h"',
            'shutdown_timeout = "10s"',
            "max_body_bytes = 4096",
            f"watch_config = {'true' if watch else 'false'}",
        ]
        if token:
            lines.append('api_token_file = "token"')
        if read_token:
            lines.append('read_token_file = "read-token"')
        lines.append(extra)
        if hooks:
            lines += [
                "[daemon.webhooks]",
                'github_secret_file = "github"',
                'gitlab_token_file = "gitlab"',
                'gitea_secret_file = "gitea"',
            ]
        return "\n".join(lines) + "\n"

    def write(self, text: str) -> Config:
        self.path.write_text(text)
        return load_config(self.path, self.plugins.types)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


@contextlib.asynccontextmanager
async def running(
    env: Env, config: Config, *, systemd: SystemdNotifier | None = None, events: list[Event] | None = None
) -> AsyncIterator[Daemon]:
    """Run a daemon in the test's task group until the block ends, then stop it gracefully."""
    daemon = Daemon(config, env.plugins, systemd=systemd or SystemdNotifier({}))
    if events is not None:
        original = daemon.emit

        def emit(event: Event) -> None:
            events.append(event)
            original(event)

        daemon.emit = emit  # type: ignore[method-assign]
        daemon.workspace.ctx.emit = emit
    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.run, name="daemon")
            await daemon.ready.wait()
            try:
                yield daemon
            finally:
                daemon.stop()  # the task group then waits for run() to return


async def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.05) -> None:
    """Poll ``predicate()`` until true; fail after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(interval)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


class NotifySocket:
    """A real AF_UNIX datagram socket playing systemd's notify socket."""

    def __init__(self, path: str | bytes):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append(fields)

    def close(self) -> None:
        self.sock.close()
