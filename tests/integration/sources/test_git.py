"""The git source against real repositories: file://, git daemon, smart HTTP (with basic auth)."""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import yaml

from gitopsd import Artifact, PluginContext, SourceError
from gitopsd_plugins.git import GitOptions, GitSource, normalise_url
from tests.turns import turns_apart

from .conftest import CONFIGMAP, HTTP_PASSWORD, HTTP_USER, HTTPServer, Repo, git

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def source(ctx: PluginContext, **options: object) -> GitSource:
    return GitSource(GitOptions.model_validate(options), ctx)


def configmap_value(path: Path) -> str:
    return str(yaml.safe_load((path / "cm.yaml").read_text())["data"]["value"])


async def test_file_url_branch_fetch_and_revision(ctx: PluginContext, repo: Repo) -> None:
    head = repo.commit("second", {"deploy/cm.yaml": CONFIGMAP.format(name="cm", value="2")})
    repo.push()
    src = source(ctx, url=repo.bare.as_uri(), ref="main", path="deploy")
    revision = await src.latest_revision()
    assert revision == f"main@sha1:{head}"
    artifact = await src.fetch(revision)
    assert artifact.revision == revision
    assert configmap_value(artifact.path) == "2"
    assert artifact.digest.startswith("sha256:")
    # content-addressed: the tree dir is named by the root tree id
    tree = git("rev-parse", f"{head}^{{tree}}", cwd=repo.work)
    assert artifact.path == ctx.state_dir / "cache" / "git-trees" / tree / "deploy"


async def test_default_ref_follows_remote_head(ctx: PluginContext, repo: Repo) -> None:
    head = git("rev-parse", "HEAD", cwd=repo.work)
    src = source(ctx, url=repo.bare.as_uri())
    assert await src.latest_revision() == f"main@sha1:{head}"


async def test_git_daemon_tag_sha_and_semver(ctx: PluginContext, repo: Repo, git_daemon: str) -> None:
    v1 = repo.commit("v1", {"deploy/cm.yaml": CONFIGMAP.format(name="cm", value="v1.0.0")})
    repo.tag("v1.0.0")
    v12 = repo.commit("v1.2", {"deploy/cm.yaml": CONFIGMAP.format(name="cm", value="v1.2.0")})
    repo.tag("v1.2.0")
    repo.commit("v2", {"deploy/cm.yaml": CONFIGMAP.format(name="cm", value="v2.0.0")})
    repo.tag("v2.0.0")
    repo.commit("pre", {"deploy/cm.yaml": CONFIGMAP.format(name="cm", value="v1.9.0-rc.1")})
    repo.tag("v1.9.0-rc.1")
    repo.push()
    url = f"{git_daemon}/app.git"

    tagged = source(ctx, url=url, ref="v1.0.0", path="deploy")
    rev = await tagged.latest_revision()
    assert rev == f"v1.0.0@sha1:{v1}"  # the peeled commit, not the tag object
    assert configmap_value((await tagged.fetch(rev)).path) == "v1.0.0"

    ranged = source(ctx, url=url, semver=">=1.0.0 <2", path="deploy")
    rev = await ranged.latest_revision()
    assert rev == f"v1.2.0@sha1:{v12}"  # highest match; the pre-release is not chosen
    assert configmap_value((await ranged.fetch(rev)).path) == "v1.2.0"

    pinned = source(ctx, url=url, ref=v1, path="deploy")
    assert await pinned.latest_revision() == f"sha1:{v1}"
    assert configmap_value((await pinned.fetch(f"sha1:{v1}")).path) == "v1.0.0"


async def test_smart_http_with_basic_auth_from_files(
    ctx: PluginContext, repo: Repo, git_http_auth: HTTPServer, tmp_path: Path
) -> None:
    user = tmp_path / "user"
    user.write_text(HTTP_USER + "\n")
    password = tmp_path / "password"
    password.write_text(HTTP_PASSWORD + "\n")
    url = f"{git_http_auth.url}/app.git"
    src = source(ctx, url=url, path="deploy", username_file=str(user), password_file=str(password))
    rev = await src.latest_revision()
    assert configmap_value((await src.fetch(rev)).path) == "1"

    # Wrong password: AuthFailed, and the secret appears nowhere in the error.
    bad = tmp_path / "bad"
    bad.write_text("wrong-password-xyz\n")
    other = ctx_copy(ctx, tmp_path / "state2")
    wrong = source(other, url=url, username_file=str(user), password_file=str(bad))
    with pytest.raises(SourceError) as info:
        await wrong.latest_revision()
    assert info.value.reason == "AuthFailed"
    assert "wrong-password-xyz" not in str(info.value) and HTTP_PASSWORD not in str(info.value)

    # No credentials at all: AuthFailed too, without hanging on a prompt.
    anonymous = source(ctx_copy(ctx, tmp_path / "state3"), url=url)
    with pytest.raises(SourceError) as info:
        await anonymous.latest_revision()
    assert info.value.reason == "AuthFailed"


