"""App dependencies (``depends_on``): an app syncs only once each dependency is ready.

A dependency is ready when it is Synced and Healthy at its current revision: its last
sync succeeded, the revision it applied is the one its source reports now, and it is not
suspended-while-failing. Until then the dependant does not sync; its status says
``waiting`` and names the dependencies it waits for. When a dependency's sync ends, its
dependants are woken at once (no polling).

Cycles and unknown names are rejected when the config is loaded
(:func:`gitopsd.plugin.config.dependency_cycle`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from gitopsd.core.models import Health, SyncStatus
from gitopsd.engine.triggers import Trigger
from gitopsd.plugin.config import AppConfig


class _Status(Protocol):
    @property
    def revision(self) -> str: ...

    @property
    def source_revision(self) -> str: ...

    @property
    def sync(self) -> SyncStatus: ...

    @property
    def health(self) -> Health: ...

    @property
    def last_result(self) -> str: ...

    @property
    def waiting(self) -> str: ...


class Dependant(Protocol):
    """What the gate reads of a runner (``gitopsd.engine.runner.AppRunner`` has it)."""

    @property
    def app(self) -> AppConfig: ...

    @property
    def status(self) -> _Status: ...

    @property
    def trigger(self) -> Trigger: ...


def not_ready(status: _Status) -> str:
    """Why a dependency is not ready ("" when it is)."""
    reasons = []
    if status.sync != SyncStatus.SYNCED:
        reasons.append(str(status.sync))
    if status.health != Health.HEALTHY:
        reasons.append(str(status.health))
    if status.last_result == "failed":
        reasons.append("last sync failed")
    if status.source_revision and status.revision != status.source_revision:
        reasons.append(f"not yet at {status.source_revision}")
    return ", ".join(reasons)


class DependencyGate:
    """Answers "may this app sync now?" from the other runners' statuses (the daemon holds them).

    Args:
        runners: Returns the running apps by name (read at each question, so reloads are seen).
    """

    def __init__(self, runners: Callable[[], Mapping[str, Dependant]]):
        self._runners = runners
        # Apps last told to wait: settled() looks only at them, so that with thousands of
        # apps and no depends_on a reconcile costs no walk over every app.
        self._waiting: set[str] = set()

    def waiting_for(self, app: AppConfig) -> str:
        """"" when every dependency of ``app`` is ready, else ``waiting for db (OutOfSync, Degraded)``."""
        if not app.depends_on:
            self._waiting.discard(app.name)
            return ""
        runners = self._runners()
        pending = []
        for name in app.depends_on:
            runner = runners.get(name)
            why = "not running" if runner is None else not_ready(runner.status)
            if why:
                pending.append(f"{name} ({why})")
        if pending:
            self._waiting.add(app.name)
        else:
            self._waiting.discard(app.name)
        return "waiting for " + ", ".join(pending) if pending else ""

    def settled(self, name: str) -> None:
        """``name`` finished a reconcile: wake the apps waiting for it (they check again)."""
        if not self._waiting:
            return
        runners = self._runners()
        for waiting in list(self._waiting):
            runner = runners.get(waiting)
            if runner is None:
                self._waiting.discard(waiting)
            elif runner.status.waiting and name in runner.app.depends_on:
                runner.trigger.fire(f"dependency {name}")
