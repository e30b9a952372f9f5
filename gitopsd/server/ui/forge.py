"""Links to a revision's commit page on known forges (GitHub, GitLab, Gitea-style hosts)."""

from __future__ import annotations

from urllib.parse import urlsplit

from gitopsd.core.lazyre import LazyPattern

_SCP = LazyPattern(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>(?!//).+)$")
_HEX = LazyPattern(r"^[0-9a-f]{7,64}$")

# Host name hints -> the path of a commit page below the repository.
_FORGES = (
    ("github", "/commit/"),
    ("gitlab", "/-/commit/"),
    ("gitea", "/commit/"),
    ("forgejo", "/commit/"),
    ("codeberg", "/commit/"),
)


def repository_page(url: str) -> tuple[str, str] | None:
    """``(https://host/owner/repo, commit path)`` for a known forge's git URL, else None.

    Credentials in the URL are dropped; only https pages are linked.
    """
    if not url:
        return None
    m = _SCP.match(url) if "://" not in url else None
    if m:
        host, path = m["host"], m["path"]
    else:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http", "ssh", "git"):
            return None
        host, path = parts.hostname or "", parts.path
    path = path.strip("/").removesuffix(".git").strip("/")
    if not host or path.count("/") < 1:
        return None
    for hint, commit in _FORGES:
        if hint in host.lower():
            return f"https://{host.lower()}/{path}", commit
    return None


def commit_hash(revision: str) -> str:
    """The commit hash of a revision like ``main@sha1:<hex>``, or ""."""
    tail = revision.rpartition(":")[2] if "sha1:" in revision else ""
    return tail if _HEX.match(tail) else ""


def commit_url(source_url: str, revision: str) -> str:
    """The commit page of ``revision`` when the source is on a known forge, else ""."""
    digest = commit_hash(revision)
    page = repository_page(source_url)
    if not digest or page is None:
        return ""
    return f"{page[0]}{page[1]}{digest}"


def short_revision(revision: str) -> str:
    """``main@sha1:0123456789ab...`` -> ``main@0123456`` (other revisions cut to 24 characters)."""
    ref, at, rest = revision.partition("@")
    if at and ":" in rest:
        return f"{ref}@{rest.rpartition(':')[2][:7]}"
    return revision if len(revision) <= 24 else revision[:23] + "…"