def command_lines() -> list[str]:
    lines = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace"))
            except OSError:
                pass
    return lines


def ctx_copy(ctx: PluginContext, state: Path) -> PluginContext:
    state.mkdir(exist_ok=True)
    return PluginContext(state_dir=state, config_dir=ctx.config_dir, tools=ctx.tools)


async def test_credentials_never_in_process_arguments(
    ctx: PluginContext, repo: Repo, git_http_auth: HTTPServer, tmp_path: Path
) -> None:
    """Watch every process while the fetch runs: no argv carries the password."""
    user = tmp_path / "user"
    user.write_text(HTTP_USER)
    password = tmp_path / "password"
    password.write_text(HTTP_PASSWORD)
    src = source(ctx, url=f"{git_http_auth.url}/app.git", username_file=str(user), password_file=str(password))
    seen: list[str] = []
    done = anyio.Event()

    async def watch() -> None:
        while not done.is_set():
            seen.extend(command_lines())
            await anyio.sleep(0.005)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await src.fetch(await src.latest_revision())
        done.set()
    assert any("git" in cmd for cmd in seen)
    assert not any(HTTP_PASSWORD in cmd for cmd in seen)


async def test_shared_mirror_single_flight_and_no_refetch(ctx: PluginContext, repo: Repo, git_http: HTTPServer) -> None:
    url = f"{git_http.url}/app.git"
    apps = [source(ctx, url=url, path="deploy") for _ in range(5)]
    # a different spelling of the same repository shares the mirror too
    apps.append(source(ctx, url=f"{git_http.url.upper().replace('HTTP://', 'http://')}/app.git/", path="deploy"))
    revisions: list[str] = []

    async def poll(src: GitSource) -> None:
        revisions.append(await src.latest_revision())

    async with anyio.create_task_group() as tg:
        for src in apps:
            tg.start_soon(poll, src)
    assert len(set(revisions)) == 1
    assert apps[0].repo is apps[-1].repo
    assert apps[0].repo.ls_remote_count == 1
    ls_remote_requests = [r for r in git_http.requests if "info/refs" in r]
    assert len(ls_remote_requests) == 1

    artifacts = []

    async def fetch(src: GitSource) -> None:
        artifacts.append(await src.fetch(revisions[0]))

    async with anyio.create_task_group() as tg:
        for src in apps:
            tg.start_soon(fetch, src)
    assert len({a.path for a in artifacts}) == 1
    assert apps[0].repo.fetch_count == 1
    mirrors = list((ctx.state_dir / "cache" / "git").glob("*.git"))
    assert len(mirrors) == 1

    # unchanged revision: nothing is fetched again
    before = len(git_http.requests)
    await apps[0].fetch(revisions[0])
    assert apps[0].repo.fetch_count == 1
    assert len(git_http.requests) == before


async def test_a_fresh_poll_waits_on_nothing_and_waiters_share_the_one_in_flight(
    ctx: PluginContext, repo: Repo, git_http: HTTPServer
) -> None:
    url = f"{git_http.url}/app.git"
    apps = [source(ctx, url=url, path="deploy") for _ in range(50)]
    revisions: list[str] = []

    async def poll(src: GitSource) -> None:
        revisions.append(await src.latest_revision())

    async with anyio.create_task_group() as tg:  # 49 of them arrive while the ls-remote runs
        for src in apps:
            tg.start_soon(poll, src)
    assert len(revisions) == 50 and len(set(revisions)) == 1
    assert apps[0].repo.ls_remote_count == 1
    assert apps[0].repo.polling is None

    # Within poll_cache the shared result is returned without suspending (no lock to take):
    # the coroutine finishes on its first step.
    step = apps[1].latest_revision()
    try:
        step.send(None)
    except StopIteration as done:
        assert done.value == revisions[0]
    else:
        step.close()
        pytest.fail("a poll answered from the shared result suspended")
    assert apps[0].repo.ls_remote_count == 1


async def test_new_commit_is_seen_after_poll_cache(ctx: PluginContext, repo: Repo, git_daemon: str) -> None:
    src = source(ctx, url=f"{git_daemon}/app.git", path="deploy", poll_cache=0)
    first = await src.latest_revision()
    await src.fetch(first)
    head = repo.commit("next", {"deploy/cm.yaml": CONFIGMAP.format(name="cm", value="3")})
    repo.push()
    second = await src.latest_revision()
    assert second == f"main@sha1:{head}" != first
    assert configmap_value((await src.fetch(second)).path) == "3"


