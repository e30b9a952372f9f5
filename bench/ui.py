"""The web page at N apps: server render time and the browser's first paint (``make bench``).

    python -m bench.ui --apps 1000

The page is served by the daemon's real HTTP server and templates from an in-memory view
(:class:`gitopsd.testing.views.MemoryView`; starting 1000 real apps would measure the
engine, not the page), and loaded in the system's chromium through Playwright. Reported,
never asserted: ``bench/results/ui.{json,md}``. Target: first paint <= 1 s at 1000 apps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

from gitopsd.testing.views import MemoryView, serve

RESULTS = Path(__file__).resolve().parent / "results"
TOKEN = "bench-ui-token-0123456789"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


async def measure(apps: int, rounds: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    view = MemoryView.generated(apps)
    async with serve(view, api_token=TOKEN) as server:
        base = f"http://127.0.0.1:{server.port}"
        # server side: render time of the list, over HTTP with a session cookie
        async with httpx.AsyncClient(base_url=base) as client:
            await client.post("/ui/login", data={"token": TOKEN})
            renders, size = [], 0
            for _ in range(rounds):
                started = time.perf_counter()
                r = await client.get("/ui/")
                renders.append(time.perf_counter() - started)
                size = len(r.content)
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=ARGS)
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await page.goto(base + "/ui/login")
            await page.fill("#token", TOKEN)
            await page.press("#token", "Enter")
            await page.wait_for_url(base + "/ui/")
            paints, loads = [], []
            for _ in range(rounds):
                await page.goto(base + "/ui/", wait_until="load")
                timing = await page.evaluate(
                    """() => ({
                        fcp: (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime,
                        load: performance.getEntriesByType('navigation')[0].loadEventEnd,
                        rows: document.querySelectorAll('#apps tbody tr').length })"""
                )
                assert timing["rows"] == apps, timing
                paints.append(timing["fcp"] / 1000)
                loads.append(timing["load"] / 1000)
            # a filter keystroke over every row
            started = time.perf_counter()
            await page.fill("#f-q", "app-0999")
            await page.wait_for_function("document.getElementById('shown').textContent.startsWith('1 of')")
            filter_seconds = time.perf_counter() - started
            await browser.close()
    return {
        "apps": apps,
        "rounds": rounds,
        "html_bytes": size,
        "server_render_s_median": round(statistics.median(renders), 4),
        "first_contentful_paint_s_median": round(statistics.median(paints), 4),
        "first_contentful_paint_s_max": round(max(paints), 4),
        "load_event_s_median": round(statistics.median(loads), 4),
        "filter_keystroke_s": round(filter_seconds, 4),
        "target_first_paint_s": 1.0,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    result = anyio.run(measure, args.apps, args.rounds)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ui.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Web page at {result['apps']} apps",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| HTML size | {result['html_bytes'] / 1024:.0f} KiB |",
        f"| server render (median of {result['rounds']}) | {result['server_render_s_median'] * 1000:.0f} ms |",
        f"| first contentful paint (median / max) | {result['first_contentful_paint_s_median'] * 1000:.0f} ms / {result['first_contentful_paint_s_max'] * 1000:.0f} ms |",
        f"| load event (median) | {result['load_event_s_median'] * 1000:.0f} ms |",
        f"| filter keystroke over every row | {result['filter_keystroke_s'] * 1000:.0f} ms |",
        f"| target | first paint <= {result['target_first_paint_s']:.0f} s |",
    ]
    (RESULTS / "ui.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
