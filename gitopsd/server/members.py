"""``GET /api/v1/members`` and ``GET /api/v1/members/apps``: the coordination group as one API.

With ``[daemon.coordination]``, ``/api/v1/members`` lists the live members, the apps each
holds and their lease ages (as the coordination backend tells now), and
``/api/v1/members/apps`` answers for every app of every member: this member's own apps
locally, the others' by asking each member's ``advertise_url`` (``GET /api/v1/apps``), at
the same time. Every app carries ``member``; a member that does not answer is listed under
``errors`` with its URL, so the caller knows whom to ask. Without coordination both answer
for this daemon alone (``members: []``, each app with ``member: ""``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
from aiohttp import web

from gitopsd.core.version import user_agent

FAN_OUT_TIMEOUT = 5.0

AppJson = Callable[[Any], Awaitable[dict[str, Any]]]


def add_member_routes(app: web.Application, daemon: Any, app_json: AppJson) -> None:
    """Register the two routes on the API's aiohttp application.

    ``daemon`` is the running daemon (``coordinator``, ``apps``); ``app_json(runner)`` is
    how the API renders one app (the same as ``GET /api/v1/apps``).
    """

    async def local_apps() -> list[dict[str, Any]]:
        member = daemon.coordinator.member if daemon.coordinator is not None else ""
        return [dict(await app_json(daemon.apps[n].runner), member=member) for n in sorted(daemon.apps)]

    async def members(request: web.Request) -> web.Response:
        if daemon.coordinator is None:
            return web.json_response({"coordination": False, "members": []})
        return web.json_response({"coordination": True, **await daemon.coordinator.report()})

    async def all_apps(request: web.Request) -> web.Response:
        coordinator = daemon.coordinator
        if coordinator is None:
            return web.json_response({"apps": await local_apps(), "errors": []})
        report = await coordinator.report()
        apps = await local_apps()
        errors: list[dict[str, str]] = []
        others = [m for m in report["members"] if not m["self"]]

        async def ask(client: httpx.AsyncClient, m: dict[str, Any]) -> None:
            url = m["advertise_url"].rstrip("/")
            if not url:
                errors.append({"member": m["name"], "url": "", "error": "no advertise_url: ask that member directly"})
                return
            try:
                r = await client.get(f"{url}/api/v1/apps")
                r.raise_for_status()
                apps.extend(dict(a, member=m["name"]) for a in r.json().get("apps", []))
            except (httpx.HTTPError, ValueError) as exc:
                errors.append({"member": m["name"], "url": url, "error": f"{type(exc).__name__}: {exc}"})

        async with httpx.AsyncClient(timeout=FAN_OUT_TIMEOUT, headers={"User-Agent": user_agent(coordinator.member)}) as client:
            async with anyio.create_task_group() as tg:
                for m in others:
                    tg.start_soon(ask, client, m)
        # An app reported by two members (a handover in progress): keep the lock holder's answer.
        holders = {app: m["name"] for m in report["members"] for app in m["apps"]}
        seen: dict[str, dict[str, Any]] = {}
        for a in apps:
            if a["name"] not in seen or holders.get(a["name"]) == a["member"]:
                seen[a["name"]] = a
        return web.json_response({"apps": [seen[n] for n in sorted(seen)], "errors": errors, "unowned": report["unowned"]})

    app.router.add_get("/api/v1/members", members)
    app.router.add_get("/api/v1/members/apps", all_apps)
