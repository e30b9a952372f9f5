"""The ``slack`` notifier: Block Kit messages through an incoming webhook or a bot token.

Config, one of::

    [notifiers.team]                       # incoming webhook: posts to its own channel
    type = "slack"
    webhook_url_file = "/etc/gitopsd/slack-webhook-url"

    [notifiers.ops]                        # bot token: chat.postMessage, with threads
    type = "slack"
    token_file = "/etc/gitopsd/slack-bot-token"
    channel = "C0123456789"                # or "#deploys"

With a bot token, the messages about one app and revision (revision detected, sync
started, succeeded or failed, health) go into one thread: the first one is posted to the
channel, the next ones reply to it (failures are also broadcast to the channel). Threads
are remembered in memory only.

Replies: a webhook's 200 ``ok`` is success; 429 (Retry-After honoured) and 5xx are
retried; 400 invalid_payload, 403, 404 no_service / channel_not_found and 410
channel_is_archived are permanent. The Web API answers 200 with ``{"ok": false, "error":
...}``: ``ratelimited``, ``internal_error``, ``fatal_error``, ``service_unavailable`` and
``request_timeout`` are retried; every other error (invalid_auth, channel_not_found,
not_in_channel, invalid_blocks, ...) is permanent. The webhook URL and the token never
appear in logs, events or errors.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field, model_validator

import gitopsd
from gitopsd import (
    Event,
    Notifier,
    NotifierOptions,
    NotifyError,
    Secret,
    Severity,
    read_secret_file,
)

from ._notify_http import http_error, make_client, parse_retry_after, short_body, transport_error
from ._slack_blocks import build_message

TRANSIENT_API_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
    }
)
MAX_THREADS = 1000


class SlackOptions(NotifierOptions):
    """Options of the ``slack`` notifier (plus the common notifier options)."""

    webhook_url_file: Path | None = Field(
        None, description="File holding an incoming-webhook URL (a secret)."
    )
    token_file: Path | None = Field(
        None, description="File holding a bot token (xoxb-...), used with channel."
    )
    channel: str | None = Field(
        None, description="Channel ID or #name to post to with the bot token."
    )
    api_url: str = Field("https://slack.com/api", description="Slack Web API base URL.")
    threads: bool = Field(True, description="With a bot token: one thread per app and revision.")
    gitea_hosts: list[str] = Field(
        default_factory=list, description="Hosts whose git URLs are Gitea repositories."
    )
    gitlab_hosts: list[str] = Field(
        default_factory=list, description="Self-hosted GitLab hosts (gitlab.com is known)."
    )

    @model_validator(mode="after")
    def _one_mode(self) -> SlackOptions:
        if self.webhook_url_file is not None and self.token_file is not None:
            raise ValueError("set either webhook_url_file or token_file (with channel), not both")
        if self.webhook_url_file is None and self.token_file is None:
            raise ValueError("set webhook_url_file, or token_file and channel")
        if self.token_file is not None and not self.channel:
            raise ValueError("token_file needs channel (the channel ID or #name to post to)")
        if self.webhook_url_file is not None and self.channel:
            raise ValueError(
                "channel is only used with token_file; an incoming webhook posts to its own channel"
            )
        if not self.api_url.startswith(("http://", "https://")):
            raise ValueError("api_url must be an http:// or https:// URL")
        return self


class SlackNotifier(Notifier):
    """Posts events to Slack as Block Kit messages, through an incoming webhook or a bot token.

    Bot token mode (``token_file`` + ``channel``) uses chat.postMessage and keeps the
    messages of one app and revision in one thread. Permanent Slack errors (revoked URL,
    invalid_auth, channel_not_found, archived channel, invalid payload) are not retried.
    """

    Options = SlackOptions
    options: SlackOptions

    def __init__(self, name: str, options: Any, ctx: gitopsd.PluginContext):
        super().__init__(name, options, ctx)
        where = f"notifiers.{name}"
        self._webhook: Secret | None = None
        self._token: Secret | None = None
        if options.webhook_url_file is not None:
            self._webhook = read_secret_file(
                ctx.config_dir / options.webhook_url_file, f"{where}.webhook_url_file",
                strict=ctx.strict_secret_permissions,
            )
        else:
            self._token = read_secret_file(
                ctx.config_dir / options.token_file, f"{where}.token_file", strict=ctx.strict_secret_permissions
            )
        self._client: httpx.AsyncClient | None = None
        self._threads: OrderedDict[tuple[str, str], str] = OrderedDict()

    @property
    def rate_key(self) -> str:
        """Slack's limit is per webhook or per channel: notifiers sharing one share the limit."""
        if self._webhook is not None:
            return (
                "slack-webhook:" + hashlib.sha256(self._webhook.reveal().encode()).hexdigest()[:16]
            )
        return f"slack-channel:{self.options.api_url}:{self.options.channel}"

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = make_client(self.options.timeout)
        return self._client

    def message(self, event: Event) -> dict[str, Any]:
        """The JSON payload (``text`` and ``blocks``) for ``event``."""
        return build_message(
            event, gitea_hosts=self.options.gitea_hosts, gitlab_hosts=self.options.gitlab_hosts
        )

    async def send(self, event: Event) -> None:
        payload = self.message(event)
        if self._webhook is not None:
            await self._send_webhook(payload)
        else:
            await self._post_message(event, payload)

    async def _send_webhook(self, payload: dict[str, Any]) -> None:
        assert self._webhook is not None
        what = f"Slack webhook {self.name}"
        try:
            response = await self._http().post(self._webhook.reveal(), json=payload)
        except httpx.HTTPError as exc:
            raise transport_error(what, exc) from None
        if response.status_code == 200:
            return
        raise http_error(what, response)

    async def _post_message(self, event: Event, payload: dict[str, Any]) -> None:
        assert self._token is not None
        what = f"Slack chat.postMessage to {self.options.channel}"
        body: dict[str, Any] = {"channel": self.options.channel, "unfurl_links": False, **payload}
        thread_key = (
            (event.app, event.revision)
            if self.options.threads and event.app and event.revision
            else None
        )
        parent = self._threads.get(thread_key) if thread_key else None
        if parent is not None:
            body["thread_ts"] = parent
            if Severity(event.severity) is Severity.ERROR:
                body["reply_broadcast"] = True
        url = self.options.api_url.rstrip("/") + "/chat.postMessage"
        headers = {"Authorization": f"Bearer {self._token.reveal()}"}
        try:
            response = await self._http().post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise transport_error(what, exc) from None
        if response.status_code != 200:
            raise http_error(what, response)
        try:
            reply = response.json()
        except ValueError:
            raise NotifyError(f"{what}: unreadable reply: {short_body(response)}") from None
        if not isinstance(reply, dict):
            raise NotifyError(f"{what}: unexpected reply: {short_body(response)}")
        if not reply.get("ok"):
            error = str(reply.get("error") or "unknown_error")
            transient = error in TRANSIENT_API_ERRORS
            retry_after = (
                parse_retry_after(response.headers.get("Retry-After")) if transient else None
            )
            raise NotifyError(
                f"{what} failed: {error}", permanent=not transient, retry_after=retry_after
            )
        ts = reply.get("ts")
        if thread_key is not None and parent is None and isinstance(ts, str):
            self._threads[thread_key] = ts
            while len(self._threads) > MAX_THREADS:
                self._threads.popitem(last=False)
        elif thread_key is not None and parent is not None:
            self._threads.move_to_end(thread_key)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


@gitopsd.hookimpl
def gitopsd_notifier_types() -> dict[str, type[Notifier]]:
    return {"slack": SlackNotifier}


__all__ = ["SlackNotifier", "SlackOptions"]
