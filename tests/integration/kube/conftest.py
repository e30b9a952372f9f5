"""Fixtures for the Kubernetes layer: sandboxes over real HTTPS, a pool, an inventory, kubectl."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gitopsd.core.events import Event
from gitopsd.core.models import ObjectRef
from gitopsd.core.state import StateStore
from gitopsd.kube import KubeClusterPool
from gitopsd.plugin.config import AppConfig, ClusterConfig, Config, PluginTable
from gitopsd.sandbox import Sandbox
from tests.conftest import require_tool

pytestmark = pytest.mark.anyio


class StoreInventory:
    """The Inventory protocol over the real StateStore, as the engine provides it."""

    def __init__(self, store: StateStore, app: str):
        self.store = store
        self.app = app

    async def current(self) -> list[ObjectRef]:
        return await self.store.inventory(self.app)

    async def add(self, refs: Iterable[ObjectRef]) -> None:
        await self.store.add_to_inventory(self.app, list(refs))

    async def remove(self, refs: Iterable[ObjectRef]) -> None:
        await self.store.remove_from_inventory(self.app, list(refs))


def app_config(name: str = "web", cluster: str = "main", **kwargs: Any) -> AppConfig:
    return AppConfig(name=name, cluster=cluster, source=PluginTable(type="local"), **kwargs)


def pool_config(clusters: dict[str, Path], **cluster_opts: Any) -> Config:
    return Config(
        clusters={
            name: ClusterConfig(kubeconfig=path, **cluster_opts) for name, path in clusters.items()
        }
    )


@dataclass
class Env:
    """One sandbox, a pool over it, and a state store."""

    sb: Sandbox
    pool: KubeClusterPool
    store: StateStore
    events: list[Event] = field(default_factory=list)

    @property
    def cluster(self) -> Any:
        return self.pool.get("main")

    def inventory(self, app: str = "web") -> StoreInventory:
        return StoreInventory(self.store, app)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(tls=True, rollout_delay=0.2, seed=0) as sb:
        yield sb


@pytest.fixture
async def env(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Env]:
    events: list[Event] = []
    store = await StateStore.open(tmp_path / "state")
    config = pool_config({"main": sandbox.kubeconfig}, request_timeout=5)
    try:
        async with KubeClusterPool(config, None, events.append) as pool:
            yield Env(sandbox, pool, store, events)
    finally:
        await store.close()


Kubectl = Callable[..., Awaitable[str]]


def make_kubectl(kubeconfig: Path, cache: Path) -> Kubectl:
    """The real kubectl (fresh discovery cache), run in a thread: the sandbox serves from this loop."""
    binary = require_tool("kubectl")

    def run(args: tuple[str, ...], stdin: str | None, check: bool) -> str:
        cmd = [
            binary,
            f"--kubeconfig={kubeconfig}",
            f"--cache-dir={cache}",
            "--request-timeout=20s",
            *args,
        ]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc.stdout if proc.returncode == 0 else proc.stderr

    async def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
        return await asyncio.to_thread(run, args, stdin, check)

    return kubectl


@pytest.fixture
def kubectl(sandbox: Sandbox, tmp_path: Path) -> Kubectl:
    return make_kubectl(sandbox.kubeconfig, tmp_path / "kubectl-cache")


async def get_json(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(await kubectl("get", *args, "-o", "json"))


async def eventually(check: Callable[[], Any], within: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``check`` until it returns a truthy value (that value), or fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


def deployment(
    name: str, replicas: int = 2, namespace: str | None = None, **annotations: str
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = dict(annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "nginx:1.27",
                            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
                        }
                    ]
                },
            },
        },
    }


def configmap(name: str, namespace: str | None = None, **data: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": dict(data) or {"k": "v"},
    }


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