def test_normalise_url() -> None:
    assert normalise_url("git@GitHub.com:org/repo.git") == "ssh://git@github.com/org/repo"
    assert normalise_url("https://GitHub.com/org/repo.git/") == "https://github.com/org/repo"
    assert normalise_url("https://github.com/org/repo") == normalise_url("HTTPS://github.com/org/repo.git")


def test_credentials_in_url_refused() -> None:
    with pytest.raises(ValueError, match="credentials in the URL are not allowed"):
        GitOptions(url="https://bob:hunter2@example.test/repo.git")


# -- errors ------------------------------------------------------------------------------


async def test_unknown_ref(ctx: PluginContext, repo: Repo, git_daemon: str) -> None:
    src = source(ctx, url=f"{git_daemon}/app.git", ref="no-such-branch")
    with pytest.raises(SourceError, match=r"ref 'no-such-branch' not found \(branches: main\)") as info:
        await src.latest_revision()
    assert info.value.reason == "RefNotFound"


async def test_unknown_commit(ctx: PluginContext, repo: Repo) -> None:
    src = source(ctx, url=repo.bare.as_uri(), ref="0" * 40)
    with pytest.raises(SourceError, match=r"commit 0{40} not found") as info:
        await src.fetch(await src.latest_revision())
    assert info.value.reason == "RefNotFound"


async def test_no_tag_matches_semver(ctx: PluginContext, repo: Repo) -> None:
    repo.tag("v0.1.0")
    src = source(ctx, url=repo.bare.as_uri(), semver=">=1.0.0")
    with pytest.raises(SourceError, match=r"no tag matches semver range '>=1.0.0' \(tags: v0.1.0\)") as info:
        await src.latest_revision()
    assert info.value.reason == "RefNotFound"


async def test_missing_path(ctx: PluginContext, repo: Repo) -> None:
    src = source(ctx, url=repo.bare.as_uri(), path="nope/here")
    rev = await src.latest_revision()
    with pytest.raises(SourceError, match=r"path 'nope/here' does not exist at main@sha1:") as info:
        await src.fetch(rev)
    assert info.value.reason == "PathNotFound"


@pytest.mark.parametrize("which", ["daemon", "http", "file"])
async def test_unknown_repository(
    ctx: PluginContext, repo: Repo, git_daemon: str, git_http: HTTPServer, tmp_path: Path, which: str
) -> None:
    url = {
        "daemon": f"{git_daemon}/missing.git",
        "http": f"{git_http.url}/missing.git",
        "file": (tmp_path / "missing.git").as_uri(),
    }[which]
    with pytest.raises(SourceError) as info:
        await source(ctx, url=url).latest_revision()
    assert info.value.reason == "RepositoryNotFound", str(info.value)


async def test_network_failure(ctx: PluginContext) -> None:
    from .conftest import free_port

    port = free_port()  # nothing listens there
    with pytest.raises(SourceError) as info:
        await source(ctx, url=f"git://127.0.0.1:{port}/app.git").latest_revision()
    assert info.value.reason == "NetworkError", str(info.value)
    with pytest.raises(SourceError) as info:
        await source(ctx, url=f"http://127.0.0.1:{port}/app.git").latest_revision()
    assert info.value.reason == "NetworkError", str(info.value)


async def test_hanging_server_times_out(ctx: PluginContext, hanging_server: int) -> None:
    src = source(ctx, url=f"git://127.0.0.1:{hanging_server}/app.git", timeout=1.5)
    with anyio.fail_after(10):
        with pytest.raises(SourceError, match=r"timed out after 1.5s") as info:
            await src.latest_revision()
    assert info.value.reason == "Timeout"


async def test_symlink_escaping_repository_is_refused(ctx: PluginContext, repo: Repo) -> None:
    os.symlink("/etc/passwd", repo.work / "deploy" / "passwd.yaml")
    repo.commit("evil")
    repo.push()
    src = source(ctx, url=repo.bare.as_uri(), path="deploy")
    with pytest.raises(SourceError, match=r"symlink 'deploy/passwd.yaml' -> '/etc/passwd' points outside") as info:
        await src.fetch(await src.latest_revision())
    assert info.value.reason == "UnsafeArchive"
    assert not list((ctx.state_dir / "cache" / "git-trees").glob("[0-9a-f]*"))


