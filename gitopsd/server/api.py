"""The HTTP API (aiohttp): health, readiness, metrics, app status and actions, push webhooks.

Routes (JSON unless noted):

- ``GET /api/v1/version``: the gitopsd version (no token needed).
- ``GET /healthz``: 200 while the process and its event loop run (503 while stopping).
- ``GET /readyz``: 200 once the config is loaded and every cluster used by an app was
  reached once; else 503 with the reasons.
- ``GET /metrics``: Prometheus text format.
- ``GET /api/v1/apps``, ``GET /api/v1/apps/{name}``: status and the last 20 history entries.
- ``POST /api/v1/apps/{name}/refresh | suspend | resume | rollback``: need
  ``Authorization: Bearer <token>`` (the content of ``daemon.api_token_file``); without a
  configured token they are refused (403), never open. ``rollback`` takes
  ``{"revision": "..."}``, a revision from the app's history (a unique prefix will do).
- ``POST /hooks/github | gitlab | gitea``: push webhooks (see :mod:`gitopsd.server.push`);
  404 when the provider has no secret configured. The apps whose files the push changed
  are refreshed at once, the other apps of the repository a second later.

Bodies over ``daemon.max_body_bytes`` get 413; unknown apps and routes 404 with
``{"error": "..."}``. Secrets never appear in responses or logs.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import platform
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from gitopsd.core.errors import ConfigError
from gitopsd.core.models import HistoryEntry
from gitopsd.core.secrets import Secret, read_secret_file
from gitopsd.core.state import HISTORY_KEPT, Pin
from gitopsd.core.version import __version__
from gitopsd.plugin.config import Config
from gitopsd.server import push as pushes
from gitopsd.server.members import add_member_routes
from gitopsd.server.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from gitopsd.engine.runner import AppRunner

log = structlog.get_logger("gitopsd.server.api")

HISTORY_SHOWN = 20
TOUCHED_FIRST_DELAY = 1.0
"""Seconds between refreshing the apps a push touched and the other apps of its repository."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ApiSecrets:
    """The API token and webhook secrets, read from the files the config names."""

    token: Secret | None = None
    hooks: dict[str, Secret] = field(default_factory=dict)

    @classmethod
    def load(cls, config: Config) -> ApiSecrets:
        """Read every configured secret file; ConfigError lists every unreadable one."""
        errors: list[str] = []
        token = None
        daemon = config.daemon
        if daemon.api_token_file is not None:
            try:
                token = read_secret_file(daemon.api_token_file, "daemon.api_token_file")
            except ConfigError as exc:
                errors.extend(exc.errors)
        hooks: dict[str, Secret] = {}
        files = {
            "github": ("github_secret_file", daemon.webhooks.github_secret_file),
            "gitlab": ("gitlab_token_file", daemon.webhooks.gitlab_token_file),
            "gitea": ("gitea_secret_file", daemon.webhooks.gitea_secret_file),
        }
        for provider, (option, path) in files.items():
            if path is None:
                continue
            try:
                hooks[provider] = read_secret_file(path, f"daemon.webhooks.{option}")
            except ConfigError as exc:
                errors.extend(exc.errors)
        if errors:
            raise ConfigError(errors)
        return cls(token, hooks)


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
    }


