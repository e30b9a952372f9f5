"""The ``webhook`` notifier: POST every event as JSON to a URL, signed with HMAC-SHA256.

Config::

    [notifiers.audit]
    type = "webhook"
    url_file = "/etc/gitopsd/audit-webhook-url"   # or url = "https://..."
    secret_file = "/etc/gitopsd/audit-webhook-secret"
    headers = { "X-Team" = "platform" }

The body is :meth:`gitopsd.Event.to_dict` as JSON (UTF-8). Headers:
``X-Gitopsd-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the secret>``
(when ``secret_file`` is set), ``X-Gitopsd-Event: <event name>``,
``X-Gitopsd-Delivery: <event id>`` (the same on every retry, so receivers can dedupe).
Any 2xx is success; 408, 425, 429 and 5xx are retried (honouring ``Retry-After``); any
other reply is a permanent failure. The URL (it may carry a token) never appears in logs,
events or errors.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

import gitopsd
from gitopsd import Event, Notifier, NotifierOptions, Secret, read_secret_file

from ._notify_http import http_error, make_client, transport_error

if TYPE_CHECKING:  # httpx is imported where it is used: the daemon starts without it
    import httpx

SIGNATURE_HEADER = "X-Gitopsd-Signature-256"


class WebhookOptions(NotifierOptions):
    """Options of the ``webhook`` notifier (plus the common notifier options)."""

    url: str | None = Field(
        None, description="http(s) URL to POST events to (use url_file if it carries a token)."
    )
    url_file: Path | None = Field(None, description="File holding the URL (a secret).")
    secret_file: Path | None = Field(
        None, description="File holding the HMAC-SHA256 signing secret."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() in {"content-type", "content-length", SIGNATURE_HEADER.lower(), "host"}:
                raise ValueError(f"header {name!r} is set by gitopsd and cannot be overridden")
        return value

    @model_validator(mode="after")
    def _one_url(self) -> WebhookOptions:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("set exactly one of url or url_file")
        return self


def sign(secret: str | bytes, body: bytes) -> str:
    """The ``X-Gitopsd-Signature-256`` value for ``body``: ``sha256=<hex>``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the right signature of ``body`` (constant-time comparison)."""
    return bool(header) and hmac.compare_digest(sign(secret, body), header or "")


class WebhookNotifier(Notifier):
    """POSTs each event as JSON to a URL, signed with ``X-Gitopsd-Signature-256: sha256=<hex>``.

    The body is ``Event.to_dict()``; 2xx is success; 408, 425, 429 and 5xx are retried
    (honouring Retry-After); anything else is permanent.
    """

    Options = WebhookOptions
    options: WebhookOptions

    def __init__(self, name: str, options: Any, ctx: gitopsd.PluginContext):
        super().__init__(name, options, ctx)
        where = f"notifiers.{name}"
        if options.url_file is not None:
            self._url = read_secret_file(ctx.config_dir / options.url_file, f"{where}.url_file",
                                         strict=ctx.strict_secret_permissions)
        else:
            self._url = Secret(options.url)
        self._secret: Secret | None = None
        if options.secret_file is not None:
            self._secret = read_secret_file(
                ctx.config_dir / options.secret_file, f"{where}.secret_file", strict=ctx.strict_secret_permissions
            )
        self._client: httpx.AsyncClient | None = None

    @property
    def rate_key(self) -> str:
        return "webhook:" + hashlib.sha256(self._url.reveal().encode()).hexdigest()[:16]

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = make_client(self.options.timeout)
        return self._client

    def body(self, event: Event) -> bytes:
        """The exact bytes posted for ``event``."""
        return json.dumps(
            event.to_dict(), default=str, separators=(",", ":"), ensure_ascii=False
        ).encode()

    async def send(self, event: Event) -> None:
        import httpx

        body = self.body(event)
        headers = {
            **self.options.headers,
            "Content-Type": "application/json",
            "X-Gitopsd-Event": event.name,
            "X-Gitopsd-Delivery": event.id,
        }
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret.reveal(), body)
        what = f"webhook {self.name}"
        try:
            response = await self._http().post(self._url.reveal(), content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise transport_error(what, exc) from None
        if response.is_success:
            return
        raise http_error(what, response)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


@gitopsd.hookimpl
def gitopsd_notifier_types() -> dict[str, type[Notifier]]:
    return {"webhook": WebhookNotifier}


__all__ = ["SIGNATURE_HEADER", "WebhookNotifier", "WebhookOptions", "sign", "verify"]
