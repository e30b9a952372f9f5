"""Push webhooks: signature checks, payload parsing, and matching a push to applications.

Providers:

- GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``;
  event in ``X-GitHub-Event`` (``push``; ``ping`` is answered).
- GitLab: ``X-Gitlab-Token`` is the secret itself; event in ``X-Gitlab-Event``
  (``Push Hook``, ``Tag Push Hook``).
- Gitea: ``X-Gitea-Signature: <hex HMAC-SHA256 of the raw body>``; event in ``X-Gitea-Event``.

Every comparison is constant-time (:func:`hmac.compare_digest`). Matching follows Argo CD:
repository URLs are compared after :func:`normalise_repo_url` (scheme, ``user@``, port,
``host:path`` vs ``host/path``, trailing ``.git`` and ``/``, case), and the app's ref must be
the pushed branch or tag (an app without a ref follows the default branch; an app with a
``semver`` range follows every tag push; an app pinned to a commit SHA never matches).

Replays: a signed request can be captured and sent again. Every provider names each delivery
(``X-GitHub-Delivery``, ``X-Gitlab-Event-UUID``, ``X-Gitea-Delivery``); :class:`DeliveryLog`
remembers the IDs of verified requests for an hour and a repeat is answered 202 and ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gitopsd.core.lazyre import LazyPattern
from gitopsd.server.viewdata import PushTarget

PROVIDERS = ("github", "gitlab", "gitea")

_SCP = LazyPattern(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>.*)$")
_SHA = LazyPattern(r"^[0-9a-fA-F]{40}([0-9a-fA-F]{24})?$")


class WebhookError(Exception):
    """A request that cannot be processed; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def normalise_repo_url(url: str) -> str:
    """One spelling per repository, for matching: ``host/path`` in lower case.

    ``https://User@GitHub.com:443/Org/Repo.git/``, ``ssh://git@github.com:22/org/repo`` and
    ``git@github.com:org/repo.git`` all become ``github.com/org/repo``. ``file://`` URLs keep
    their path (lower-cased, no ``.git``).
    """
    url = url.strip()
    if not url:
        return ""
    if "://" not in url:
        m = _SCP.match(url)
        if m is None:
            return url.lower().rstrip("/").removesuffix(".git")
        url = f"ssh://{m['host']}/{m['path'].lstrip('/')}"
    scheme, _, rest = url.partition("://")
    if scheme.lower() == "file":
        return "file://" + rest.rstrip("/").removesuffix(".git").lower()
    authority, _, path = rest.partition("/")
    host = authority.rpartition("@")[2]
    if host.startswith("["):  # [ipv6]:port
        host = host[: host.find("]") + 1]
    else:
        host = host.partition(":")[0]
    path = path.strip("/").removesuffix(".git").rstrip("/")
    return f"{host}/{path}".lower()


@dataclass(frozen=True, slots=True)
class Push:
    """One push, as far as matching is concerned."""

    provider: str
    urls: tuple[str, ...]  # every URL of the repository in the payload, normalised
    ref: str  # full ref: refs/heads/main, refs/tags/v1
    default_branch: str = ""
    after: str = ""
    # Files the push added, modified or removed (empty when the payload does not say, or
    # when GitHub truncated its commit list): used to refresh the apps they touch first.
    paths: tuple[str, ...] = ()

    @property
    def branch(self) -> str:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else ""

    @property
    def tag(self) -> str:
        return self.ref.removeprefix("refs/tags/") if self.ref.startswith("refs/tags/") else ""


