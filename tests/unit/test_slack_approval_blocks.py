"""Approval request messages stay within Block Kit's limits; decided ones lose their buttons."""

from __future__ import annotations

import json

from gitopsd.core.events import ApprovalGranted, ApprovalRequested, ApprovalSuperseded
from gitopsd_plugins._slack_blocks import (
    APPROVE_ACTION,
    REJECT_ACTION,
    approval_blocks,
    approval_request,
    decided,
)

REV = "main@sha1:" + "a" * 40


def request(**data: object) -> ApprovalRequested:
    return ApprovalRequested.make(app="web" * 60, cluster="prod", revision=REV, message="waits", data=data)


def test_a_huge_request_fits_block_kit() -> None:
    event = request(
        namespace="web",
        source_url="https://github.com/example/deploy.git",
        commit={"message": "x" * 5000, "author": "A <a@example.com>"},
        diff={
            "created": [f"ConfigMap web/cm-{i}" for i in range(500)],
            "changed": [f"Deployment web/d-{i}" for i in range(500)],
            "deleted": [],
            "lines": ["+" + "y" * 3000 for _ in range(12)],
            "more_lines": 40,
        },
        expires="2026-11-30T16:00:00+00:00",
    )
    payload = approval_request(event)
    blocks = payload["blocks"]
    assert len(blocks) <= 50 and len(payload["text"]) < 3000
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert len(block.get("text", {}).get("text", "")) < 3000
            assert len(block.get("fields", [])) <= 10
            assert all(len(f["text"]) <= 2000 for f in block.get("fields", []))
    actions = blocks[-1]
    assert [e["action_id"] for e in actions["elements"]] == [APPROVE_ACTION, REJECT_ACTION]
    assert all(len(e["value"]) <= 2000 for e in actions["elements"])
    assert json.loads(actions["elements"][0]["value"]) == {"app": "web" * 60, "revision": REV}
    text = json.dumps(blocks)
    assert "and 490 more" in text and "40 more line(s)" in text
    assert "<https://github.com/example/deploy/commit/" + "a" * 40 in text


def test_decided_messages_lose_their_buttons() -> None:
    blocks = approval_blocks(request(diff={"created": ["ConfigMap web/x"], "changed": [], "deleted": [], "lines": []}))
    granted = decided(blocks, ApprovalGranted.make(app="web", revision=REV, data={"by": "slack:U0ADMIN"}))
    assert not any(b["type"] == "actions" for b in granted["blocks"])
    assert "Approved by <@U0ADMIN>" in json.dumps(granted["blocks"])
    superseded = decided(blocks, ApprovalSuperseded.make(app="web", revision=REV, data={"by": "main@sha1:" + "b" * 40}))
    assert "Superseded by `main@bbbbbbb`" in json.dumps(superseded["blocks"])
