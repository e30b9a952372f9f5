"""The list at 1000 apps, served by the real server and templates from an in-memory view.

Starting 1000 real apps takes minutes on a small machine, so the data comes from
:class:`gitopsd.testing.views.MemoryView` (the same protocol the daemon implements).
The first-paint time is measured by ``python -m bench.ui`` (``make bench``), not here.
"""

from __future__ import annotations

import html
import re
from dataclasses import replace
from typing import Any

import anyio
import httpx
import pytest

from gitopsd.core.models import Health, SyncStatus
from gitopsd.testing.views import MemoryView, serve

from .conftest import login, screenshot

pytestmark = pytest.mark.anyio

API_TOKEN = "ui-api-token-0123456789"


async def test_a_thousand_apps_complete_sorted_filterable_and_live(browser: Any) -> None:
    view = MemoryView.generated(1000)
    async with serve(view, api_token=API_TOKEN) as server:
        base = f"http://127.0.0.1:{server.port}"
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await login(page, base, API_TOKEN)
        rows = page.locator("#apps tbody tr")
        assert await rows.count() == 1000
        names = await page.eval_on_selector_all("#apps tbody tr", "rs => rs.map(r => r.dataset.app)")
        assert sorted(names) == [f"app-{i:04d}" for i in range(1000)]  # every app, once
        # worst first: the degraded apps lead, the healthy synced ones close the list
        first = await rows.nth(0).get_attribute("data-health")
        last = await rows.nth(999).get_attribute("data-health")
        assert (first, last) == ("Degraded", "Healthy")
        # counts at the top add up
        degraded = sum(1 for a in view.apps() if a.health == Health.DEGRADED)
        assert f"Degraded {degraded}" in " ".join((await page.inner_text("#counts")).split())
        await screenshot(page, "list")

        # filters: health, then a text search, then cleared by a count button
        await page.select_option("#f-health", "Degraded")
        assert await page.locator("#apps tbody tr:not([hidden])").count() == degraded
        assert "health=Degraded" in page.url
        await page.select_option("#f-health", "")
        await page.fill("#f-q", "app-0999")
        assert await page.locator("#apps tbody tr:not([hidden])").count() == 1
        assert (await page.inner_text("#shown")).startswith("1 of 1000")
        await page.fill("#f-q", "")
        await page.click(".count[data-value='OutOfSync']")
        out_of_sync = sum(1 for a in view.apps() if a.sync == SyncStatus.OUT_OF_SYNC)
        assert await page.locator("#apps tbody tr:not([hidden])").count() == out_of_sync
        await page.click(".count[data-value='OutOfSync']")
        assert await page.locator("#apps tbody tr:not([hidden])").count() == 1000

        # usable: the keyboard reaches an app's link and opens it
        await page.focus("#f-q")
        await page.keyboard.press("Tab")  # the no-JS Filter button is hidden: next is the first app
        focused = await page.evaluate("document.activeElement.textContent")
        assert focused == names[0]
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{base}/ui/apps/{names[0]}")
        await page.go_back()

        # live: a change in the daemon shows in its row without a reload
        await page.wait_for_selector("#live:not([hidden])")
        view.update("app-0500", health=Health.DEGRADED, last_message="went bad just now")
        cell = page.locator("tr[data-app='app-0500'] td.msg")
        with anyio.fail_after(10):
            while await cell.inner_text() != "went bad just now":
                await anyio.sleep(0.05)
        assert await page.locator("tr[data-app='app-0500']").get_attribute("data-health") == "Degraded"
        assert f"Degraded {degraded + 1}" in " ".join((await page.inner_text("#counts")).split())


async def test_phone_width_shows_every_app_without_sideways_scrolling(browser: Any) -> None:
    view = MemoryView.generated(30)
    async with serve(view, api_token=API_TOKEN) as server:
        base = f"http://127.0.0.1:{server.port}"
        page = await browser.new_page(viewport={"width": 390, "height": 844})
        await login(page, base, API_TOKEN)
        assert await page.locator("#apps tbody tr").count() == 30
        overflow = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        assert await page.evaluate(overflow) <= 0
        await page.goto(f"{base}/ui/apps/app-0003")  # out of sync: objects, a diff, events, history
        assert await page.locator("details.diff").count() == 1
        assert await page.evaluate(overflow) <= 0


async def test_a_stale_list_catches_up_when_its_stream_opens() -> None:
    """A change between rendering the list and opening its stream is sent at once (no browser)."""
    view = MemoryView.generated(50)
    async with serve(view, api_token=API_TOKEN) as server:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:
            await client.post("/ui/login", data={"token": API_TOKEN})
            page = (await client.get("/ui/")).text
            live = re.search(r'data-live="([^"]+)"', page)
            assert live is not None
            url = html.unescape(live.group(1))

            async def first_message() -> str:
                async with client.stream("GET", url) as stream:
                    assert stream.status_code == 200
                    with anyio.move_on_after(2):
                        async for line in stream.aiter_lines():
                            if line.startswith("event:"):
                                return line
                return ""

            assert await first_message() == ""  # up to date: nothing to send
            view.apps_by_name["app-0010"] = replace(view.apps_by_name["app-0010"], last_message="changed meanwhile")
            assert await first_message() == "event: rows"
