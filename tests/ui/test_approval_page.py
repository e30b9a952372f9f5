"""Change control on the web page: a revision waiting for approval is shown and decided there.

The app comes from :class:`gitopsd.testing.views.MemoryView` (the protocol the daemon
implements); the daemon's side of approve/reject (the gate, the state, the events) is
tested in tests/integration/notify/test_change_control.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gitopsd.testing.views import MemoryView, serve

from .conftest import login

pytestmark = pytest.mark.anyio

API_TOKEN = "ui-api-token-approval-0123"
WAITING = "main@sha1:" + "b" * 40


async def test_a_waiting_revision_is_approved_or_rejected_from_the_app_page(browser: Any) -> None:
    view = MemoryView.generated(2)
    app = view.apps()[0]
    view.apps_by_name[app.name] = replace(
        app, hold="awaiting-approval", hold_revision=WAITING, hold_message=f"{WAITING} waits for approval"
    )
    async with serve(view, api_token=API_TOKEN) as server:
        base = f"http://127.0.0.1:{server.port}"
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await login(page, base, API_TOKEN)
        await page.goto(f"{base}/ui/apps/{app.name}")
        assert "awaiting approval" in await page.inner_text("#hold")
        await page.click("#approve")
        assert "Approve" in await page.inner_text("h1")
        assert WAITING in await page.inner_text("section.confirm")
        await page.click("#confirm")
        await page.wait_for_url(f"{base}/ui/apps/{app.name}?done=approve")
        assert view.actions == [(app.name, "approve", WAITING)]

        await page.click("#reject")
        await page.click("#confirm")
        await page.wait_for_url(f"{base}/ui/apps/{app.name}?done=reject")
        assert view.actions[-1] == (app.name, "reject", WAITING)

        # No buttons for an app that waits for nothing.
        other = view.apps()[1].name
        await page.goto(f"{base}/ui/apps/{other}")
        assert await page.locator("#approve").count() == 0
