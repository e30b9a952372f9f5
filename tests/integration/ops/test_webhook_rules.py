"""Signature checks, URL normalisation and push matching, without a server."""

from __future__ import annotations

import json

import pytest

from gitopsd.server.push import (
    Push,
    WebhookError,
    match_apps,
    normalise_repo_url,
    parse_push,
    ref_matches,
    verify,
)
from gitopsd.server.viewdata import PushTarget

from .conftest import GITEA_SECRET, GITHUB_SECRET, GITLAB_TOKEN, gitea_signature, github_signature


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/Acme/Web.git",
        "https://github.com/acme/web",
        "http://github.com/acme/web/",
        "https://user@GitHub.com:443/acme/web.git",
        "ssh://git@github.com:22/acme/web.git",
        "git@github.com:acme/web.git",
        "github.com:acme/web",
        "git://github.com/acme/web.git",
    ],
)
def test_spellings_of_one_repository_normalise_alike(url: str) -> None:
    assert normalise_repo_url(url) == "github.com/acme/web"


def test_different_repositories_stay_different() -> None:
    assert normalise_repo_url("https://github.com/acme/web") != normalise_repo_url("https://github.com/acme/web2")
    assert normalise_repo_url("https://github.com/acme/web") != normalise_repo_url("https://gitlab.com/acme/web")
    assert normalise_repo_url("https://github.com/acme/sub/web") != normalise_repo_url("https://github.com/acme/web")


def _push(ref: str, default: str = "main") -> Push:
    return Push("github", ("github.com/acme/web",), ref, default)


@pytest.mark.parametrize(
    ("app_ref", "semver", "ref", "expected"),
    [
        ("main", "", "refs/heads/main", True),
        ("refs/heads/main", "", "refs/heads/main", True),
        ("main", "", "refs/heads/dev", False),
        ("", "", "refs/heads/main", True),  # no ref: the default branch
        ("", "", "refs/heads/dev", False),
        ("HEAD", "", "refs/heads/main", True),
        ("v1.2.0", "", "refs/tags/v1.2.0", True),
        ("v1.2.0", "", "refs/tags/v1.3.0", False),
        ("refs/tags/v1.2.0", "", "refs/tags/v1.2.0", True),
        ("main", "", "refs/tags/main-2", False),
        ("", ">=1.0", "refs/tags/v1.3.0", True),  # semver follows every tag push
        ("", ">=1.0", "refs/heads/main", False),
        ("0123456789abcdef0123456789abcdef01234567", "", "refs/heads/main", False),  # pinned commit
    ],
)
def test_ref_matching(app_ref: str, semver: str, ref: str, expected: bool) -> None:
    assert ref_matches(app_ref, semver, _push(ref)) is expected


def test_match_apps_by_url_and_ref() -> None:
    apps = [
        PushTarget("web", "git@github.com:acme/web.git", "main"),
        PushTarget("web-dev", "https://github.com/acme/web", "dev"),
        PushTarget("other", "https://github.com/acme/other.git", "main"),
        PushTarget("web-too", "ssh://git@GITHUB.com:22/acme/web", "main"),
        PushTarget("no-url", "", "main"),
    ]
    assert match_apps(apps, _push("refs/heads/main")) == ["web", "web-too"]
    assert match_apps(apps, _push("refs/heads/dev")) == ["web-dev"]
    assert match_apps(apps, _push("refs/heads/feature")) == []


def test_github_signature() -> None:
    body = b'{"ref": "refs/heads/main"}'
    verify("github", GITHUB_SECRET, {"X-Hub-Signature-256": github_signature(body)}, body)
    for headers, text in [
        ({}, "missing"),
        ({"X-Hub-Signature-256": github_signature(body, "forged")}, "does not match"),
        ({"X-Hub-Signature-256": github_signature(body)[7:]}, "malformed"),  # no sha256= prefix
    ]:
        with pytest.raises(WebhookError) as info:
            verify("github", GITHUB_SECRET, headers, body)
        assert info.value.status == 401 and text in info.value.message
    with pytest.raises(WebhookError):  # a replayed signature over an altered body
        verify("github", GITHUB_SECRET, {"X-Hub-Signature-256": github_signature(body)}, body + b" ")


def test_gitea_and_gitlab_secrets() -> None:
    body = b"{}"
    verify("gitea", GITEA_SECRET, {"X-Gitea-Signature": gitea_signature(body)}, body)
    with pytest.raises(WebhookError):
        verify("gitea", GITEA_SECRET, {"X-Gitea-Signature": gitea_signature(body, "nope")}, body)
    verify("gitlab", GITLAB_TOKEN, {"X-Gitlab-Token": GITLAB_TOKEN}, body)
    for headers in ({}, {"X-Gitlab-Token": GITLAB_TOKEN + "x"}):
        with pytest.raises(WebhookError) as info:
            verify("gitlab", GITLAB_TOKEN, headers, body)
        assert GITLAB_TOKEN not in info.value.message


def test_parse_payloads() -> None:
    github = {
        "ref": "refs/heads/main",
        "after": "abc",
        "repository": {
            "clone_url": "https://github.com/acme/web.git",
            "ssh_url": "git@github.com:acme/web.git",
            "default_branch": "main",
        },
    }
    push = parse_push("github", json.dumps(github).encode())
    assert push.urls == ("github.com/acme/web",) and push.branch == "main" and push.default_branch == "main"
    gitlab = {"ref": "refs/tags/v1", "project": {"git_http_url": "https://gitlab.com/acme/web.git", "default_branch": "main"}}
    push = parse_push("gitlab", json.dumps(gitlab).encode())
    assert push.tag == "v1" and push.urls == ("gitlab.com/acme/web",)
    for bad in (b"not json", b"[]", b'{"repository": {}}', b'{"ref": "refs/heads/x", "repository": {}}'):
        with pytest.raises(WebhookError) as info:
            parse_push("github", bad)
        assert info.value.status == 400
