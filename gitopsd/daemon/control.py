"""The daemon's :class:`~gitopsd.plugin.interfaces.Control`: what chat plugins may ask of it.

Every action is logged with who asked; the actions are the same ones the API offers
(refresh, suspend, resume, approve, reject), so Slack, the CLI and the API share one path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from gitopsd.core.errors import GitopsdError
from gitopsd.core.state import Pin
from gitopsd.engine.windows import SyncWindows
from gitopsd.server.api import app_json
from gitopsd.server.view import AppsView

if TYPE_CHECKING:
    from gitopsd.engine.runner import AppRunner

log = structlog.get_logger("gitopsd.daemon")


class UnknownApp(GitopsdError):
    """A command named an app that is not in the config."""

    reason = "UnknownApp"


class _Running(Protocol):
    @property
    def runner(self) -> AppRunner: ...


class RunsApps(Protocol):
    """What the control needs of the daemon (:class:`gitopsd.daemon.supervisor.Daemon`)."""

    @property
    def apps(self) -> Mapping[str, _Running]: ...

    @property
    def windows(self) -> SyncWindows: ...


class DaemonControl:
    """Implements :class:`gitopsd.plugin.interfaces.Control` over a running daemon."""

    def __init__(self, daemon: RunsApps, view: AppsView):
        self.daemon = daemon
        self.view = view

    def _runner(self, app: str) -> AppRunner:
        running = self.daemon.apps.get(app)
        if running is None:
            known = ", ".join(sorted(self.daemon.apps)) or "none"
            raise UnknownApp(f"no app named {app!r} (apps: {known})")
        return running.runner

    def status(self, app: str | None = None) -> list[dict[str, Any]]:
        names = [app] if app is not None else sorted(self.daemon.apps)
        for name in names:
            self._runner(name)  # UnknownApp for a name not in the config
        return [app_json(self.view.app(name), []) for name in names]

    def open_windows(self) -> list[dict[str, Any]]:
        return self.view.open_windows()

    def approvers(self, app: str) -> list[str]:
        approval = self._runner(app).app.approval
        return list(approval.approvers) if approval is not None else []

    async def sync(self, app: str, *, by: str) -> str:
        runner = self._runner(app)
        log.info("sync requested", app=app, by=by)
        runner.trigger.fire("manual", force=True)
        return f"{app}: sync requested"

    async def suspend(self, app: str, *, by: str) -> str:
        runner = self._runner(app)
        log.info("suspend requested", app=app, by=by)
        await runner.set_pin(Pin(suspended=True, revision=runner.status.pinned_revision))
        return f"{app}: suspended"

    async def resume(self, app: str, *, by: str) -> str:
        runner = self._runner(app)
        log.info("resume requested", app=app, by=by)
        await runner.set_pin(Pin())
        runner.trigger.fire("resume", force=True)
        return f"{app}: resumed"

    async def decide(self, app: str, revision: str, *, approve: bool, by: str) -> str:
        runner = self._runner(app)
        log.info("approval decision", app=app, revision=revision, approve=approve, by=by)
        return await runner.decide(revision, approve=approve, by=by)
