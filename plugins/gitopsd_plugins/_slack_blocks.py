"""Block Kit messages for the Slack notifier, kept within Slack's limits.

Limits (api.slack.com/reference/block-kit): header text <= 150 characters, section text
< 3,000, each section field <= 2,000 and at most 10 fields, message ``text`` is truncated
by Slack at 40,000 (we stay far below).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from gitopsd import Event, Severity
from gitopsd.core.lazyre import LazyPattern

HEADER_LIMIT = 150
SECTION_LIMIT = 2990  # Slack wants < 3000
FIELD_LIMIT = 2000
TEXT_LIMIT = 3000  # the notification fallback; Slack's own cut is 40,000
MAX_FIELDS = 10

TITLES = {
    "revision-detected": "new revision",
    "fetch-failed": "fetch failed",
    "render-failed": "render failed",
    "sync-started": "sync started",
    "sync-succeeded": "synced",
    "sync-failed": "sync failed",
    "drift-detected": "drift detected",
    "drift-corrected": "drift corrected",
    "health-degraded": "health degraded",
    "health-recovered": "healthy again",
    "pruned": "pruned objects",
    "app-suspended": "suspended",
    "app-resumed": "resumed",
    "config-reloaded": "configuration reloaded",
    "config-reload-failed": "configuration reload failed",
    "notifier-failed": "notifier failed",
    "cluster-unreachable": "cluster unreachable",
    "cluster-reachable": "cluster reachable again",
    "approval-requested": "approval requested",
    "approval-granted": "approved",
    "approval-rejected": "not approved",
    "approval-superseded": "approval superseded",
    "approval-refused": "approval refused",
    "sync-window-closed": "sync window closed",
    "chat-command": "command",
}
GOOD = frozenset(
    {
        "sync-succeeded",
        "health-recovered",
        "app-resumed",
        "config-reloaded",
        "cluster-reachable",
        "approval-granted",
    }
)
EMOJI = {
    Severity.ERROR: ":x:",
    Severity.WARNING: ":warning:",
    Severity.INFO: ":information_source:",
}

_SHA1 = LazyPattern(r"^(?:(?P<ref>.+)@)?(?:sha1:)?(?P<sha>[0-9a-f]{40})$")
_SCP = LazyPattern(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>[^/].*)$")


def truncate(text: str, limit: int, marker: str = "…") -> str:
    """``text`` cut to at most ``limit`` characters, ending with ``marker`` when cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(marker))] + marker


def escape(text: str) -> str:
    """Escape the three characters mrkdwn gives meaning to."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def parse_revision(revision: str) -> tuple[str, str | None]:
    """``("main@abc1234", full_sha)`` for ``main@sha1:<40 hex>``; ``(revision, None)`` otherwise."""
    match = _SHA1.match(revision.strip())
    if not match:
        return revision, None
    sha = match["sha"]
    ref = match["ref"]
    return (f"{ref}@{sha[:7]}" if ref else sha[:7]), sha


def _web_base(source_url: str) -> tuple[str, str] | None:
    """``(host, "owner/repo")`` of a git URL (https, ssh://, or scp-like), ``.git`` removed."""
    url = source_url.strip()
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "ssh", "git"):
            return None
        host = parts.hostname or ""
        if parts.scheme in ("http", "https") and parts.port:
            host = f"{host}:{parts.port}"
        path = parts.path
    else:
        scp = _SCP.match(url)
        if not scp:
            return None
        host, path = scp["host"], scp["path"]
    path = path.strip("/").removesuffix(".git").strip("/")
    if not host or path.count("/") < 1:
        return None
    return host.lower(), path


def commit_url(
    source_url: str, sha: str, *, gitea_hosts: Iterable[str] = (), gitlab_hosts: Iterable[str] = ()
) -> str | None:
    """Web page of commit ``sha`` when the repository is on GitHub, GitLab or a Gitea host."""
    base = _web_base(source_url)
    if base is None:
        return None
    host, path = base
    bare = host.split(":")[0]
    if bare == "github.com":
        return f"https://github.com/{path}/commit/{sha}"
    if (
        bare == "gitlab.com"
        or host in {h.lower() for h in gitlab_hosts}
        or bare in {h.lower() for h in gitlab_hosts}
    ):
        return f"https://{host}/{path}/-/commit/{sha}"
    if host in {h.lower() for h in gitea_hosts} or bare in {h.lower() for h in gitea_hosts}:
        return f"https://{host}/{path}/commit/{sha}"
    return None


