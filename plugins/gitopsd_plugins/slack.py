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

Change control (bot token + ``app_token_file``, the ``xapp-`` app-level token, which turns
on Socket Mode): approval requests of apps with ``approval = { notifier = ... }`` are
posted in the app's thread (and broadcast) with Approve / Reject buttons; a decision,
a timeout or a newer revision updates that message. Clicks and the slash command
(``/gitopsd status [APP]``, ``sync APP``, ``suspend APP``, ``resume APP``, ``approve APP
REV``, ``reject APP REV``) arrive over the Socket Mode websocket (see ``_slack_socket``):
nothing listens on the bastion. Clicks are checked against the app's
``approval.approvers`` (else ``allowed``), commands against ``allowed``: user IDs,
user-group IDs or ``@handles`` (resolved with usergroups.list / usergroups.users.list);
anyone else gets an ephemeral refusal. Every command is logged with the Slack user and
emitted as a ``chat-command`` event.

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
import json
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import Field, model_validator

import gitopsd
from gitopsd import (
    EVENT_TYPES,
    Event,
    GitopsdError,
    Notifier,
    NotifierOptions,
    NotifyError,
    Secret,
    Severity,
    read_secret_file,
)

from ._notify_http import http_error, make_client, parse_retry_after, short_body, transport_error
from ._slack_blocks import (
    APPROVE_ACTION,
    REJECT_ACTION,
    approval_blocks,
    approval_request,
    build_message,
    decided,
)

if TYPE_CHECKING:  # httpx is imported where it is used: the daemon starts without it
    import httpx

    from ._slack_socket import SocketModeClient

