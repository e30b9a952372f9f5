"""Shared HTTP plumbing of the built-in notifiers: client, reply classification, safe errors.

Error messages made here never contain a URL, a header or a request body: webhook URLs
and tokens are secrets. Known secrets are also scrubbed with the process redactor.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gitopsd import USER_AGENT, NotifyError
from gitopsd.core.secrets import REDACTOR

if TYPE_CHECKING:  # httpx is imported where it is used: the daemon starts without it
    import httpx

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def make_client(timeout: float) -> httpx.AsyncClient:
    """One client per notifier instance: pooled connections, no redirects, our user agent."""
    import httpx

    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - datetime.now(UTC).timestamp())


def short_body(response: httpx.Response, limit: int = 120) -> str:
    """The start of a reply body, one line, scrubbed: for error messages."""
    try:
        text = response.text
    except Exception:
        return ""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return REDACTOR.scrub(text)


def transport_error(what: str, exc: httpx.HTTPError) -> NotifyError:
    """A transient NotifyError for a timeout or connection failure, without the URL."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return NotifyError(f"{what}: timed out ({type(exc).__name__})")
    # httpx messages may quote the request URL; keep only the class and a scrubbed,
    # URL-free reason.
    reason = str(exc)
    request = getattr(exc, "_request", None)
    if request is not None:
        reason = reason.replace(str(request.url), "<url>")
    reason = REDACTOR.scrub(reason)
    return NotifyError(f"{what}: {type(exc).__name__}" + (f": {reason}" if reason else ""))


def http_error(
    what: str, response: httpx.Response, *, permanent: bool | None = None
) -> NotifyError:
    """A NotifyError for an HTTP error reply: transient for 408/425/429/5xx, else permanent."""
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if permanent is None:
        permanent = status not in TRANSIENT_STATUS
    if status == 429 and retry_after is None:
        retry_after = 1.0
    body = short_body(response)
    message = f"{what} replied HTTP {status}" + (f": {body}" if body else "")
    return NotifyError(message, permanent=permanent, retry_after=None if permanent else retry_after)
