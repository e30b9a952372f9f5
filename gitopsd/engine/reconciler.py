"""One reconcile of one app without the daemon: what ``gitopsd sync``/``diff`` and the testing kit run."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from gitopsd.core import events as ev
from gitopsd.core.events import Event
from gitopsd.core.models import Manifest, SyncResult
from gitopsd.core.state import StateStore
from gitopsd.engine import stages
from gitopsd.engine.protocols import ObjectDiff
from gitopsd.engine.runner import StateInventory
from gitopsd.plugin.config import Config, validate_config
from gitopsd.plugin.manager import PluginManager


async def render_app(config: Config, app_name: str, plugins: PluginManager, emit: Callable[[Event], None] | None = None) -> tuple[str, str, list[Manifest]]:
    """Poll, fetch and render one app; return (revision, artifact digest, manifests)."""
    app = config.apps[app_name]
    workspace = stages.Workspace.create(config, plugins, emit=emit)
    source = workspace.source_for(app)
    try:
        revision = await source.latest_revision()
        artifact = await stages.fetch(workspace, source, revision)
        return artifact.revision, artifact.digest, await stages.render(workspace, app, artifact)
    finally:
        await source.aclose()


async def sync_app(
    config: Config,
    app_name: str,
    plugins: PluginManager,
    *,
    emit: Callable[[Event], None] | None = None,
    dry_run: bool = False,
) -> SyncResult:
    """Fetch, render and sync one app into its cluster once, recording state like the daemon."""
    from gitopsd.engine.daemon import kube_cluster_pool

    emit = emit or (lambda event: None)
    app = config.apps[app_name]
    revision, digest, manifests = await render_app(config, app_name, plugins, emit)
    store = await StateStore.open(config.daemon.state_dir)
    try:
        started = time.monotonic()
        async with kube_cluster_pool(config, plugins, emit) as pool:
            result = await pool.get(app.cluster).sync(app, manifests, StateInventory(store, app.name), dry_run=dry_run)
        result = replace(result, revision=revision, duration=time.monotonic() - started, dry_run=dry_run)
        event = ev.SyncSucceeded if result.ok else ev.SyncFailed
        emit(
            event.make(
                app=app.name,
                cluster=app.cluster,
                revision=revision,
                reason="" if result.ok else "SyncFailed",
                message=result.message,
                data={"counts": result.counts, "duration": round(result.duration, 3), "dry_run": dry_run},
            )
        )
        if not dry_run:
            await store.record_sync(
                app.name,
                revision=revision,
                result="succeeded" if result.ok else "failed",
                message=result.message,
                counts=result.counts,
                applied_digest=digest if result.ok else None,
            )
        return result
    finally:
        await store.close()


async def diff_app(config: Config, app_name: str, plugins: PluginManager) -> list[ObjectDiff]:
    """Desired vs live for one app (objects that differ or are missing)."""
    from gitopsd.engine.daemon import kube_cluster_pool

    app = config.apps[app_name]
    _, _, manifests = await render_app(config, app_name, plugins)
    async with kube_cluster_pool(config, plugins, lambda event: None) as pool:
        return await pool.get(app.cluster).diff(app, manifests)


async def sync_once(
    raw: dict[str, Any],
    app_name: str,
    plugins: PluginManager,
    *,
    emit: Callable[[Event], None] | None = None,
    dry_run: bool = False,
    config_dir: Path | None = None,
) -> SyncResult:
    """:func:`sync_app` from a config given as a dict (the testing kit's ``run_app``)."""
    config = validate_config(raw, plugins.types, label="<test config>")
    if config_dir is not None:
        config = config.model_copy(update={"path": config_dir / "config.toml"})
    return await sync_app(config, app_name, plugins, emit=emit, dry_run=dry_run)