def format_duration(seconds: Any) -> str | None:
    """``"850 ms"``, ``"12.3 s"``, ``"4 m 05 s"`` for a number of seconds; None if not a number."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        return None
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


def title(event: Event) -> str:
    return TITLES.get(event.name, event.name.replace("-", " "))


def header_text(event: Event) -> str:
    """``:emoji: app: outcome``, at most 150 characters (the app name is cut first)."""
    if event.name in GOOD:
        emoji = ":white_check_mark:"
    elif event.name == "sync-started":
        emoji = ":arrows_counterclockwise:"
    else:
        emoji = EMOJI.get(Severity(event.severity), ":information_source:")
    outcome = title(event)
    subject = event.app or "gitopsd"
    fixed = f"{emoji} : {outcome}"
    subject = truncate(subject, max(10, HEADER_LIMIT - len(fixed)))
    return truncate(f"{emoji} {subject}: {outcome}", HEADER_LIMIT)


def _code_block(text: str, limit: int) -> str:
    body = text.replace("```", "`\u200b`\u200b`")  # a fence inside would end the block
    fence = "```"
    room = limit - 2 * len(fence) - 2
    return f"{fence}\n{truncate(body, room, chr(10) + '… (truncated)')}\n{fence}"


def _fields(
    event: Event, gitea_hosts: Iterable[str], gitlab_hosts: Iterable[str]
) -> list[dict[str, Any]]:
    data: Mapping[str, Any] = event.data
    fields: list[tuple[str, str]] = []
    if event.revision:
        label, sha = parse_revision(event.revision)
        url = None
        source_url = data.get("source_url")
        if sha and isinstance(source_url, str):
            url = commit_url(source_url, sha, gitea_hosts=gitea_hosts, gitlab_hosts=gitlab_hosts)
        label = escape(truncate(label, 200)).replace("|", "¦")
        fields.append(("Revision", f"<{url}|{label}>" if url else f"`{label}`"))
    if event.cluster:
        fields.append(("Cluster", escape(event.cluster)))
    if data.get("namespace"):
        fields.append(("Namespace", escape(str(data["namespace"]))))
    duration = format_duration(data.get("duration")) if data.get("duration") is not None else None
    if duration:
        fields.append(("Duration", duration))
    counts = data.get("counts")
    if isinstance(counts, Mapping) and counts:
        main = ("created", "changed", "pruned")
        parts = [f"{key} {counts[key]}" for key in main if key in counts]
        # the rest (failed, ...) only when non-zero; "unchanged" is noise in a chat message
        parts += [
            f"{escape(str(k))} {v}"
            for k, v in counts.items()
            if k not in main and k != "unchanged" and v
        ]
        fields.append(("Changes", " · ".join(parts)))
    return [
        {"type": "mrkdwn", "text": truncate(f"*{name}*\n{value}", FIELD_LIMIT)}
        for name, value in fields[:MAX_FIELDS]
    ]


def _objects(event: Event) -> str | None:
    """``*Objects*`` and one line per object (with its error), as many as fit, then a count."""
    objects = event.data.get("objects")
    lines: list[str] = []
    if isinstance(objects, Mapping):
        lines = [
            f"• `{escape(truncate(str(k), 200))}`: {escape(truncate(str(v), 300))}"
            for k, v in objects.items()
        ]
    elif isinstance(objects, list | tuple):
        lines = [f"• `{escape(truncate(str(o), 200))}`" for o in objects]
    if not lines:
        return None
    text = "*Objects*"
    budget = SECTION_LIMIT - 40  # room for the "and N more" line
    shown = 0
    for line in lines[:20]:
        if len(text) + 1 + len(line) > budget:
            break
        text += "\n" + line
        shown += 1
    if shown < len(lines):
        text += f"\n… and {len(lines) - shown} more"
    return text


def build_message(
    event: Event, *, gitea_hosts: Iterable[str] = (), gitlab_hosts: Iterable[str] = ()
) -> dict[str, Any]:
    """``{"text": fallback, "blocks": [...]}`` for one event."""
    header = header_text(event)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}}
    ]
    if event.message:
        if Severity(event.severity) is Severity.ERROR:
            text = _code_block(event.message, SECTION_LIMIT)
        else:
            text = truncate(escape(event.message), SECTION_LIMIT)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    fields = _fields(event, gitea_hosts, gitlab_hosts)
    if fields:
        blocks.append({"type": "section", "fields": fields})
    objects = _objects(event)
    if objects:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": objects}})
    context = f"`{event.name}`"
    if event.reason:
        context += f" · {escape(event.reason)}"
    context += f" · {event.time.strftime('%Y-%m-%d %H:%M:%S UTC')}"
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": truncate(context, SECTION_LIMIT)}],
        }
    )
    first_line = event.message.strip().splitlines()[0] if event.message.strip() else ""
    fallback = header + (f" — {first_line}" if first_line else "")
    return {"text": truncate(fallback, TEXT_LIMIT), "blocks": blocks}


APPROVE_ACTION = "gitopsd_approve"
REJECT_ACTION = "gitopsd_reject"
OBJECTS_SHOWN = 10


def who(by: str) -> str:
    """``<@U123>`` for ``slack:U123``; the name in backticks otherwise (``api:...``, ``timeout``)."""
    kind, _, rest = by.partition(":")
    if kind == "slack" and rest:
        return f"<@{escape(rest)}>"
    return f"`{escape(by)}`"


def _ref_list(title_: str, refs: Any) -> str:
    if not isinstance(refs, list) or not refs:
        return ""
    shown = ", ".join(f"`{escape(truncate(str(r), 120))}`" for r in refs[:OBJECTS_SHOWN])
    more = f" and {len(refs) - OBJECTS_SHOWN} more" if len(refs) > OBJECTS_SHOWN else ""
    return f"*{title_} ({len(refs)})*: {shown}{more}"


def approval_blocks(
    event: Event, *, gitea_hosts: Iterable[str] = (), gitlab_hosts: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """The request's blocks without the buttons: revision, commit, diff summary."""
    data: Mapping[str, Any] = event.data
    label, _sha = parse_revision(event.revision)
    previous = str(data.get("previous") or "")
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": truncate(f":raised_hand: {event.app}: approval requested", HEADER_LIMIT),
                "emoji": True,
            },
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": truncate(
                    f"`{escape(label)}` waits for approval before it is applied"
                    + (
                        f" (the app stays at `{escape(parse_revision(previous)[0])}`)"
                        if previous
                        else ""
                    ),
                    SECTION_LIMIT,
                ),
            },
        },
    ]
    fields = _fields(event, gitea_hosts, gitlab_hosts)
    commit = data.get("commit")
    if isinstance(commit, Mapping):
        if commit.get("author"):
            fields.append(
                {
                    "type": "mrkdwn",
                    "text": truncate(f"*Author*\n{escape(str(commit['author']))}", FIELD_LIMIT),
                }
            )
        if commit.get("message"):
            fields.append(
                {
                    "type": "mrkdwn",
                    "text": truncate(f"*Commit*\n{escape(str(commit['message']))}", FIELD_LIMIT),
                }
            )
    if data.get("expires"):
        fields.append(
            {
                "type": "mrkdwn",
                "text": f"*Expires*\n{escape(str(data['expires'])[:16].replace('T', ' '))} UTC",
            }
        )
    if fields:
        blocks.append({"type": "section", "fields": fields[:MAX_FIELDS]})
    diff = data.get("diff")
    if isinstance(diff, Mapping):
        if diff.get("error"):
            summary = f"*Diff*: not available ({escape(truncate(str(diff['error']), 300))})"
        else:
            parts = [
                _ref_list("Created", diff.get("created")),
                _ref_list("Changed", diff.get("changed")),
                _ref_list("Deleted", diff.get("deleted")),
            ]
            summary = "\n".join(p for p in parts if p) or "*Diff*: no object changes"
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": truncate(summary, SECTION_LIMIT)},
            }
        )
        lines = diff.get("lines")
        if isinstance(lines, list) and lines:
            text = _code_block(
                "\n".join(truncate(str(line), 200) for line in lines), SECTION_LIMIT - 40
            )
            if diff.get("more_lines"):
                text += f"\n… {diff['more_lines']} more line(s)"
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    return blocks


