"""The approval gate on a real state store, with a fake clock: request, supersede, decide, time out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gitopsd.core.events import Event
from gitopsd.core.models import ObjectRef
from gitopsd.core.state import StateStore
from gitopsd.engine.approvals import ApprovalError, ApprovalGate, summarize
from gitopsd.engine.protocols import ObjectDiff
from gitopsd.plugin.config import AppConfig

pytestmark = pytest.mark.anyio

APP = AppConfig.model_validate(
    {"name": "web", "cluster": "c", "source": {"type": "local"}, "approval": {"notifier": "ops", "timeout": "1h"}}
)
REV1 = "main@sha1:" + "1" * 40
REV2 = "main@sha1:" + "2" * 40


class Harness:
    def __init__(self, store: StateStore):
        self.now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.wakes = 0
        self.store = store

    def gate(self) -> ApprovalGate:
        return ApprovalGate(APP, self.store, self.emit, lambda: self.now, self.wake)

    def emit(self, cls: type[Event], *, data: dict[str, Any] | None = None, **fields: Any) -> None:
        self.events.append((cls.name, {**fields, "data": data or {}}))

    def wake(self) -> None:
        self.wakes += 1

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


async def details() -> dict[str, Any]:
    return {"commit": {"message": "bump", "author": "a <a@x>"}, "diff": {"created": ["v1/ConfigMap/web/x"]}}


@pytest.fixture
async def harness(tmp_path: Path):
    store = await StateStore.open(tmp_path)
    try:
        yield Harness(store)
    finally:
        await store.close()


async def test_request_then_approve_once(harness: Harness) -> None:
    gate = harness.gate()
    assert not await gate.admit(REV1, "", details)
    assert not await gate.admit(REV1, "", details)  # asked once per revision
    assert harness.names() == ["approval-requested"]
    assert harness.events[0][1]["data"]["commit"]["message"] == "bump"
    message = await gate.decide(REV1[:17], approve=True, by="slack:U1")  # a unique prefix will do
    assert "approved by slack:U1" in message
    again = await gate.decide(REV1, approve=True, by="slack:U2")
    assert "already approved by slack:U1" in again
    assert harness.names() == ["approval-requested", "approval-granted"]
    assert harness.wakes == 1
    assert await gate.admit(REV1, "", details)
    # survives a restart
    fresh = harness.gate()
    await fresh.load()
    assert await fresh.admit(REV1, "", details)


async def test_newer_revision_supersedes_and_old_one_cannot_be_approved(harness: Harness) -> None:
    gate = harness.gate()
    await gate.admit(REV1, "", details)
    await gate.admit(REV2, "", details)
    assert harness.names() == ["approval-requested", "approval-superseded", "approval-requested"]
    with pytest.raises(ApprovalError, match="not pending"):
        await gate.decide(REV1, approve=True, by="api")
    assert "approval-refused" in harness.names()
    assert not await gate.admit(REV2, "", details)


async def test_reject_and_timeout(harness: Harness) -> None:
    gate = harness.gate()
    await gate.admit(REV1, "", details)
    await gate.decide(REV1, approve=False, by="slack:U1")
    assert gate.record is not None and gate.record.status == "rejected"
    assert not await gate.admit(REV1, "", details)
    await gate.admit(REV2, "", details)
    harness.now += timedelta(hours=1, seconds=1)
    assert not await gate.admit(REV2, "", details)
    rejected = [fields for name, fields in harness.events if name == "approval-rejected"]
    assert [r["reason"] for r in rejected] == ["Rejected", "Timeout"]


async def test_a_failed_describe_leaves_no_request(harness: Harness) -> None:
    gate = harness.gate()

    async def broken() -> dict[str, Any]:
        raise RuntimeError("render failed")

    with pytest.raises(RuntimeError):
        await gate.admit(REV1, "", broken)
    assert await harness.store.approval("web") is None
    assert harness.events == []


def test_summary_masks_secrets_and_lists_deletions() -> None:
    secret = ObjectRef("", "v1", "Secret", "web", "db")
    cm = ObjectRef("", "v1", "ConfigMap", "web", "settings")
    diffs = [
        ObjectDiff(secret, "--- live\n+++ desired\n-  password: '*** (before)'\n+  password: '*** (after)'", True),
        ObjectDiff(cm, "--- live\n+++ desired\n-  greeting: hello\n+  greeting: hi", True),
    ]
    manifests = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}},
    ]
    old = ObjectRef("", "v1", "ConfigMap", "web", "old")
    summary = summarize(diffs, manifests, [secret, cm, old], "web", prune=True)
    assert summary["changed"] == [str(secret), str(cm)]
    assert summary["deleted"] == [str(old)]
    assert all("password" not in line for line in summary["lines"])
    assert "+  greeting: hi" in summary["lines"]
