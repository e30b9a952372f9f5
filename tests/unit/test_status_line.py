"""The systemd STATUS= line counts apps by sync status, failures and suspensions in one pass."""

from __future__ import annotations

from gitopsd.core.models import SyncStatus
from gitopsd.daemon.housekeeping import status_line
from gitopsd.engine.reconciler import AppStatus


def test_counts() -> None:
    statuses = [AppStatus(f"a{i}", "c", "ns") for i in range(6)]
    statuses[0].sync = statuses[1].sync = SyncStatus.SYNCED
    statuses[2].sync = SyncStatus.OUT_OF_SYNC
    statuses[2].last_result = statuses[3].last_result = "failed"
    statuses[4].suspended = True
    assert status_line(statuses) == "6 apps: 2 synced, 1 out of sync, 2 failing, 1 suspended"
    assert status_line(statuses[:2]) == "2 apps: 2 synced, 0 out of sync, 0 failing"