def verify(provider: str, secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Check the request's signature or token; raise WebhookError(401) when it is missing or wrong.

    The error message never contains the secret, the signature or the payload.
    """
    key = secret.encode()
    if provider == "gitlab":
        token = headers.get("X-Gitlab-Token", "")
        if not token:
            raise WebhookError(401, "missing X-Gitlab-Token")
        if not hmac.compare_digest(token.encode(), key):
            raise WebhookError(401, "X-Gitlab-Token does not match")
        return
    header = "X-Hub-Signature-256" if provider == "github" else "X-Gitea-Signature"
    given = headers.get(header, "").strip()
    if provider == "github":
        if not given.startswith("sha256="):
            raise WebhookError(401, f"missing or malformed {header}")
        given = given[len("sha256=") :]
    if not given:
        raise WebhookError(401, f"missing {header}")
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.lower().encode(), expected.encode()):
        raise WebhookError(401, f"{header} does not match the body")


DELIVERY_HEADERS = {"github": "X-GitHub-Delivery", "gitlab": "X-Gitlab-Event-UUID", "gitea": "X-Gitea-Delivery"}


def delivery_id(provider: str, headers: Mapping[str, str]) -> str:
    """The provider's ID of this delivery ("" when the request carries none)."""
    header = DELIVERY_HEADERS.get(provider)
    return headers.get(header, "").strip()[:200] if header else ""


class DeliveryLog:
    """Delivery IDs of verified webhook requests, remembered for ``ttl`` seconds (bounded).

    Args:
        ttl: How long a delivery ID is remembered (providers retry within minutes).
        max_entries: The oldest IDs are forgotten beyond this many.
        clock: A monotonic clock (tests pass a fake one).
    """

    def __init__(self, ttl: float = 3600.0, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def first_time(self, provider: str, delivery: str) -> bool:
        """Record ``delivery``; False when it was already received within ``ttl`` (a replay).

        A request without a delivery ID cannot be recognised and always counts as new.
        """
        if not delivery:
            return True
        now = self._clock()
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at < self.ttl and len(self._seen) < self.max_entries:
                break
            del self._seen[oldest]
        key = (provider, delivery)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


def event_kind(provider: str, headers: Mapping[str, str]) -> str:
    """``push``, ``ping`` or the provider's own event name (anything else is ignored)."""
    if provider == "github":
        return headers.get("X-GitHub-Event", "").lower()
    if provider == "gitea":
        return headers.get("X-Gitea-Event", "").lower()
    name = headers.get("X-Gitlab-Event", "")
    return "push" if name in ("Push Hook", "Tag Push Hook") else name.lower()


def parse_push(provider: str, body: bytes) -> Push:
    """The repository URLs and ref of a push payload; WebhookError(400) when it is not one."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookError(400, "body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookError(400, "payload is not a JSON object")
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref.startswith("refs/"):
        raise WebhookError(400, "payload has no ref")
    if provider == "gitlab":
        repo = payload.get("project") or {}
        keys = ("git_http_url", "git_ssh_url", "web_url", "http_url", "ssh_url")
        extra = payload.get("repository") or {}
        raw = [_get(repo, k) for k in keys] + [_get(extra, k) for k in ("git_http_url", "git_ssh_url", "homepage", "url")]
    else:
        repo = payload.get("repository") or {}
        raw = [_get(repo, k) for k in ("clone_url", "html_url", "ssh_url", "git_url", "url")]
    urls = tuple(dict.fromkeys(normalise_repo_url(u) for u in raw if u))
    if not urls:
        raise WebhookError(400, "payload names no repository URL")
    default_branch = _get(repo, "default_branch") if isinstance(repo, dict) else ""
    return Push(provider, urls, ref, default_branch, str(payload.get("after") or ""), _changed_paths(payload))


MAX_COMMITS_LISTED = 20
"""GitHub lists at most 20 commits in a push payload; a full list may be truncated."""


def _changed_paths(payload: dict[str, Any]) -> tuple[str, ...]:
    """Every file the payload's commits added, modified or removed; () when unknown."""
    commits = payload.get("commits")
    if not isinstance(commits, list) or not commits or len(commits) >= MAX_COMMITS_LISTED:
        return ()
    total = payload.get("total_commits_count")  # GitLab says how many there were
    if isinstance(total, int) and total > len(commits):
        return ()
    paths: list[str] = []
    for commit in commits:
        if not isinstance(commit, dict):
            return ()
        for key in ("added", "modified", "removed"):
            files = commit.get(key) or []
            if not isinstance(files, list):
                return ()
            paths.extend(f for f in files if isinstance(f, str))
    return tuple(dict.fromkeys(paths))


def touched_first(apps: Mapping[str, str], push: Push) -> tuple[list[str], list[str]]:
    """Split matched apps (name -> path in the repository) into (touched by the push, the rest).

    An app is touched when a changed file lies under its path. The rest may still depend on
    the change (a Kustomize overlay reading ``../base``), so they are refreshed too, just
    after. Without a list of changed files, every app counts as touched.
    """
    if not push.paths:
        return sorted(apps), []
    touched, rest = [], []
    for name, path in sorted(apps.items()):
        prefix = path.strip("/")
        if prefix in ("", ".") or any(p == prefix or p.startswith(prefix + "/") for p in push.paths):
            touched.append(name)
        else:
            rest.append(name)
    return touched, rest


def _get(mapping: Any, key: str) -> str:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, str) else ""


def ref_matches(app_ref: str, semver: str, push: Push) -> bool:
    """Does an app following ``app_ref`` (or a ``semver`` range) care about ``push``?"""
    if semver:
        return bool(push.tag)
    if not app_ref or app_ref == "HEAD":
        if not push.branch:
            return False
        return not push.default_branch or push.branch == push.default_branch
    if _SHA.match(app_ref):
        return False  # pinned to a commit: no push moves it
    if app_ref.startswith("refs/"):
        return app_ref == push.ref
    return app_ref in (push.branch, push.tag)


def match_apps(apps: Iterable[PushTarget], push: Push) -> list[str]:
    """Names of the apps (or appsets) whose source ``push`` should refresh, sorted."""
    urls = set(push.urls)
    return sorted(
        a.app for a in apps if a.url and normalise_repo_url(a.url) in urls and ref_matches(a.ref, a.semver, push)
    )
