"""Notifier ``discord``: posts each event to a Discord channel webhook."""

from pathlib import Path

from pydantic import Field

import gitopsd

ICONS = {"info": "✅", "warning": "⚠️", "error": "❌"}


class DiscordOptions(gitopsd.NotifierOptions):
    webhook_url_file: Path = Field(description="File holding the Discord webhook URL (a secret).")


class DiscordNotifier(gitopsd.Notifier):
    """Discord webhook. The engine does queueing, filters, dedupe, rate limits and retries."""

    Options = DiscordOptions

    def __init__(self, name, options, ctx):
        super().__init__(name, options, ctx)
        self._url = gitopsd.read_secret_file(ctx.config_dir / options.webhook_url_file, f"notifiers.{name}.webhook_url_file",
                                             strict=ctx.strict_secret_permissions)
        # httpx is imported where it is used: the daemon loads every installed plugin before
        # it answers /readyz, and most configurations never create this notifier.
        import httpx

        self._client = httpx.AsyncClient(timeout=options.timeout)

    async def send(self, event: gitopsd.Event) -> None:
        import httpx

        text = f"{ICONS[event.severity]} **{event.app or 'gitopsd'}** {event.name}: {event.message}"[:2000]
        try:
            response = await self._client.post(self._url.reveal(), json={"content": text})
        except httpx.HTTPError as exc:
            raise gitopsd.NotifyError(f"discord: {type(exc).__name__}") from None
        if response.status_code == 429:
            retry_after = float(response.headers.get("Retry-After", "1"))
            raise gitopsd.NotifyError("discord: rate limited", retry_after=retry_after)
        if response.status_code >= 400:
            permanent = response.status_code in (401, 403, 404)
            raise gitopsd.NotifyError(f"discord: HTTP {response.status_code}", permanent=permanent)

    async def aclose(self) -> None:
        await self._client.aclose()


@gitopsd.hookimpl
def gitopsd_notifier_types():
    return {"discord": DiscordNotifier}
