"""Slack Socket Mode: a websocket the daemon opens *to* Slack, so nothing listens on the bastion.

The loop: ``apps.connections.open`` with the app-level token (``xapp-...``) gives a
``wss://`` URL; Slack says ``hello``, then sends envelopes ``{envelope_id, type, payload}``
(``events_api``, ``interactive``, ``slash_commands``). Each envelope is acknowledged at
once (``{"envelope_id": ...}``), before it is handled, so Slack always gets its ack within
its 3 seconds; handling runs in a task of its own that outlives the connection, so a
socket dropped mid-approval loses nothing. ``{"type": "disconnect"}`` reconnects at once;
a dropped socket or a failed ``apps.connections.open`` reconnects with exponential backoff
(with jitter). Envelopes Slack delivers again after a reconnect are handled once.

Written on aiohttp's websocket client rather than ``slack_sdk``'s SocketModeClient: the
SDK runs its receiver, monitor and every listener call as detached ``asyncio`` tasks (not
under the daemon's task group, so not stopped in order at shutdown), retries connects at a
fixed interval rather than with backoff, and logs raw envelopes at debug level.
"""

from __future__ import annotations

import json
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import anyio
import structlog

from gitopsd import NotifyError, Secret
from gitopsd.core.secrets import REDACTOR

log = structlog.get_logger("gitopsd_plugins.slack")

Handler = Callable[[str, dict[str, Any]], Awaitable[None]]
"""``handler(envelope_type, payload)``; runs after the envelope was acknowledged."""

SEEN_ENVELOPES = 1000


def _safe_reason(exc: BaseException, url: str) -> str:
    """An error's text without the websocket URL (its ``ticket`` is a credential) or tokens."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{type(exc).__name__}: HTTP {exc.status}"
    text = str(exc)
    if url:
        text = text.replace(url, "<socket url>").replace(url.split("?", 1)[0], "<socket url>")
    return REDACTOR.scrub(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


class SocketModeClient:
    """Keeps one Socket Mode connection open and hands every envelope to ``handler``.

    Args:
        app_token: The app-level token (``xapp-...``).
        api_url: Slack Web API base URL (``https://slack.com/api``; tests: the stand-in).
        handler: Called with each envelope's type and payload, in its own task.
        backoff_base: First reconnect delay after a failure; doubles up to ``backoff_max``.
        timeout: Seconds for ``apps.connections.open`` and the websocket handshake.
    """

    def __init__(
        self,
        app_token: Secret,
        api_url: str,
        handler: Handler,
        *,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        timeout: float = 10.0,
    ):
        self._token = app_token
        self._api_url = api_url.rstrip("/")
        self._handler = handler
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._timeout = timeout
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.connections = 0  # successful hellos, for tests and logs
        self.connected = anyio.Event()

    def _backoff(self, attempt: int) -> float:
        delay = min(self._backoff_max, self._backoff_base * 2**attempt)
        return random.uniform(delay / 2, delay)

    async def run(self) -> None:
        """Connect, serve, reconnect: until cancelled."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            anyio.create_task_group() as work,
        ):
            attempt = 0
            while True:
                url = ""
                try:
                    url = await self._open(session)
                    reconnect_now = await self._connection(session, url, work)
                    attempt = 0
                    if reconnect_now:
                        continue
                    reason = "socket closed"
                except (aiohttp.ClientError, NotifyError, OSError, TimeoutError, ValueError) as exc:
                    reason = _safe_reason(exc, url)
                delay = self._backoff(attempt)
                attempt += 1
                log.warning(
                    "Slack Socket Mode connection lost; reconnecting",
                    reason=reason,
                    retry_in=round(delay, 2),
                )
                await anyio.sleep(delay)

    async def _open(self, session: aiohttp.ClientSession) -> str:
        """``apps.connections.open``: the websocket URL to connect to."""
        with anyio.fail_after(self._timeout):
            async with session.post(
                self._api_url + "/apps.connections.open",
                headers={"Authorization": f"Bearer {self._token.reveal()}"},
            ) as response:
                if response.status != 200:
                    raise NotifyError(f"Slack apps.connections.open replied HTTP {response.status}")
                reply = await response.json(content_type=None)
        if (
            not isinstance(reply, dict)
            or not reply.get("ok")
            or not isinstance(reply.get("url"), str)
        ):
            error = reply.get("error") if isinstance(reply, dict) else "unreadable reply"
            raise NotifyError(f"Slack apps.connections.open failed: {error}")
        return str(reply["url"])

    async def _connection(self, session: aiohttp.ClientSession, url: str, work: Any) -> bool:
        """Serve one websocket; True when Slack asked to reconnect (``disconnect``)."""
        async with session.ws_connect(
            url, heartbeat=30, timeout=aiohttp.ClientWSTimeout(ws_close=5)
        ) as ws:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    if message.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                        break
                    continue
                try:
                    data = json.loads(message.data)
                except ValueError:
                    log.warning("Slack sent a message that is not JSON; ignored")
                    continue
                if not isinstance(data, dict):
                    continue
                kind = data.get("type")
                if kind == "hello":
                    self.connections += 1
                    self.connected.set()
                    log.info("Slack Socket Mode connected", connections=self.connections)
                    continue
                if kind == "disconnect":
                    log.info("Slack asked to reconnect", reason=str(data.get("reason", "")))
                    return True
                envelope_id = data.get("envelope_id")
                if not isinstance(envelope_id, str):
                    continue
                await ws.send_json(
                    {"envelope_id": envelope_id}
                )  # the ack first: Slack waits 3 s at most
                if envelope_id in self._seen:
                    continue  # delivered again after a reconnect: handled already
                self._seen[envelope_id] = None
                while len(self._seen) > SEEN_ENVELOPES:
                    self._seen.popitem(last=False)
                payload = data.get("payload")
                work.start_soon(
                    self._handle, str(kind), payload if isinstance(payload, dict) else {}
                )
        return False

    async def _handle(self, kind: str, payload: dict[str, Any]) -> None:
        try:
            await self._handler(kind, payload)
        except Exception:
            log.exception("handling a Slack envelope failed", envelope_type=kind)