def counting_git(tmp_path: Path) -> tuple[str, Path]:
    """A real ``git`` wrapper (a script on disk) that logs each command's subcommand, then runs git."""
    log = tmp_path / "git-commands.log"
    wrapper = tmp_path / "git-wrapper"
    real = shutil.which("git")
    assert real, "git is needed"
    wrapper.write_text(f'#!/bin/sh\necho "$1" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper), log


async def test_apps_of_one_new_commit_look_up_its_tree_once(ctx: PluginContext, repo: Repo, tmp_path: Path) -> None:
    """Many apps (different paths) fetching a new commit at once: one ``git rev-parse`` in all, not one per app."""
    repo.commit("apps", {f"app{i}/cm.yaml": CONFIGMAP.format(name=f"cm{i}", value=str(i)) for i in range(8)})
    repo.push()
    wrapper, log = counting_git(tmp_path)
    counted = PluginContext(state_dir=ctx.state_dir, config_dir=ctx.config_dir, tools=replace(ctx.tools, git=wrapper))
    apps = [source(counted, url=repo.bare.as_uri(), ref="main", path=f"app{i}") for i in range(8)]
    revision = await apps[0].latest_revision()
    artifacts = []

    async def fetch(src: GitSource) -> None:
        artifacts.append(await src.fetch(revision))

    async with anyio.create_task_group() as tg:
        for src in apps:
            tg.start_soon(fetch, src)
    assert sorted(configmap_value(a.path) for a in artifacts) == [str(i) for i in range(8)]
    commands = log.read_text().split()
    assert commands.count("rev-parse") == 1, commands
    assert commands.count("fetch") == 1, commands


async def test_apps_waiting_for_one_tree_all_get_it_at_once(ctx: PluginContext, repo: Repo) -> None:
    """Apps that wait while one of them extracts a new commit's tree all continue in the same
    turn of the event loop, not one per turn as through a lock (at a cold start the others'
    work runs in every turn: the 100th app of one repository rendered ~2 s after the first)."""
    apps_count = 20
    repo.commit("apps", {f"app{i}/cm.yaml": CONFIGMAP.format(name=f"cm{i}", value=str(i)) for i in range(apps_count)})
    repo.push()
    apps = [source(ctx, url=repo.bare.as_uri(), ref="main", path=f"app{i}") for i in range(apps_count)]
    revision = await apps[0].latest_revision()
    artifacts: list[Artifact] = []

    async def fetch(src: GitSource) -> None:
        artifacts.append(await src.fetch(revision))

    assert await turns_apart(functools.partial(fetch, src) for src in apps) <= 2  # through a lock: 19
    assert len(artifacts) == apps_count


async def test_apps_asking_for_one_diff_all_get_it_at_once(ctx: PluginContext, repo: Repo, tmp_path: Path) -> None:
    """At a push every app of the repository asks which files changed: one ``git diff`` for all,
    and those that waited for it continue in the same turn of the event loop."""
    apps_count = 20
    first = repo.commit("apps", {f"app{i}/cm.yaml": CONFIGMAP.format(name=f"cm{i}", value="1") for i in range(apps_count)})
    second = repo.commit("one app", {"app3/cm.yaml": CONFIGMAP.format(name="cm3", value="2")})
    repo.push()
    wrapper, log = counting_git(tmp_path)
    counted = PluginContext(state_dir=ctx.state_dir, config_dir=ctx.config_dir, tools=replace(ctx.tools, git=wrapper))
    apps = [source(counted, url=repo.bare.as_uri(), ref="main", path=f"app{i}") for i in range(apps_count)]
    await apps[0].fetch(f"main@sha1:{second}")  # the mirror has both commits
    answers: list[set[str] | None] = []

    async def changed(src: GitSource) -> None:
        answers.append(await src.changed_paths(f"main@sha1:{first}", f"main@sha1:{second}"))

    assert await turns_apart(functools.partial(changed, src) for src in apps) <= 2  # through a lock: 19
    assert log.read_text().split().count("diff") == 1
    assert sorted(len(files or ()) for files in answers) == [1] * apps_count


def test_path_kind_in_an_extracted_tree_one_lstat_per_component(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What every app asks of the shared tree: its path's kind, symlinks never followed, one lstat per component."""
    from gitopsd_plugins.git import _tree_kind

    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    (tmp_path / "a" / "b" / "inner").symlink_to(tmp_path / "a" / "b" / "c")
    cases = {".": "tree", "a": "tree", "a/b/c": "tree", "a/file": "blob", "a/file/x": "", "a/nope": "",
             "nope/x": "", "link": "blob", "link/b": "blob", "a/b/inner": "blob", "a/b/inner/x": "blob", "a//b/./c/": "tree"}
    assert {path: _tree_kind(tmp_path, path) for path in cases} == cases

    calls: list[str] = []
    real_stat, real_lstat = os.stat, os.lstat

    def counted_stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        calls.append("stat")
        return real_stat(path, *args, **kwargs)

    def counted_lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        calls.append("lstat")
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counted_stat)  # the standard library's, counted
    monkeypatch.setattr(os, "lstat", counted_lstat)
    assert _tree_kind(tmp_path, "a/b/c") == "tree"
    assert len(calls) == 4, calls  # the root and three components