log = structlog.get_logger("gitopsd_plugins.slack")

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
GROUP_CACHE_SECONDS = 60.0
DECISIONS = ("approval-granted", "approval-rejected", "approval-superseded")


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
    app_token_file: Path | None = Field(
        None,
        description="File holding the app-level token (xapp-...): turns on Socket Mode for "
        "approval buttons and the slash command. Needs token_file.",
    )
    allowed: list[str] = Field(
        default_factory=list,
        description="Who may run the slash command (and approve for apps without approvers): "
        "user IDs (U...), user-group IDs (S...) or @handles. Empty: nobody.",
    )
    command: str = Field(
        "/gitopsd", description="The slash command's name, as set in the Slack app."
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
        if self.app_token_file is not None and self.token_file is None:
            raise ValueError("app_token_file (Socket Mode) needs token_file and channel")
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
        self._app_token: Secret | None = None
        if options.app_token_file is not None:
            self._app_token = read_secret_file(
                ctx.config_dir / options.app_token_file, f"{where}.app_token_file"
            )
        self._client: httpx.AsyncClient | None = None
        self._threads: OrderedDict[tuple[str, str], str] = OrderedDict()
        # approval requests posted: (app, revision) -> (ts, their blocks without buttons)
        self._requests: OrderedDict[tuple[str, str], tuple[str, list[dict[str, Any]]]] = (
            OrderedDict()
        )
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self.socket: SocketModeClient | None = None

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
        hosts = {"gitea_hosts": self.options.gitea_hosts, "gitlab_hosts": self.options.gitlab_hosts}
        if event.name == "approval-requested":
            return approval_request(event, **hosts)
        return build_message(event, **hosts)

    async def send(self, event: Event) -> None:
        if event.name == "chat-command" and event.data.get("notifier") == self.name:
            return  # answered in the channel already
        payload = self.message(event)
        if self._webhook is not None:
            await self._send_webhook(payload)
            return
        if event.name in DECISIONS:
            await self._update_request(event)
        ts = await self._post_message(event, payload, broadcast=event.name == "approval-requested")
        if event.name == "approval-requested" and ts is not None:
            hosts = {
                "gitea_hosts": self.options.gitea_hosts,
                "gitlab_hosts": self.options.gitlab_hosts,
            }
            self._requests[(event.app, event.revision)] = (ts, approval_blocks(event, **hosts))
            while len(self._requests) > MAX_THREADS:
                self._requests.popitem(last=False)

    async def _update_request(self, event: Event) -> None:
        """Take the buttons off a decided (or superseded) request and say what happened."""
        posted = self._requests.pop((event.app, event.revision), None)
        if posted is None:
            return  # posted before a restart: the decision message in the thread says it
        ts, blocks = posted
        try:
            await self.api(
                "chat.update", {"channel": self._channel_id, "ts": ts, **decided(blocks, event)}
            )
        except NotifyError as exc:
            log.warning(
                "could not update the approval request message", notifier=self.name, error=str(exc)
            )

    async def _send_webhook(self, payload: dict[str, Any]) -> None:
        import httpx

        assert self._webhook is not None
        what = f"Slack webhook {self.name}"
        try:
            response = await self._http().post(self._webhook.reveal(), json=payload)
        except httpx.HTTPError as exc:
            raise transport_error(what, exc) from None
        if response.status_code == 200:
            return
        raise http_error(what, response)

    async def _post_message(
        self, event: Event, payload: dict[str, Any], *, broadcast: bool = False
    ) -> str | None:
        """chat.postMessage in the (app, revision) thread; returns the message's ts."""
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
            if Severity(event.severity) is Severity.ERROR or broadcast:
                body["reply_broadcast"] = True
        reply = await self.api("chat.postMessage", body, what=what)
        ts = reply.get("ts")
        if isinstance(reply.get("channel"), str):
            self._channel_id = reply["channel"]
        if thread_key is not None and parent is None and isinstance(ts, str):
            self._threads[thread_key] = ts
            while len(self._threads) > MAX_THREADS:
                self._threads.popitem(last=False)
        elif thread_key is not None and parent is not None:
            self._threads.move_to_end(thread_key)
        return ts if isinstance(ts, str) else None

    # -- Web API calls of change control -------------------------------------------------

    @property
    def _channel_id(self) -> str:
        return getattr(self, "_channel", None) or str(self.options.channel)

    @_channel_id.setter
    def _channel_id(self, value: str) -> None:
        self._channel = value

    async def api(
        self, method: str, body: dict[str, Any], *, form: bool = False, what: str | None = None
    ) -> dict[str, Any]:
        """Call a Web API method with the bot token; NotifyError unless ``ok``.

        Read methods (usergroups.*) take form fields, write methods JSON. A transient error
        (rate limits, Slack's own troubles) is retried by the bus, after ``Retry-After``.
        ``what`` names the call in errors (default ``Slack <method>``).
        """
        import httpx

        assert self._token is not None
        what = what or f"Slack {method}"
        url = self.options.api_url.rstrip("/") + "/" + method
        headers = {"Authorization": f"Bearer {self._token.reveal()}"}
        try:
            if form:
                response = await self._http().post(url, data=body, headers=headers)
            else:
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
        return reply

    async def _group_members(self, entry: str) -> frozenset[str]:
        """Members of a user group given by ID (``S...``) or ``@handle``; cached for a minute."""
        cached = self._groups.get(entry)
        if cached is not None and time.monotonic() - cached[0] < GROUP_CACHE_SECONDS:
            return cached[1]
        group_id = entry
        if entry.startswith("@"):
            groups = (await self.api("usergroups.list", {}, form=True)).get("usergroups") or []
            found = [
                g.get("id") for g in groups if isinstance(g, dict) and g.get("handle") == entry[1:]
            ]
            if not found or not isinstance(found[0], str):
                log.warning("Slack user group not found", notifier=self.name, group=entry)
                self._groups[entry] = (time.monotonic(), frozenset())
                return frozenset()
            group_id = found[0]
        reply = await self.api("usergroups.users.list", {"usergroup": group_id}, form=True)
        members = frozenset(str(u) for u in reply.get("users") or [])
        self._groups[entry] = (time.monotonic(), members)
        return members

    async def is_allowed(self, user: str, entries: list[str]) -> bool:
        """True when ``user`` is one of ``entries`` (user IDs) or in one of its groups."""
        for entry in entries:
            if entry == user:
                return True
            if entry.startswith(("S", "@")):
                try:
                    if user in await self._group_members(entry):
                        return True
                except NotifyError as exc:
                    log.warning("cannot resolve a Slack user group", group=entry, error=str(exc))
        return False

    async def _ephemeral(self, channel: str, user: str, text: str) -> None:
        try:
            await self.api("chat.postEphemeral", {"channel": channel, "user": user, "text": text})
        except NotifyError as exc:
            log.warning("could not answer a Slack user", notifier=self.name, error=str(exc))

    # -- Socket Mode ---------------------------------------------------------------------

    async def serve(self) -> None:
        """Keep the Socket Mode connection (only with ``app_token_file``)."""
        if self._app_token is None:
            return
        # aiohttp's websocket client: imported only for Socket Mode
        from ._slack_socket import SocketModeClient

        self.socket = SocketModeClient(self._app_token, self.options.api_url, self.on_envelope)
        await self.socket.run()

    async def on_envelope(self, kind: str, payload: dict[str, Any]) -> None:
        """One acknowledged envelope: a button click or a slash command (events are ignored)."""
        if kind == "interactive" and payload.get("type") == "block_actions":
            for action in payload.get("actions") or []:
                if isinstance(action, dict) and action.get("action_id") in (
                    APPROVE_ACTION,
                    REJECT_ACTION,
                ):
                    await self._on_decision(payload, action)
        elif kind == "slash_commands":
            await self._on_command(payload)

    def _emit(self, name: str, **fields: Any) -> None:
        self.ctx.emit(EVENT_TYPES[name].make(**fields))

    async def _on_decision(self, payload: dict[str, Any], action: dict[str, Any]) -> None:
        user = str((payload.get("user") or {}).get("id", ""))
        channel = str((payload.get("channel") or {}).get("id", "") or self._channel_id)
        approve = action.get("action_id") == APPROVE_ACTION
        try:
            value = json.loads(str(action.get("value", "")))
            app, revision = str(value["app"]), str(value["revision"])
        except (ValueError, KeyError, TypeError):
            log.warning("Slack button with an unreadable value ignored", user=user)
            return
        control = self.ctx.control
        if control is None:
            await self._ephemeral(
                channel, user, "gitopsd is not running here: nothing was decided."
            )
            return
        try:
            entries = control.approvers(app) or list(self.options.allowed)
        except GitopsdError as exc:
            await self._ephemeral(channel, user, f"Nothing decided: {exc}")
            return
        by = f"slack:{user}"
        if not user or not await self.is_allowed(user, entries):
            log.warning(
                "Slack approval refused: user not allowed", app=app, revision=revision, user=user
            )
            self._emit(
                "approval-refused",
                app=app,
                revision=revision,
                reason="NotAllowed",
                message=f"{app}: {by} may not decide approvals",
                data={"by": by},
            )
            await self._ephemeral(
                channel, user, f"You are not allowed to approve or reject changes of {app}."
            )
            return
        try:
            result = await control.decide(app, revision, approve=approve, by=by)
        except GitopsdError as exc:
            result = f"Nothing decided: {exc}"
        await self._ephemeral(channel, user, result)

    async def _on_command(self, payload: dict[str, Any]) -> None:
        user = str(payload.get("user_id", ""))
        channel = str(payload.get("channel_id", "") or self._channel_id)
        text = " ".join(str(payload.get("text", "")).split())
        words = text.split(" ") if text else []
        verb = words[0].lower() if words else "help"
        app = words[1] if len(words) > 1 else ""
        by = f"slack:{user}"
        allowed = bool(user) and await self.is_allowed(user, list(self.options.allowed))
        if not allowed:
            result = "refused: not allowed"
            await self._ephemeral(
                channel, user, f"You are not allowed to run {self.options.command}."
            )
        else:
            result = await self._run_command(verb, words[1:], by)
            try:
                await self.api(
                    "chat.postMessage",
                    {
                        "channel": channel,
                        "text": f"<@{user}> `{self.options.command} {text}`\n{result}",
                    },
                )
            except NotifyError as exc:
                log.warning("could not answer a Slack command", notifier=self.name, error=str(exc))
        log.info(
            "Slack command",
            user=user,
            command=text,
            allowed=allowed,
            result=result.splitlines()[0][:200],
        )
        self._emit(
            "chat-command",
            app=app
            if self.ctx.control is not None
            and app in {s["name"] for s in self.ctx.control.status()}
            else "",
            reason="SlackCommand",
            message=f"{by} ran `{self.options.command} {text}`: {result.splitlines()[0][:200]}",
            data={
                "user": user,
                "command": text,
                "allowed": allowed,
                "result": result,
                "notifier": self.name,
            },
        )

    async def _run_command(self, verb: str, args: list[str], by: str) -> str:
        control = self.ctx.control
        if control is None:
            return "gitopsd is not running here."
        usage = (
            f"usage: {self.options.command} status [APP] | sync APP | suspend APP | resume APP"
            " | approve APP REVISION | reject APP REVISION"
        )
        try:
            if verb == "status" and len(args) <= 1:
                return _status_text(
                    control.status(args[0] if args else None), control.open_windows()
                )
            if verb in ("sync", "suspend", "resume") and len(args) == 1:
                method = {
                    "sync": control.sync,
                    "suspend": control.suspend,
                    "resume": control.resume,
                }[verb]
                return await method(args[0], by=by)
            if verb in ("approve", "reject") and len(args) == 2:
                approvers = control.approvers(args[0])
                if approvers and not await self.is_allowed(by.removeprefix("slack:"), approvers):
                    return f"error: you are not an approver of {args[0]}"
                return await control.decide(args[0], args[1], approve=verb == "approve", by=by)
        except GitopsdError as exc:
            return f"error: {exc}"
        return usage

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _status_text(apps: list[dict[str, Any]], windows: list[dict[str, Any]]) -> str:
    """``/gitopsd status``: one line per app, then the open sync windows."""
    lines = []
    for app in apps:
        hold = app.get("hold") or {}
        state = f"{app['sync']}/{app['health']}" + (" suspended" if app.get("suspended") else "")
        if hold.get("state"):
            state += f" ({hold['state']}: {hold.get('message', '')})"
        lines.append(f"*{app['name']}* `{app.get('revision') or '-'}` {state}")
    for window in windows:
        lines.append(
            f"window *{window['name']}* ({window['kind']}) open until {window['end'][:16].replace('T', ' ')} UTC"
        )
    return "\n".join(lines) or "no apps"


@gitopsd.hookimpl
def gitopsd_notifier_types() -> dict[str, type[Notifier]]:
    return {"slack": SlackNotifier}


__all__ = ["SlackNotifier", "SlackOptions"]