def approval_request(
    event: Event, *, gitea_hosts: Iterable[str] = (), gitlab_hosts: Iterable[str] = ()
) -> dict[str, Any]:
    """The ``approval-requested`` message: the request and Approve / Reject buttons."""
    value = json.dumps({"app": event.app, "revision": event.revision})
    blocks = approval_blocks(event, gitea_hosts=gitea_hosts, gitlab_hosts=gitlab_hosts)
    blocks.append(
        {
            "type": "actions",
            "block_id": "gitopsd_approval",
            "elements": [
                {
                    "type": "button",
                    "action_id": APPROVE_ACTION,
                    "style": "primary",
                    "text": {"type": "plain_text", "text": "Approve"},
                    "value": value,
                },
                {
                    "type": "button",
                    "action_id": REJECT_ACTION,
                    "style": "danger",
                    "text": {"type": "plain_text", "text": "Reject"},
                    "value": value,
                },
            ],
        }
    )
    label = parse_revision(event.revision)[0]
    return {
        "text": truncate(f":raised_hand: {event.app}: {label} waits for approval", TEXT_LIMIT),
        "blocks": blocks,
    }


def decided(request_blocks: list[dict[str, Any]], event: Event) -> dict[str, Any]:
    """The request message once decided: its blocks, no buttons, and the outcome."""
    by = str(event.data.get("by", ""))
    if event.name == "approval-granted":
        outcome = f":white_check_mark: Approved by {who(by)}"
    elif event.name == "approval-superseded":
        outcome = (
            f":fast_forward: Superseded by `{escape(parse_revision(by)[0])}`; a new request follows"
        )
    elif event.reason == "Timeout":
        outcome = ":hourglass: Not decided in time: not applied"
    else:
        outcome = f":no_entry: Rejected by {who(by)}: not applied"
    blocks = [b for b in request_blocks if b.get("type") != "actions"]
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": outcome}})
    return {"text": truncate(f"{event.app}: {outcome}", TEXT_LIMIT), "blocks": blocks}
