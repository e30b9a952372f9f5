"""Browser tests of the web page: Playwright driving the system's chromium (never a downloaded browser)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "docs" / "images"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless chromium (missing: skipped locally, a failure with CI=true)."""
    executable = require_tool("chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def login(page: Any, base: str, token: str) -> None:
    """Open the page, get sent to the login form, log in."""
    await page.goto(base + "/")
    assert "/ui/login" in page.url
    await page.fill("#token", token)
    await page.press("#token", "Enter")
    await page.wait_for_url(base + "/ui/")


async def screenshot(page: Any, name: str, *, full_page: bool = False) -> None:
    """Take NAME-light.png and NAME-dark.png of the page as it is.

    They go to docs/images/ (the README shows them) only with GITOPSD_UPDATE_SCREENSHOTS=1,
    so an ordinary test run leaves the work tree clean.
    """
    target = IMAGES if os.environ.get("GITOPSD_UPDATE_SCREENSHOTS") else Path(tempfile.mkdtemp(prefix="gitopsd-shots-"))
    target.mkdir(parents=True, exist_ok=True)
    for scheme in ("light", "dark"):
        await page.emulate_media(color_scheme=scheme)
        path = target / f"{name}-{scheme}.png"
        await page.screenshot(path=str(path), full_page=full_page)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    await page.emulate_media(color_scheme="light")
