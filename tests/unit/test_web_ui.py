"""The web page's pure parts: commit links, sessions, sorting and filtering."""

from __future__ import annotations

import pytest

from gitopsd.core.models import Health, SyncStatus
from gitopsd.server.auth import Access
from gitopsd.server.ui import matches, worst_first
from gitopsd.server.ui.forge import commit_url, short_revision
from gitopsd.server.ui.sessions import IDLE_TIMEOUT, Sessions
from gitopsd.server.view import AppSummary

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/org/repo.git", f"https://github.com/org/repo/commit/{SHA}"),
        ("git@github.com:org/repo.git", f"https://github.com/org/repo/commit/{SHA}"),
        ("ssh://git@gitlab.example.com/group/sub/repo.git", f"https://gitlab.example.com/group/sub/repo/-/commit/{SHA}"),
        ("https://user:hunter2@gitea.example.org/org/repo", f"https://gitea.example.org/org/repo/commit/{SHA}"),
        ("https://codeberg.org/org/repo/", f"https://codeberg.org/org/repo/commit/{SHA}"),
        ("https://git.internal/org/repo.git", ""),  # unknown forge: no link
        ("file:///srv/git/repo.git", ""),
        ("https://github.com/justone", ""),
        ("", ""),
    ],
)
def test_commit_links_for_known_forges_only(url: str, expected: str) -> None:
    assert commit_url(url, f"main@sha1:{SHA}") == expected
    assert "hunter2" not in commit_url(url, f"main@sha1:{SHA}")


def test_no_link_without_a_commit_hash() -> None:
    assert commit_url("https://github.com/org/repo", "1.2.3@sha256:abc") == ""
    assert commit_url("https://github.com/org/repo", "main@sha1:not-hex") == ""


def test_short_revisions() -> None:
    assert short_revision(f"main@sha1:{SHA}") == "main@0123456"
    assert short_revision("sha256:" + "a" * 64).endswith("…") and len(short_revision("sha256:" + "a" * 64)) == 24
    assert short_revision("") == ""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_end_on_logout_idle_and_token_change() -> None:
    clock = Clock()
    sessions = Sessions(clock)
    fingerprints = {Access.WRITE: "fp-write", Access.READ: "fp-read"}
    sid = sessions.create(Access.WRITE, "fp-write")
    assert "fp-write" not in sid and len(sid) >= 40
    session = sessions.get(sid, fingerprints.__getitem__)
    assert session is not None and session.can_write
    assert session.csrf_ok(session.csrf) and not session.csrf_ok("") and not session.csrf_ok(session.csrf + "x")
    assert sessions.get("forged", fingerprints.__getitem__) is None
    # idle too long
    clock.now += IDLE_TIMEOUT + 1
    assert sessions.get(sid, fingerprints.__getitem__) is None
    # the token it was opened with changed (reload with a new token file)
    sid = sessions.create(Access.READ, "fp-read")
    assert sessions.get(sid, fingerprints.__getitem__) is not None
    fingerprints[Access.READ] = "fp-read-2"
    assert sessions.get(sid, fingerprints.__getitem__) is None
    # logout
    sid = sessions.create(Access.WRITE, "fp-write")
    sessions.drop(sid)
    assert sessions.get(sid, fingerprints.__getitem__) is None and len(sessions) == 0


def app(name: str, **fields: object) -> AppSummary:
    return AppSummary(name=name, cluster="c", namespace="ns", source_type="git", **fields)  # type: ignore[arg-type]


def test_worst_first() -> None:
    apps = [
        app("fine", sync=SyncStatus.SYNCED, health=Health.HEALTHY),
        app("drift", sync=SyncStatus.OUT_OF_SYNC, health=Health.HEALTHY),
        app("down", sync=SyncStatus.SYNCED, health=Health.DEGRADED),
        app("failed", sync=SyncStatus.SYNCED, health=Health.HEALTHY, last_result="failed"),
        app("rolling", sync=SyncStatus.SYNCED, health=Health.PROGRESSING),
    ]
    assert [a.name for a in sorted(apps, key=worst_first)] == ["down", "rolling", "drift", "failed", "fine"]


def test_filters() -> None:
    a = app("payments-api", sync=SyncStatus.OUT_OF_SYNC, health=Health.HEALTHY, last_message="1 object differs")
    assert matches(a, "", "", "", "")
    assert matches(a, "OutOfSync", "Healthy", "c", "payments differs")
    assert not matches(a, "Synced", "", "", "")
    assert not matches(a, "", "Degraded", "", "")
    assert not matches(a, "", "", "other", "")
    assert not matches(a, "", "", "", "payments billing")
