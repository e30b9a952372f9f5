"""Operational helpers of the daemon: the config-file watcher and systemd status lines.

Kept out of :mod:`gitopsd.daemon.supervisor` so the supervisor stays small.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from gitopsd.core.models import SyncStatus
from gitopsd.engine.runner import AppStatus

log = structlog.get_logger("gitopsd.daemon")


def status_line(statuses: list[AppStatus]) -> str:
    """The ``STATUS=`` text systemd shows: app counts and failures."""
    synced = out = failing = suspended = 0
    for s in statuses:  # one pass: at 10,000 apps this runs every 5 s
        if s.sync == SyncStatus.SYNCED:
            synced += 1
        elif s.sync == SyncStatus.OUT_OF_SYNC:
            out += 1
        if s.last_result == "failed":
            failing += 1
        if s.suspended:
            suspended += 1
    text = f"{len(statuses)} apps: {synced} synced, {out} out of sync, {failing} failing"
    return text + (f", {suspended} suspended" if suspended else "")


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes ("" when it cannot be read)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


async def watch_config_file(path: Path, on_change: Callable[[], Awaitable[None]], *, debounce_ms: int = 200) -> None:
    """Call ``on_change`` whenever ``path``'s content changes, until cancelled (``path`` absolute).

    The directory is watched (editors and config management replace files by rename),
    and a change that leaves the bytes as they were (touch, rewrite) is ignored.
    """
    import watchfiles  # here: the watcher starts once the daemon is ready

    last = file_digest(path)
    # rust_timeout: a cancelled awatch only notices after it; the default (5 s) would delay reload and shutdown
    async for changes in watchfiles.awatch(path.parent, debounce=debounce_ms, step=50, recursive=False, rust_timeout=500):
        if not any(Path(p).name == path.name for _, p in changes):
            continue
        digest = file_digest(path)
        if not digest or digest == last:
            continue
        last = digest
        log.info("config file changed: reloading", path=str(path))
        await on_change()
