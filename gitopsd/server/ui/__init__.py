"""The status web page, served by the daemon at ``/ui/`` (``/`` redirects there).

Server-side rendered (Jinja2, autoescaped) from :class:`gitopsd.server.view.AppsView`; a
small script of our own filters the list and applies live updates sent as server-sent
events (``/ui/events``). Every asset is packaged with gitopsd: no CDN, no build step.

Auth: a login form takes the read token (read-only) or the API token (actions too). The
browser gets a random session id in an ``HttpOnly; SameSite=Strict`` cookie; the token
never leaves the server. Actions are POST forms that carry the session's CSRF token, and
their ``Origin`` must be this server; each goes through a confirmation page.

Routes: ``GET /ui/``, ``GET|POST /ui/login``, ``POST /ui/logout``, ``GET /ui/apps/{name}``,
``GET /ui/apps/{name}/confirm?action=...``, ``POST /ui/apps/{name}/action``,
``GET /ui/events[?app=NAME]``, ``GET /ui/static/...``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode

import structlog
from aiohttp import web

from gitopsd.core.models import Health, SyncStatus
from gitopsd.server.auth import Access, ApiSecrets, bearer
from gitopsd.server.ui.forge import commit_url, short_revision
from gitopsd.server.ui.sessions import COOKIE, Session, Sessions
from gitopsd.server.view import ACTIONS, AppNotFound, AppsView

if TYPE_CHECKING:
    import jinja2

    from gitopsd.server.viewdata import AppSummary


class UIHost(Protocol):
    """What the web page uses of the HTTP server it is mounted on (:class:`gitopsd.server.api.ApiServer`)."""

    view: AppsView
    secrets: ApiSecrets

    async def perform(self, name: str, action: str, revision: str, remote: str) -> web.Response:
        """Do an authorised action, as the API does."""
        ...

log = structlog.get_logger("gitopsd.server.ui")

HERE = Path(__file__).resolve().parent
EVENTS_SHOWN = 30
HISTORY_SHOWN = 20
LIVE_POLL = 0.5
"""Seconds between checks for changes that came with no event (the SSE stream's cadence)."""
HEARTBEAT = 15.0
GONE_AFTER = 5.0
"""Seconds an app may be missing (restarted by a reload) before its page is told to reload."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin (not no-referrer): browsers then still send Origin on our POSTs.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_SYNC_ORDER = {SyncStatus.OUT_OF_SYNC: 0, SyncStatus.UNKNOWN: 1, SyncStatus.SYNCED: 2}

ACTION_TEXT = {
    "refresh": "Poll the source now and apply what changed.",
    "sync": "Apply the desired state now, every object, even if nothing seems to differ.",
    "suspend": "Stop reconciling this app until it is resumed (survives restarts).",
    "resume": "Reconcile this app again, following its source.",
    "rollback": "Apply this earlier revision and stay on it until the app is resumed.",
    "approve": "Apply this revision, which waits for approval (change control).",
    "reject": "Keep the app at the revision it has; this one is not applied.",
}


def worst_first(app: AppSummary) -> tuple[int, int, int, int, str]:
    """Sort key: worst health, then out of sync, then failed, then suspended; by name."""
    return (
        -app.health.rank,
        _SYNC_ORDER.get(app.sync, 1),
        0 if app.last_result == "failed" else 1,
        0 if app.suspended else 1,
        app.name,
    )


def ago(when: datetime | None, now: datetime | None = None) -> str:
    """``42s ago``, ``5m ago``, ``3h ago``, ``2d ago``; "" for None."""
    if when is None:
        return ""
    seconds = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def duration(seconds: float) -> str:
    if seconds <= 0:
        return ""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def short_url(url: str) -> str:
    """A source URL without scheme, credentials or ``.git``, for a narrow column."""
    rest = url.split("://", 1)[-1]
    rest = rest.rpartition("@")[2] if "@" in rest.split("/", 1)[0] else rest
    return rest.removesuffix(".git")


def counts(apps: Iterable[AppSummary]) -> dict[str, Counter[str]]:
    """How many apps per sync state, health and flag."""
    out: dict[str, Counter[str]] = {"sync": Counter(), "health": Counter(), "flags": Counter()}
    for app in apps:
        out["sync"][str(app.sync)] += 1
        out["health"][str(app.health)] += 1
        if app.suspended:
            out["flags"]["suspended"] += 1
        if app.last_result == "failed":
            out["flags"]["failed"] += 1
    return out


def matches(app: AppSummary, sync: str, health: str, cluster: str, text: str) -> bool:
    """The list's filter (the page's script applies the same rules in the browser)."""
    if sync and str(app.sync) != sync:
        return False
    if health and str(app.health) != health:
        return False
    if cluster and app.cluster != cluster:
        return False
    if text:
        hay = " ".join((app.name, app.namespace, app.cluster, app.source_url, app.revision, app.last_message)).lower()
        return all(word in hay for word in text.lower().split())
    return True


def row_key(app: AppSummary) -> tuple[Any, ...]:
    """What a list row shows: a change here (and only here) is sent to open lists."""
    return (
        app.cluster, app.namespace, app.source_type, app.source_url, app.source_ref, app.revision,
        app.sync, app.health, app.suspended, app.pinned_revision, app.last_sync_time,
        app.last_duration, app.last_result, app.last_message,
    )


def list_digest(keys: dict[str, tuple[Any, ...]]) -> str:
    """A short digest of every row, so a live stream can tell that a page is already stale."""
    text = repr(sorted(keys.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _environment() -> jinja2.Environment:
    import jinja2  # on the first page view, not at the daemon's start

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(ago=ago, duration=duration, short_revision=short_revision, short_url=short_url)
    env.globals.update(commit_url=commit_url, HEALTHS=[str(h) for h in Health], SYNCS=[str(s) for s in SyncStatus])
    return env


class WebUI:
    """The web page's routes, on the API server (its tokens, view and metrics)."""

    def __init__(self, server: UIHost):
        self.server = server
        self.sessions = Sessions()

    @cached_property
    def env(self) -> jinja2.Environment:
        """The page templates' environment, built on the first page view."""
        return _environment()

    @property
    def view(self) -> AppsView:
        return self.server.view

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self.root)
        r.add_get("/ui", self.root)
        r.add_get("/ui/", self.list_page)
        r.add_get("/ui/login", self.login_page)
        r.add_post("/ui/login", self.login)
        r.add_post("/ui/logout", self.logout)
        r.add_get("/ui/events", self.events)
        r.add_get("/ui/apps/{name}", self.app_page)
        r.add_get("/ui/apps/{name}/confirm", self.confirm_page)
        r.add_post("/ui/apps/{name}/action", self.action)
        r.add_static("/ui/static/", HERE / "static", append_version=False)

    # -- plumbing ------------------------------------------------------------------------

    def render(self, template: str, status: int = 200, **context: Any) -> web.Response:
        body = self.env.get_template(template).render(**context)
        return web.Response(text=body, status=status, content_type="text/html", headers=SECURITY_HEADERS)

    def _session(self, request: web.Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE), self.server.secrets.fingerprint)

    def _login_redirect(self, request: web.Request) -> web.HTTPSeeOther:
        return web.HTTPSeeOther("/ui/login?" + urlencode({"next": request.path_qs}), headers=SECURITY_HEADERS)

    def _require(self, request: web.Request) -> Session:
        session = self._session(request)
        if session is None:
            raise self._login_redirect(request)
        return session

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
        """A POST must come from a page of this server (the CSRF token is checked as well)."""
        origin = request.headers.get("Origin")
        if origin is None:  # non-browser clients; browsers always send Origin on POST
            return True
        return origin == f"{request.scheme}://{request.host}"

    def _base(self, request: web.Request, session: Session | None) -> dict[str, Any]:
        return {"session": session, "path": request.path}

    # -- pages ---------------------------------------------------------------------------

    async def root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui/")

    async def login_page(self, request: web.Request, error: str = "", status: int = 200) -> web.Response:
        secrets = self.server.secrets
        enabled = secrets.token is not None or secrets.read_token is not None
        nxt = request.query.get("next", "/ui/")
        return self.render(
            "login.html", status=status, session=None, path=request.path, error=error, enabled=enabled,
            next=nxt if nxt.startswith("/ui/") else "/ui/",
        )

    async def login(self, request: web.Request) -> web.StreamResponse:
        if not self._same_origin(request):
            return await self.login_page(request, "This form must be sent from this server's own page.", 403)
        form = await request.post()
        token = str(form.get("token", ""))
        access = self.server.secrets.access(token) if token else None
        if access is None:
            log.warning("web login refused", remote=request.remote)
            return await self.login_page(request, "That token is not valid.", 401)
        session_id = self.sessions.create(access, self.server.secrets.fingerprint(access))
        nxt = str(form.get("next", "/ui/"))
        response = web.HTTPSeeOther(nxt if nxt.startswith("/ui/") and "//" not in nxt else "/ui/")
        response.set_cookie(
            COOKIE, session_id, path="/ui", httponly=True, samesite="Strict", secure=request.secure, max_age=None
        )
        log.info("web login", access=access.name.lower(), remote=request.remote)
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        form = await request.post()
        if session is not None and (not self._same_origin(request) or not session.csrf_ok(str(form.get("csrf", "")))):
            return self.render("error.html", 403, session=session, path=request.path, message="Logout refused: stale form.")
        self.sessions.drop(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/ui/login")
        response.del_cookie(COOKIE, path="/ui")
        raise response

    async def list_page(self, request: web.Request) -> web.Response:
        session = self._require(request)
        q = request.query
        apps = sorted(self.view.apps(), key=worst_first)
        wanted = (q.get("sync", ""), q.get("health", ""), q.get("cluster", ""), q.get("q", "").strip())
        shown = [a for a in apps if matches(a, *wanted)]
        return self.render(
            "list.html",
            **self._base(request, session),
            apps=shown,
            total=len(apps),
            counts=counts(apps),
            clusters=sorted({a.cluster for a in apps}),
            filters=dict(zip(("sync", "health", "cluster", "q"), wanted, strict=True)),
            digest=list_digest({a.name: row_key(a) for a in apps}),
        )

    async def _app_context(self, name: str) -> dict[str, Any]:
        app = self.view.app(name)
        objects = await self.view.objects(name)
        out_of_sync = app.sync != SyncStatus.SYNCED or any(o.sync == SyncStatus.OUT_OF_SYNC for o in objects)
        diffs = []
        diff_error = ""
        if out_of_sync and objects:
            try:
                diffs = await self.view.diff(name)
            except Exception as exc:  # an unreachable cluster must not break the page
                diff_error = str(exc)
        groups: dict[str, list[Any]] = {}
        for obj in objects:
            groups.setdefault(obj.step or "objects", []).append(obj)
        history = await self.view.history(name, HISTORY_SHOWN)
        return {
            "app": app,
            "groups": groups,
            "objects": objects,
            "diffs": diffs,
            "diff_error": diff_error,
            "events": self.view.events(name, EVENTS_SHOWN),
            "history": history,
            "inventory": await self.view.inventory(name),
        }

    async def app_page(self, request: web.Request) -> web.Response:
        session = self._require(request)
        name = request.match_info["name"]
        try:
            context = await self._app_context(name)
        except AppNotFound as exc:
            return self.render("error.html", 404, **self._base(request, session), message=str(exc))
        template = "app_main.html" if request.query.get("partial") else "app.html"
        done = request.query.get("done", "")
        return self.render(template, **self._base(request, session), **context, done=done if done in ACTIONS else "")

    async def confirm_page(self, request: web.Request) -> web.Response:
        session = self._require(request)
        name = request.match_info["name"]
        action = request.query.get("action", "")
        if not session.can_write:
            return self.render("error.html", 403, **self._base(request, session),
                               message="Read-only session: log in with the API token to change anything.")
        if action not in ACTIONS:
            return self.render("error.html", 404, **self._base(request, session), message=f"No such action: {action}")
        try:
            app = self.view.app(name)
        except AppNotFound as exc:
            return self.render("error.html", 404, **self._base(request, session), message=str(exc))
        return self.render(
            "confirm.html", **self._base(request, session), app=app, action=action,
            revision=request.query.get("revision", ""), explanation=ACTION_TEXT[action],
        )

    async def action(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        name = request.match_info["name"]
        form = await request.post()
        if session is None:
            return self.render("error.html", 401, session=None, path=request.path, message="Log in first.")
        refusal = ""
        if not self._same_origin(request) or not session.csrf_ok(str(form.get("csrf", ""))):
            refusal = "Refused: the form did not come from this page (CSRF check). Reload and try again."
        elif not session.can_write:
            refusal = "Read-only session: log in with the API token to change anything."
        elif self.view.stopping:
            refusal = "gitopsd is shutting down."
        if refusal:
            log.warning("web action refused", app=name, remote=request.remote, reason=refusal)
            return self.render("error.html", 403, **self._base(request, session), message=refusal)
        action = str(form.get("action", ""))
        result = await self.server.perform(name, action, str(form.get("revision", "")), request.remote or "")
        if result.status >= 400:
            message = json.loads(result.text or "{}").get("error", "refused")
            return self.render("error.html", result.status, **self._base(request, session), message=message)
        raise web.HTTPSeeOther(f"/ui/apps/{name}?" + urlencode({"done": action}))

    # -- live updates --------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``rows`` (changed list rows, as HTML) or ``changed`` (app page)."""
        session = self._session(request) or _from_bearer(self, request)
        if session is None:
            return web.json_response({"error": "log in first"}, status=401)
        name = request.query.get("app", "")
        try:
            last: Any = await self._snapshot(name)
        except AppNotFound as exc:
            return web.json_response({"error": str(exc)}, status=404)
        response = web.StreamResponse(
            headers={**SECURITY_HEADERS, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        row = self.env.get_template("_row.html").module
        head = self.env.get_template("_counts.html").module
        quiet = missing = 0.0

        def rows_message(changed: list[AppSummary], current: dict[str, Any]) -> bytes:
            payload = {
                "rows": {a.name: str(row.row(a)) for a in changed},  # type: ignore[attr-defined]
                "counts": str(head.counts_bar(counts(a for _, a in current.values()), len(current))),  # type: ignore[attr-defined]
            }
            return b"event: rows\ndata: " + json.dumps(payload).encode() + b"\n\n"

        page_digest = request.query.get("digest", "")
        if not name and page_digest and page_digest != list_digest({n: k for n, (k, _) in last.items()}):
            # The page was rendered before a change the stream will not see: send every row once.
            await response.write(rows_message([a for _, a in last.values()], last))
        while not self.view.stopping:
            await self.view.wait_changed(LIVE_POLL)
            cookie = request.cookies.get(COOKIE)
            if cookie and self.sessions.get(cookie, self.server.secrets.fingerprint) is None:
                await response.write(b"event: logout\ndata: {}\n\n")
                break
            try:
                current = await self._snapshot(name)
                missing = 0.0
            except AppNotFound:
                # A reload restarts a changed app: give it a moment before calling it gone.
                missing += LIVE_POLL
                if missing < GONE_AFTER:
                    continue
                await response.write(b"event: reload\ndata: {}\n\n")
                break
            message = b""
            if name:
                if current != last:
                    message = b"event: changed\ndata: {}\n\n"
            elif set(current) != set(last):
                message = b"event: reload\ndata: {}\n\n"
            else:
                changed = [a for n, (key, a) in current.items() if n not in last or last[n][0] != key]
                if changed:
                    message = rows_message(changed, current)
            last = current
            quiet = 0.0 if message else quiet + LIVE_POLL
            if not message and quiet >= HEARTBEAT:
                message, quiet = b": keep-alive\n\n", 0.0
            if message:
                try:
                    await response.write(message)
                except (ConnectionResetError, RuntimeError):
                    break
        return response

    async def _snapshot(self, name: str) -> Any:
        if not name:
            return {a.name: (row_key(a), a) for a in self.view.apps()}
        objects = await self.view.objects(name)
        events = self.view.events(name, 1)
        return (self.view.app(name), tuple((o.ref, o.sync, o.health) for o in objects), events[0].id if events else "")


def _from_bearer(ui: WebUI, request: web.Request) -> Session | None:
    """Scripts may read the stream with a bearer token instead of a session cookie."""
    given = bearer(request)
    access = ui.server.secrets.access(given) if given else None
    return Session(access, "", "", 0.0) if access is not None else None


__all__ = ["Access", "WebUI"]
