"""A push refreshes the apps whose files it changed first, then the rest of the repository's apps."""

import json

from gitopsd.server.push import parse_push, touched_first


def push(commits: list[dict] | None, **extra: object) -> bytes:
    body: dict = {"ref": "refs/heads/main", "repository": {"clone_url": "https://git.example/r.git"}, **extra}
    if commits is not None:
        body["commits"] = commits
    return json.dumps(body).encode()


def test_changed_paths_put_their_apps_first() -> None:
    p = parse_push("github", push([{"added": ["apps/a/new.yaml"], "modified": ["base/x.yaml"], "removed": []}]))
    assert p.paths == ("apps/a/new.yaml", "base/x.yaml")
    first, later = touched_first({"a": "apps/a", "ab": "apps/ab", "base": "base", "all": "."}, p)
    assert first == ["a", "all", "base"]
    assert later == ["ab"]  # a path prefix is not a directory prefix


def test_unknown_or_truncated_change_lists_refresh_everything_at_once() -> None:
    apps = {"a": "apps/a", "b": "apps/b"}
    gitlab = json.dumps({"ref": "refs/heads/main", "project": {"git_http_url": "https://git.example/r.git"},
                         "commits": [{"modified": ["apps/a/x"]}], "total_commits_count": 40}).encode()
    cases = [("github", push(None)), ("github", push([{"id": str(i), "modified": ["x"]} for i in range(20)])),
             ("gitlab", gitlab)]
    for provider, body in cases:
        p = parse_push(provider, body)
        assert p.paths == ()
        assert touched_first(apps, p) == (["a", "b"], [])
