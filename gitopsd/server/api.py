"""The HTTP API (aiohttp): health, readiness, metrics, app status and actions, push webhooks.

Routes (JSON unless noted):

- ``GET /api/v1/version``: the gitopsd version (no token needed).
- ``GET /healthz``: 200 while the process and its event loop run (503 while stopping).
- ``GET /readyz``: 200 once the daemon has started (config loaded, state open, every app's
  runner made; docs/operations.md, "Start-up and readiness"); else 503 with the reasons
  (``starting``, ``stopping``).
- ``GET /metrics``: Prometheus text format (open unless ``daemon.metrics_require_token``).
- ``GET /api/v1/apps``, ``GET /api/v1/apps/{name}``: status and the last 20 history entries;
  need ``Authorization: Bearer <token>`` with the read token (``daemon.read_token_file``) or
  the API token (``daemon.api_token_file``); with neither configured they are refused (403).
- ``POST /api/v1/apps/{name}/refresh | sync | suspend | resume | rollback``: need the API
  token (the read token gets 403); without a configured API token they are refused (403),
  never open. ``rollback`` takes ``{"revision": "..."}``, a revision from the app's history
  (a unique prefix will do).
- ``/ui/``: the status web page (:mod:`gitopsd.server.ui`), unless ``daemon.ui = false``;
  ``/`` redirects there.
- ``POST /api/v1/apps/{name}/approval/approve | reject`` with ``{"revision": "..."}``:
  decide an app's pending approval (API token); 409 when it is not the pending revision.
  ``GET /api/v1/apps`` also lists the sync windows open now (``windows``).
- ``POST /hooks/github | gitlab | gitea``: push webhooks (see :mod:`gitopsd.server.push`);
  404 when the provider has no secret configured. The apps whose files the push changed
  are refreshed at once, the other apps of the repository a second later.

Bodies over ``daemon.max_body_bytes`` get 413; unknown apps and routes 404 with
``{"error": "..."}``. Secrets never appear in responses or logs.

The server knows the daemon only through :class:`gitopsd.server.view.AppsView`.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from aiohttp import web
from anyio.abc import TaskGroup

from gitopsd.core.errors import ConfigError
from gitopsd.core.models import HistoryEntry
from gitopsd.core.version import __version__
from gitopsd.plugin.config import DaemonConfig
from gitopsd.server.auth import Access, ApiSecrets, bearer
from gitopsd.server.members import add_member_routes
from gitopsd.server.metrics import CONTENT_TYPE, Metrics
from gitopsd.server.view import ACTIONS, ActionRefused, AppNotFound, AppsView

if TYPE_CHECKING:
    from gitopsd.server.push import DeliveryLog
    from gitopsd.server.viewdata import AppSummary

log = structlog.get_logger("gitopsd.server.api")

HISTORY_SHOWN = 20
TOUCHED_FIRST_DELAY = 1.0
"""Seconds between refreshing the apps a push touched and the other apps of its repository."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def history_json(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "time": entry.time.isoformat(),
        "revision": entry.revision,
        "result": entry.result,
        "message": entry.message,
        "counts": dict(entry.counts),
        "trigger": entry.trigger,
    }


