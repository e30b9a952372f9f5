"""An :class:`gitopsd.server.view.AppsView` over in-memory data: the web page without a daemon.

The browser test of a 1000-app list and the page benchmark serve the real server and
templates from it, since starting 1000 real apps costs minutes on a small machine. Change
``apps`` (replace a summary) and call :meth:`MemoryView.changed` to push a live update.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import anyio

from gitopsd.core.events import Event, SyncSucceeded
from gitopsd.core.models import Health, HistoryEntry, ObjectRef, SyncStatus
from gitopsd.core.secrets import Secret
from gitopsd.plugin.config import DaemonConfig
from gitopsd.server.api import ApiServer
from gitopsd.server.auth import ApiSecrets
from gitopsd.server.metrics import Metrics
from gitopsd.server.view import (
    ACTIONS,
    ActionRefused,
    AppNotFound,
    AppSummary,
    AppsView,
    DiffView,
    ObjectView,
    PushTarget,
)


class MemoryView:
    """Apps held in a dict; actions are recorded in ``actions`` and change nothing else."""

    def __init__(self, apps: Sequence[AppSummary]):
        self.apps_by_name = {a.name: a for a in apps}
        self.actions: list[tuple[str, str, str]] = []
        self._changed = anyio.Event()

    @classmethod
    def generated(cls, count: int, now: datetime | None = None) -> MemoryView:
        """``count`` apps in a realistic mix: mostly Synced/Healthy, some drifting, degraded, failing."""
        now = now or datetime.now(UTC)
        apps = []
        for i in range(count):
            health, sync, result, message = Health.HEALTHY, SyncStatus.SYNCED, "succeeded", "5 unchanged"
            if i % 50 == 7:
                health, result, message = Health.DEGRADED, "failed", f"Deployment app-{i:04d}/api: 0/3 replicas available"
            elif i % 20 == 3:
                sync, message = SyncStatus.OUT_OF_SYNC, "1 object(s) differ: Deployment.apps api"
            elif i % 33 == 5:
                health = Health.PROGRESSING
            digest = f"{i:04x}" * 10
            apps.append(
                AppSummary(
                    name=f"app-{i:04d}",
                    cluster=f"cluster-{i % 3}",
                    namespace=f"team-{i % 17}",
                    source_type="git",
                    source_url=f"https://github.com/example/deploy-{i % 5}.git",
                    source_ref="main",
                    source_path=f"apps/app-{i:04d}",
                    revision=f"main@sha1:{digest}",
                    sync=sync,
                    health=health,
                    last_sync_time=now - timedelta(seconds=30 + i),
                    last_duration=0.05 + (i % 7) / 10,
                    last_result=result,
                    last_message=message,
                    last_counts={"unchanged": 5},
                    reconciles=1 + i % 4,
                )
            )
        return cls(apps)

    # -- AppsView ------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return False

    def not_ready(self) -> list[str]:
        return []

    def apps(self) -> list[AppSummary]:
        return [self.apps_by_name[n] for n in sorted(self.apps_by_name)]

    def app(self, name: str) -> AppSummary:
        try:
            return self.apps_by_name[name]
        except KeyError:
            raise AppNotFound(f"no app named {name!r}") from None

    async def history(self, name: str, limit: int) -> list[HistoryEntry]:
        app = self.app(name)
        if app.last_sync_time is None:
            return []
        return [HistoryEntry(app.last_sync_time, app.revision, app.last_result, app.last_message, app.last_counts, "start")]

    def events(self, name: str, limit: int) -> list[Event]:
        app = self.app(name)
        event: Event = SyncSucceeded.make(app=name, cluster=app.cluster, revision=app.revision, message=app.last_message)
        return [event][:limit]

    async def objects(self, name: str) -> list[ObjectView]:
        app = self.app(name)
        return [
            ObjectView(ObjectRef("", "v1", "ConfigMap", app.namespace, "settings"), 0, "early", Health.HEALTHY, "", SyncStatus.SYNCED, True),
            ObjectView(ObjectRef("apps", "v1", "Deployment", app.namespace, "api"), 0, "wave 0", app.health, "", app.sync, True),
        ]

    async def inventory(self, name: str) -> list[ObjectRef]:
        return [o.ref for o in await self.objects(name)]

    async def diff(self, name: str) -> list[DiffView]:
        app = self.app(name)
        if app.sync != SyncStatus.OUT_OF_SYNC:
            return []
        ref = ObjectRef("apps", "v1", "Deployment", app.namespace, "api")
        text = f"--- live/{ref}\n+++ desired/{ref}\n@@ -1,3 +1,3 @@\n spec:\n-  replicas: 5\n+  replicas: 3\n"
        return [DiffView(ref, text, True)]

    async def act(self, name: str, action: str, revision: str = "") -> str:
        self.app(name)
        if action not in ACTIONS:
            raise ActionRefused(f"no such action: {action}", status=404)
        self.actions.append((name, action, revision))
        return revision if action == "rollback" else ""

    async def wait_changed(self, timeout: float) -> None:
        changed = self._changed
        with anyio.move_on_after(timeout):
            await changed.wait()

    def push_targets(self) -> Sequence[PushTarget]:
        return [PushTarget(a.name, a.source_url, a.source_ref, "", a.source_path) for a in self.apps_by_name.values()]

    def fire(self, names: Sequence[str], reason: str) -> None:
        self.actions.extend((n, reason, "") for n in names)

    # -- for tests -----------------------------------------------------------------------

    def update(self, name: str, **changes: object) -> None:
        """Replace fields of one app and wake the live streams."""
        self.apps_by_name[name] = replace(self.apps_by_name[name], **changes)  # type: ignore[arg-type]
        self.changed()

    def changed(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


@contextlib.asynccontextmanager
async def serve(view: AppsView, *, api_token: str = "", read_token: str = "") -> AsyncIterator[ApiServer]:
    """The daemon's real HTTP server (API and web page) over ``view``, on a free loopback port."""
    settings = DaemonConfig().model_copy(update={"listen": "127.0.0.1:0"})  # port 0: any free one
    secrets = ApiSecrets(
        token=Secret(api_token) if api_token else None, read_token=Secret(read_token) if read_token else None
    )
    server = ApiServer(view, settings, secrets, Metrics())
    await server.start()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve)
            try:
                yield server
            finally:
                tg.cancel_scope.cancel()
    finally:
        await server.aclose()
