"""The long-lived tasks of one cluster (watches, late tracking, the SSH tunnel), in one anyio task group.

The group is entered when the cluster is opened and left when it is closed, so its tasks
live inside the task tree of whoever opened the cluster (the daemon's supervisor, a CLI
run, a test) and closing waits for every one of them. A task that crashes is logged with
its traceback and ends; it never cancels its siblings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

log = structlog.get_logger("gitopsd.kube")


class Background:
    """A task group for a cluster's background tasks. ``await open()`` before ``start``."""

    def __init__(self, owner: str):
        self.owner = owner
        self._tg: TaskGroup | None = None

    async def open(self) -> None:
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg

    def start(self, func: Callable[..., Awaitable[Any]], *args: Any, name: str) -> anyio.CancelScope:
        """Run ``func(*args)`` in the group; the returned scope cancels just this task."""
        if self._tg is None:
            raise RuntimeError(f"{self.owner}: background tasks started before open()")
        scope = anyio.CancelScope()

        async def guarded() -> None:
            with scope:
                try:
                    await func(*args)
                except Exception:
                    log.exception("background task crashed", task=name, owner=self.owner)

        self._tg.start_soon(guarded, name=name)
        return scope

    async def aclose(self) -> None:
        """Cancel every task and wait for them to end."""
        tg, self._tg = self._tg, None
        if tg is not None:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
