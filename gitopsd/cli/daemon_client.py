"""A small client of the running daemon's HTTP API (what ``gitopsd status`` & co. use).

The address and token come from the config: ``daemon.listen`` and ``daemon.api_token_file``
(else ``daemon.read_token_file``, enough for the read-only commands).
A wildcard listen address (``0.0.0.0``, ``::``) is reached on loopback.
"""

from __future__ import annotations

from typing import Any

import httpx

from gitopsd.core.errors import ConfigError, GitopsdError
from gitopsd.core.secrets import Secret, read_secret_file
from gitopsd.plugin.config import Config
from gitopsd.server.api import parse_listen


class ClientError(GitopsdError):
    """The daemon could not be reached or refused the call; the message says which and why."""

    reason = "ApiError"


def base_url(listen: str) -> str:
    host, port = parse_listen(listen)
    if host in ("0.0.0.0", "", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class DaemonClient:
    """Calls the API of the daemon a config describes.

    Args:
        url: Base URL, e.g. ``http://127.0.0.1:9420``.
        token: The bearer token sent with every call: the API token, or the read token for
            read-only use (None: the daemon refuses the calls).
        timeout: Seconds per request.
    """

    def __init__(self, url: str, token: Secret | None = None, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = timeout

    @classmethod
    def from_config(cls, config: Config) -> DaemonClient:
        token = None
        for option in ("api_token_file", "read_token_file"):
            path = getattr(config.daemon, option)
            if path is None:
                continue
            try:
                token = read_secret_file(path, f"daemon.{option}", strict=False)
                break
            except ConfigError:
                continue  # not readable by this user: try the read token; else the daemon refuses
        return cls(base_url(config.daemon.listen), token)

    def _request(self, method: str, path: str, json: Any = None) -> Any:
        headers = {}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.reveal()}"
        try:
            with httpx.Client(timeout=self._timeout) as client:
                response = client.request(method, self.url + path, headers=headers, json=json)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach gitopsd at {self.url}: {type(exc).__name__}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:200]}
        if response.status_code >= 400:
            message = body.get("error") if isinstance(body, dict) else None
            hint = ""
            if response.status_code == 401:
                hint = " (is daemon.api_token_file or daemon.read_token_file readable by you?)"
            elif response.status_code == 403:
                hint = " (the read token cannot change anything: use daemon.api_token_file)" if method != "GET" else ""
            raise ClientError(f"{method} {path}: HTTP {response.status_code}: {message or response.reason_phrase}{hint}")
        return body

    def apps(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "/api/v1/apps")["apps"])

    def members(self) -> dict[str, Any]:
        """``GET /api/v1/members``: ``{"coordination": bool, "members": [...], ...}``."""
        return dict(self._request("GET", "/api/v1/members"))

    def all_apps(self) -> dict[str, Any]:
        """``GET /api/v1/members/apps``: every member's apps (``member`` on each), and unreachable members."""
        return dict(self._request("GET", "/api/v1/members/apps"))

    def app(self, name: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/api/v1/apps/{name}"))

    def windows(self) -> list[dict[str, Any]]:
        """The sync windows open now."""
        return list(self._request("GET", "/api/v1/apps").get("windows", []))

    def decide(self, name: str, revision: str, decision: str) -> dict[str, Any]:
        """``approve`` or ``reject`` the app's pending ``revision``."""
        return dict(self._request("POST", f"/api/v1/apps/{name}/approval/{decision}", json={"revision": revision}))

    def action(self, name: str, action: str, **payload: Any) -> dict[str, Any]:
        """``refresh``, ``suspend``, ``resume`` or ``rollback`` (with ``revision=``)."""
        return dict(self._request("POST", f"/api/v1/apps/{name}/{action}", json=payload or None))
