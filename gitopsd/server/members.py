"""``GET /api/v1/members`` and ``GET /api/v1/members/apps``: the coordination group as one API.

With ``[daemon.coordination]``, ``/api/v1/members`` lists the live members, the apps each
holds and their lease ages (as the coordination backend tells now), and
``/api/v1/members/apps`` answers for every app of every member: this member's own apps
locally, the others' by asking each member's ``advertise_url`` (``GET /api/v1/apps``, with
this member's read token: members share the config), all at once. Every app carries
``member``; a member that does not answer is listed under ``errors`` with its URL, so the
caller knows whom to ask. Without coordination both answer for this daemon alone
(``coordination: false``, ``members: []``, each app with ``member: ""``). Both need the
read (or API) token, like ``/api/v1/apps``.

The server reads the group through the view's optional ``members_report()`` (see
:class:`MembersView`; :class:`gitopsd.daemon.view.DaemonView` has it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from aiohttp import web

from gitopsd.core.version import user_agent

if TYPE_CHECKING:
    import httpx

FAN_OUT_TIMEOUT = 5.0


class MembersView(Protocol):
    """What the member routes need from the view (optional: a view without it has no coordination)."""

    async def members_report(self) -> dict[str, Any] | None:
        """The coordinator's report (``member``, ``members`` [{name, advertise_url, weight,
        lease_age, apps, self}], ``unowned``, ...), or None without coordination."""
        ...


def add_member_routes(
    app: web.Application,
    view: Any,
    local_apps: Callable[[], Awaitable[list[dict[str, Any]]]],
    authorize: Callable[[web.Request], web.Response | None],
    peer_token: Callable[[], str | None],
) -> None:
    """Register the two routes on the API's aiohttp application.

    ``local_apps()`` renders this member's apps as ``GET /api/v1/apps`` does; ``authorize``
    returns the refusal of a request without read access (or None); ``peer_token()`` is the
    token sent to the other members.
    """

    async def report() -> dict[str, Any] | None:
        method = getattr(view, "members_report", None)
        return await method() if method is not None else None

    async def members(request: web.Request) -> web.Response:
        refused = authorize(request)
        if refused is not None:
            return refused
        current = await report()
        if current is None:
            return web.json_response({"coordination": False, "members": []})
        return web.json_response({"coordination": True, **current})

    async def all_apps(request: web.Request) -> web.Response:
        refused = authorize(request)
        if refused is not None:
            return refused
        current = await report()
        if current is None:
            return web.json_response({"apps": [dict(a, member="") for a in await local_apps()], "errors": []})
        import httpx  # only for the fan-out to other members (coordination)

        apps = [dict(a, member=current["member"]) for a in await local_apps()]
        errors: list[dict[str, str]] = []

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

        token = peer_token()
        headers = {"User-Agent": user_agent(current["member"])}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with httpx.AsyncClient(timeout=FAN_OUT_TIMEOUT, headers=headers) as client:
            async with anyio.create_task_group() as tg:
                for m in current["members"]:
                    if not m["self"]:
                        tg.start_soon(ask, client, m)
        # An app reported by two members (a handover in progress): keep the lock holder's answer.
        holders = {app: m["name"] for m in current["members"] for app in m["apps"]}
        seen: dict[str, dict[str, Any]] = {}
        for a in apps:
            if a["name"] not in seen or holders.get(a["name"]) == a["member"]:
                seen[a["name"]] = a
        return web.json_response({"apps": [seen[n] for n in sorted(seen)], "errors": errors, "unowned": current["unowned"]})

    app.router.add_get("/api/v1/members", members)
    app.router.add_get("/api/v1/members/apps", all_apps)