def app_json(s: AppSummary, history: list[HistoryEntry]) -> dict[str, Any]:
    """The API's view of one app."""
    return {
        "name": s.name,
        "cluster": s.cluster,
        "namespace": s.namespace,
        "source": {"type": s.source_type, "url": s.source_url, "ref": s.source_ref},
        "revision": s.revision,
        "sync": str(s.sync),
        "health": str(s.health),
        "suspended": s.suspended,
        "pinned_revision": s.pinned_revision,
        "last_sync": {
            "time": _iso(s.last_sync_time),
            "result": s.last_result,
            "message": s.last_message,
            "counts": dict(s.last_counts),
            "duration": round(s.last_duration, 3),
        },
        "reconciles": s.reconciles,
        "waiting": s.waiting,
        "hold": {"state": s.hold, "revision": s.hold_revision, "message": s.hold_message, "until": _iso(s.hold_until)},
        "history": [history_json(h) for h in history],
        "appset": s.appset,  # the [appsets.*] that generated it, or ""
    }


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class ApiServer:
    """The daemon's HTTP server. ``await start()`` binds ``daemon.listen``; ``await aclose()`` stops it.

    Args:
        view: What the server reads and triggers (the daemon, through a narrow protocol).
        settings: The ``[daemon]`` table (listen address, body limit, UI and metrics switches).
        secrets: The tokens and webhook secrets; replaced on a config reload.
        metrics: Where requests and webhooks are counted, and what ``/metrics`` shows.
    """

    def __init__(self, view: AppsView, settings: DaemonConfig, secrets: ApiSecrets, metrics: Metrics):
        self.view = view
        self.settings = settings
        self.secrets = secrets
        self.metrics = metrics
        self._runner: web.AppRunner | None = None
        self._tg: TaskGroup | None = None
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes, middlewares=[self._middleware])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_get("/api/v1/version", self.version)
        app.router.add_get("/api/v1/apps", self.list_apps)
        app.router.add_get("/api/v1/apps/{name}", self.get_app)
        app.router.add_post("/api/v1/apps/{name}/{action}", self.app_action)
        app.router.add_post("/api/v1/apps/{name}/approval/{decision}", self.approval)
        app.router.add_post("/hooks/{provider}", self.hook)
        if self.settings.ui:
            from gitopsd.server.ui import WebUI

            WebUI(self).register(app)
        # coordination (server/members.py): /api/v1/members and every member's apps
        add_member_routes(app, self.view, self._apps_json, lambda r: self._authorize(r, Access.READ), self._peer_token)
        return app

    async def start(self) -> None:
        host, port = parse_listen(self.settings.listen)
        self._runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigError([f"daemon.listen: cannot listen on {host}:{port}: {exc.strerror}"]) from None
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info(
            "API listening",
            address=f"{host}:{self.port}",
            mutating_calls="enabled" if self.secrets.token else "disabled",
            reads="enabled" if self.secrets.token or self.secrets.read_token else "disabled",
            ui=self.settings.ui,
        )

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- plumbing ------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        limit = self.settings.max_body_bytes
        try:
            if request.content_length is not None and request.content_length > limit:
                response: web.StreamResponse = _error(413, f"request body larger than {limit} bytes")
            else:
                response = await handler(request)
        except web.HTTPRequestEntityTooLarge:
            response = _error(413, f"request body larger than {limit} bytes")
        except web.HTTPNotFound:
            response = _error(404, f"no such endpoint: {request.method} {request.path}")
        except web.HTTPMethodNotAllowed as exc:
            response = _error(405, f"method {request.method} not allowed", allowed=sorted(exc.allowed_methods))
        except web.HTTPRedirection as exc:
            self.metrics.api_request(route, exc.status)
            raise
        except web.HTTPException as exc:
            response = _error(exc.status, exc.reason)
        self.metrics.api_request(route, response.status)
        return response

    def _authorize(self, request: web.Request, needed: Access = Access.WRITE) -> web.Response | None:
        """None when the request's bearer token grants ``needed``; else the refusal to send."""
        if needed is Access.WRITE and self.secrets.token is None:
            return _error(403, "mutating API calls are disabled: set daemon.api_token_file")
        if needed is Access.READ and self.secrets.token is None and self.secrets.read_token is None:
            return _error(403, "reading the API needs a token: set daemon.read_token_file or daemon.api_token_file")
        given = bearer(request)
        granted = self.secrets.access(given) if given is not None else None
        if given is None:
            response = _error(401, "missing bearer token")
        elif granted is None:
            response = _error(401, "invalid bearer token")
        elif granted < needed:
            return _error(403, "the read token cannot change anything: use the API token")
        else:
            return None
        response.headers["WWW-Authenticate"] = 'Bearer realm="gitopsd"'
        log.warning("API call refused", path=request.path, remote=request.remote, reason=json.loads(response.text or "{}")["error"])
        return response

    # -- health and metrics --------------------------------------------------------------

    async def version(self, request: web.Request) -> web.Response:
        """``{"version": "0.1.0", "python": "3.11.7"}``: what this daemon runs."""
        return web.json_response({"version": __version__, "python": platform.python_version()})

    async def healthz(self, request: web.Request) -> web.Response:
        if self.view.stopping:
            return web.json_response({"status": "stopping"}, status=503)
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        reasons = self.view.not_ready()
        if reasons:
            return web.json_response({"status": "not ready", "reasons": reasons}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics_page(self, request: web.Request) -> web.StreamResponse:
        if self.settings.metrics_require_token:
            refused = self._authorize(request, Access.READ)
            if refused is not None:
                return refused
        # Sent chunk by chunk: at 10,000 apps the page is 8 MiB, and made whole it was the
        # daemon's peak memory (Metrics.chunks).
        response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
        await response.prepare(request)
        for chunk in self.metrics.chunks():
            await response.write(chunk)
        await response.write_eof()
        return response

    # -- apps ----------------------------------------------------------------------------

    async def list_apps(self, request: web.Request) -> web.Response:
        refused = self._authorize(request, Access.READ)
        if refused is not None:
            return refused
        return web.json_response({"apps": await self._apps_json(), "windows": self.view.open_windows()})

    async def _apps_json(self) -> list[dict[str, Any]]:
        apps = []
        for summary in self.view.apps():
            try:
                history = await self.view.history(summary.name, HISTORY_SHOWN)
            except AppNotFound:  # removed by a reload meanwhile
                continue
            apps.append(app_json(summary, history))
        return apps

    def _peer_token(self) -> str | None:
        """The token this member reads other members' APIs with (members share the config)."""
        token = self.secrets.read_token or self.secrets.token
        return token.reveal() if token is not None else None

    async def get_app(self, request: web.Request) -> web.Response:
        refused = self._authorize(request, Access.READ)
        if refused is not None:
            return refused
        name = request.match_info["name"]
        try:
            summary = self.view.app(name)
            history = await self.view.history(name, HISTORY_SHOWN)
        except AppNotFound as exc:
            return _error(404, str(exc))
        return web.json_response(app_json(summary, history))

    async def app_action(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in ACTIONS:
            return _error(404, f"no such action: {action}")
        refused = self._authorize(request)
        if refused is not None:
            return refused
        name = request.match_info["name"]
        try:
            self.view.app(name)
        except AppNotFound as exc:
            return _error(404, str(exc))
        if self.view.stopping:
            return _error(503, "gitopsd is shutting down")
        body = await request.read()  # enforces client_max_size for chunked bodies
        wanted = ""
        if action == "rollback":
            try:
                payload = json.loads(body or b"{}")
                wanted = str(payload["revision"]) if isinstance(payload, dict) else ""
            except (ValueError, KeyError, UnicodeDecodeError):
                wanted = ""
            if not wanted:
                return _error(400, 'rollback needs a JSON body {"revision": "..."}')
        return await self.perform(name, action, wanted, request.remote or "")

    async def perform(self, name: str, action: str, revision: str, remote: str) -> web.Response:
        """Do an authorised action (the API and the web page share this); the JSON answer."""
        try:
            resolved = await self.view.act(name, action, revision)
        except AppNotFound as exc:
            return _error(404, str(exc))
        except ActionRefused as exc:
            return _error(exc.status, str(exc))
        log.info(f"{action} requested", app=name, remote=remote, **({"revision": resolved} if resolved else {}))
        if action in ("refresh", "sync"):
            return web.json_response({"app": name, "action": action, "status": "accepted"}, status=202)
        if action in ("suspend", "resume"):
            return web.json_response({"app": name, "action": action, "suspended": action == "suspend"})
        return web.json_response({"app": name, "action": "rollback", "revision": resolved, "status": "accepted"}, status=202)

    async def approval(self, request: web.Request) -> web.Response:
        """Approve or reject an app's pending revision (the gate of engine/approvals.py)."""
        decision = request.match_info["decision"]
        if decision not in ("approve", "reject"):
            return _error(404, f"no such decision: {decision}")
        refused = self._authorize(request)
        if refused is not None:
            return refused
        name = request.match_info["name"]
        try:
            payload = json.loads(await request.read() or b"{}")
            revision = str(payload["revision"]) if isinstance(payload, dict) else ""
        except (ValueError, KeyError, UnicodeDecodeError):
            revision = ""
        if not revision:
            return _error(400, f'{decision} needs a JSON body {{"revision": "..."}}')
        try:
            message = await self.view.decide(name, revision, approve=decision == "approve", by=f"api:{request.remote}")
        except AppNotFound as exc:
            return _error(404, str(exc))
        except ActionRefused as exc:
            return _error(exc.status, str(exc))
        return web.json_response({"app": name, "decision": decision, "message": message})

    # -- webhooks ------------------------------------------------------------------------

    @cached_property
    def deliveries(self) -> DeliveryLog:
        """Delivery IDs of the verified push webhooks (a redelivery is not acted on twice), made at the first push."""
        from gitopsd.server.push import DeliveryLog

        return DeliveryLog()

    async def hook(self, request: web.Request) -> web.Response:
        # Here, not at the top: the first push webhook imports their parsing, not every start.
        from gitopsd.server import push as pushes

        provider = request.match_info["provider"]
        metrics = self.metrics
        secret = self.secrets.hooks.get(provider)
        if provider not in pushes.PROVIDERS or secret is None:
            return _error(404, f"no such endpoint: {request.method} {request.path}")
        body = await request.read()
        delivery = request.headers.get("X-GitHub-Delivery") or request.headers.get("X-Gitea-Delivery") or ""
        try:
            pushes.verify(provider, secret.reveal(), request.headers, body)
        except pushes.WebhookError as exc:
            metrics.webhook(provider, "unauthorized")
            log.warning("webhook refused", provider=provider, delivery=delivery, remote=request.remote, reason=exc.message)
            return _error(exc.status, "signature verification failed")
        if not self.deliveries.first_time(provider, pushes.delivery_id(provider, request.headers)):
            metrics.webhook(provider, "replayed")
            return web.json_response({"status": "ignored", "reason": "delivery already received"}, status=202)
        kind = pushes.event_kind(provider, request.headers)
        if kind == "ping":
            metrics.webhook(provider, "ping")
            return web.json_response({"status": "pong"})
        if kind != "push":
            metrics.webhook(provider, "ignored")
            return web.json_response({"status": "ignored", "reason": f"event {kind!r} is not a push"}, status=202)
        try:
            push = pushes.parse_push(provider, body)
        except pushes.WebhookError as exc:
            metrics.webhook(provider, "bad-request")
            return _error(exc.status, exc.message)
        if self.view.stopping:
            return _error(503, "gitopsd is shutting down")
        targets = {t.app: t for t in self.view.push_targets()}
        matched = pushes.match_apps(targets.values(), push)
        # The apps whose files changed go first; the other apps of the repository follow a
        # moment later, so a push to one app of a big repository is not queued behind all.
        touched, rest = pushes.touched_first({name: targets[name].path for name in matched}, push)
        self.view.fire(touched, "webhook")
        if rest:
            self.start_soon(self._fire_later, rest)
        appsets = pushes.match_apps([pushes.PushTarget(*t) for t in self.view.appset_push_targets()], push)
        self.view.refresh_appsets(appsets)
        matched += [f"appset:{name}" for name in appsets]
        metrics.webhook(provider, "matched" if matched else "ignored")
        log.info("push webhook", provider=provider, delivery=delivery, ref=push.ref, refreshed=matched)
        return web.json_response(
            {"status": "accepted" if matched else "ignored", "ref": push.ref, "refreshed": matched, "received": time.time()},
            status=202,
        )

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        """Run ``func(*args)`` in the daemon's task group (see :meth:`serve`)."""
        if self._tg is not None:
            self._tg.start_soon(func, *args)

    async def serve(self) -> None:
        """The server's own task group (delayed webhook refreshes), until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None

    async def _fire_later(self, names: list[str]) -> None:
        await anyio.sleep(TOUCHED_FIRST_DELAY)
        self.view.fire(names, "webhook")