def app_json(runner: AppRunner, history: list[HistoryEntry]) -> dict[str, Any]:
    """The API's view of one app."""
    s = runner.status
    return {
        "name": s.name,
        "cluster": s.cluster,
        "namespace": s.namespace,
        "source": {"type": runner.app.source.type, "url": runner.source.url, "ref": runner.source.ref},
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
        },
        "reconciles": s.reconciles,
        "waiting": s.waiting,
        "history": [history_json(h) for h in history],
        "appset": runner.app.appset,  # the [appsets.*] that generated it, or ""
    }


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class ApiServer:
    """The daemon's HTTP server. ``await start()`` binds ``daemon.listen``; ``await aclose()`` stops it."""

    def __init__(self, daemon: Any, secrets: ApiSecrets):
        self.daemon = daemon
        self.secrets = secrets
        self._runner: web.AppRunner | None = None
        self._reached: set[str] = set()
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.daemon.config.daemon.max_body_bytes,
            middlewares=[self._middleware],
        )
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/api/v1/version", self.version)
        app.router.add_get("/api/v1/apps", self.list_apps)
        app.router.add_get("/api/v1/apps/{name}", self.get_app)
        app.router.add_post("/api/v1/apps/{name}/{action}", self.app_action)
        app.router.add_post("/hooks/{provider}", self.hook)
        add_member_routes(app, self.daemon, self._app_json)  # coordination: server/members.py
        return app

    async def start(self) -> None:
        host, port = parse_listen(self.daemon.config.daemon.listen)
        self._runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
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
        log.info("API listening", address=f"{host}:{self.port}", mutating_calls="enabled" if self.secrets.token else "disabled")

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- plumbing ------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        limit = self.daemon.config.daemon.max_body_bytes
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
        except web.HTTPException as exc:
            response = _error(exc.status, exc.reason)
        self.daemon.metrics.api_request(route, response.status)
        return response

    def _runner_of(self, request: web.Request) -> AppRunner:
        name = request.match_info["name"]
        running = self.daemon.apps.get(name)
        if running is None:
            raise _NotFound(f"no app named {name!r}")
        return running.runner

    def _authorize(self, request: web.Request) -> web.Response | None:
        """None when the request carries the right bearer token; else the refusal to send."""
        token = self.secrets.token
        if token is None:
            return _error(403, "mutating API calls are disabled: set daemon.api_token_file")
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            response = _error(401, "missing bearer token")
        elif not hmac.compare_digest(given.strip().encode(), token.reveal().encode()):
            response = _error(401, "invalid bearer token")
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
        if self.daemon.stopping.is_set():
            return web.json_response({"status": "stopping"}, status=503)
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        reasons = []
        daemon = self.daemon
        if daemon.stopping.is_set():
            reasons.append("stopping")
        if not daemon.ready.is_set():
            reasons.append("starting")
        elif daemon.pool is not None:
            for name in sorted({app.cluster for app in daemon.config.apps.values()} - self._reached):
                try:
                    reachable = daemon.pool.get(name).reachable
                except Exception:
                    reachable = False
                if reachable:
                    self._reached.add(name)
                else:
                    reasons.append(f"cluster {name} not reached yet")
        if reasons:
            return web.json_response({"status": "not ready", "reasons": reasons}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics(self, request: web.Request) -> web.Response:
        body = self.daemon.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    # -- apps ----------------------------------------------------------------------------

    async def _app_json(self, runner: AppRunner) -> dict[str, Any]:
        assert self.daemon.store is not None
        history = await self.daemon.store.history(runner.app.name, HISTORY_SHOWN)
        return app_json(runner, history)

    async def list_apps(self, request: web.Request) -> web.Response:
        apps = [await self._app_json(self.daemon.apps[n].runner) for n in sorted(self.daemon.apps)]
        return web.json_response({"apps": apps})

    async def get_app(self, request: web.Request) -> web.Response:
        try:
            runner = self._runner_of(request)
        except _NotFound as exc:
            return _error(404, str(exc))
        return web.json_response(await self._app_json(runner))

    async def app_action(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in ("refresh", "suspend", "resume", "rollback"):
            return _error(404, f"no such action: {action}")
        refused = self._authorize(request)
        if refused is not None:
            return refused
        try:
            runner = self._runner_of(request)
        except _NotFound as exc:
            return _error(404, str(exc))
        if self.daemon.stopping.is_set():
            return _error(503, "gitopsd is shutting down")
        body = await request.read()  # enforces client_max_size for chunked bodies
        name = runner.app.name
        if action == "refresh":
            runner.trigger.fire("refresh", force=True)
            log.info("refresh requested", app=name, remote=request.remote)
            return web.json_response({"app": name, "action": "refresh", "status": "accepted"}, status=202)
        if action == "suspend":
            await runner.set_pin(Pin(suspended=True, revision=runner.status.pinned_revision))
            return web.json_response({"app": name, "action": "suspend", "suspended": True})
        if action == "resume":
            await runner.set_pin(Pin())
            runner.trigger.fire("resume", force=True)  # also after a rollback pin without suspension
            return web.json_response({"app": name, "action": "resume", "suspended": False})
        try:
            payload = json.loads(body or b"{}")
            wanted = str(payload["revision"]) if isinstance(payload, dict) else ""
        except (ValueError, KeyError, UnicodeDecodeError):
            wanted = ""
        if not wanted:
            return _error(400, 'rollback needs a JSON body {"revision": "..."}')
        assert self.daemon.store is not None
        history = await self.daemon.store.history(name, HISTORY_KEPT)
        revision = resolve_revision(wanted, history)
        if revision is None:
            return _error(409, f"revision {wanted!r} is not a unique, successfully applied revision in {name}'s history")
        await runner.set_pin(Pin(suspended=False, revision=revision))
        log.info("rollback requested", app=name, revision=revision, remote=request.remote)
        return web.json_response({"app": name, "action": "rollback", "revision": revision, "status": "accepted"}, status=202)

    # -- webhooks ------------------------------------------------------------------------

    async def hook(self, request: web.Request) -> web.Response:
        provider = request.match_info["provider"]
        metrics = self.daemon.metrics
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
        if self.daemon.stopping.is_set():
            return _error(503, "gitopsd is shutting down")
        sources = [
            pushes.AppSource(
                name,
                r.runner.source.url,
                r.runner.source.ref,
                str(getattr(r.runner.source.options, "semver", "") or ""),
            )
            for name, r in self.daemon.apps.items()
        ]
        matched = pushes.match_apps(sources, push)
        # The apps whose files changed go first; the other apps of the repository follow a
        # moment later, so a push to one app of a big repository is not queued behind all.
        paths = {name: str(getattr(self.daemon.apps[name].runner.source.options, "path", "") or "") for name in matched}
        touched, rest = pushes.touched_first(paths, push)
        for name in touched:
            self.daemon.apps[name].runner.trigger.fire("webhook")
        if rest:
            asyncio.get_running_loop().call_later(TOUCHED_FIRST_DELAY, self._fire_later, rest)
        appsets = pushes.match_apps([pushes.AppSource(*t) for t in self.daemon.appsets.push_targets()], push)
        self.daemon.appsets.poke(appsets)
        matched += [f"appset:{name}" for name in appsets]
        metrics.webhook(provider, "matched" if matched else "ignored")
        log.info("push webhook", provider=provider, delivery=delivery, ref=push.ref, refreshed=matched)
        return web.json_response(
            {"status": "accepted" if matched else "ignored", "ref": push.ref, "refreshed": matched, "received": time.time()},
            status=202,
        )


    def _fire_later(self, names: list[str]) -> None:
        for name in names:
            running = self.daemon.apps.get(name)
            if running is not None and not self.daemon.stopping.is_set():
                running.runner.trigger.fire("webhook")


class _NotFound(Exception):
    pass


def resolve_revision(wanted: str, history: list[HistoryEntry]) -> str | None:
    """The successfully applied revision in ``history`` that ``wanted`` names.

    Exact match first; else a unique prefix of the whole revision or of its hash part
    (``main@sha1:<hex>``: a prefix of ``<hex>``, at least 7 characters).
    """
    applied = list(dict.fromkeys(h.revision for h in history if h.result == "succeeded"))
    if wanted in applied:
        return wanted
    candidates = []
    for revision in applied:
        digest = revision.rpartition(":")[2]
        if revision.startswith(wanted) or (len(wanted) >= 7 and digest.startswith(wanted)):
            candidates.append(revision)
    return candidates[0] if len(candidates) == 1 else None
