"""The ``git`` source: a branch, tag, commit or semver-chosen tag of a git repository.

Sharing (per daemon, through ``ctx.shared``):
- One bare mirror per normalised URL under ``state_dir/cache/git``; fetches into it are
  single-flight (one ``anyio.Lock`` per mirror) and fetch only the ref that is needed. A
  revision whose commit is already in the mirror is never fetched again.
- ``latest_revision()`` runs one ``git ls-remote`` per repository: concurrent callers
  wait for the one in flight, and its result is reused for ``poll_cache`` seconds
  (default 5 s), so every app of a repository polling in the same interval tick costs one
  ``ls-remote``. The window is kept short on purpose: a webhook-triggered poll right
  after a push must see the new commit.
- The artifact is the tree of the commit, extracted with ``git archive`` (safe tar
  extraction) into ``state_dir/cache/git-trees/<tree id>``: content-addressed, so apps and
  commits with the same tree share one directory. ``Artifact.path`` is ``path`` inside it
  (the whole tree is there, so kustomize overlays can reach ``../base``). A new commit's
  tree is built from the previous one's: unchanged files are hard-linked, only the changed
  ones are extracted (``_gittree``), so a push costs what it changed, not the repository.

Revisions look like ``main@sha1:<40 hex>`` (``sha1:<40 hex>`` for a pinned commit).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import anyio
from pydantic import Field, field_validator, model_validator

import gitopsd
from gitopsd import Artifact, ConfigError, Duration, Options, SourceError, read_secret_file
from gitopsd.core.lazyre import LazyPattern

from ._archive import DEFAULT_MAX_BYTES, cache_entry
from ._gitcmd import GitRunner
from ._once import one_at_a_time
from ._semverrange import SemverRange

_SHA = LazyPattern(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_MAX_DIFF_FILES = 2000
"""More changed files than this between two revisions: changed_paths() does not tell (every app renders)."""
_REVISION = LazyPattern(r"^(?:(?P<name>.+)@)?sha1:(?P<sha>[0-9a-f]{40}([0-9a-f]{24})?)$")
_SCP = LazyPattern(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>(?!//).+)$")


class VerifyOptions(Options):
    """Commit signature verification: ``ssh`` (allowed signers) or ``gpg`` (public keyring)."""

    mode: Literal["ssh", "gpg"]
    allowed_signers_file: Path | None = Field(None, description="ssh mode: git's gpg.ssh.allowedSignersFile.")
    keyring_file: Path | None = Field(None, description="gpg mode: exported public keys (armored or binary).")

    @model_validator(mode="after")
    def _needs_file(self) -> VerifyOptions:
        if self.mode == "ssh" and not self.allowed_signers_file:
            raise ValueError("verify.mode = 'ssh' needs allowed_signers_file")
        if self.mode == "gpg" and not self.keyring_file:
            raise ValueError("verify.mode = 'gpg' needs keyring_file")
        return self


class GitOptions(Options):
    """Options of ``type = "git"``."""

    url: str = Field(description="https://, http://, ssh://, user@host:path, git:// or file:// URL.")
    ref: str | None = Field(None, description="Branch, tag or full commit SHA; default: the remote HEAD.")
    semver: SemverRange | None = Field(None, description="Instead of ref: the highest tag matching this range.")
    path: str = Field(".", description="Directory inside the repository.")
    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None
    username_file: Path | None = None
    password_file: Path | None = None
    verify: VerifyOptions | None = None
    timeout: Duration = Field(60.0, gt=0, description="Limit per git command (a duration: \"60s\", or seconds).")
    poll_cache: Duration = Field(5.0, ge=0, description="Seconds an ls-remote result is shared by later polls.")
    max_size: int = Field(DEFAULT_MAX_BYTES, gt=0, description="Bytes the extracted tree may take at most.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if re.match(r"^[a-z][a-z0-9+.-]*://[^/@]*:[^/@]*@", value, re.I):
            raise ValueError("credentials in the URL are not allowed: use username_file and password_file")
        if not re.match(r"^(https?|ssh|git|file)://", value) and not _SCP.match(value):
            raise ValueError(f"unsupported git URL {value!r}: use https, http, ssh, git, file or user@host:path")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        parts = [p for p in value.replace("\\", "/").split("/") if p not in ("", ".")]
        if value.startswith("/") or ".." in parts:
            raise ValueError(f"path {value!r} must be relative and stay inside the repository")
        return "/".join(parts) or "."

    @model_validator(mode="after")
    def _one_of(self) -> GitOptions:
        if self.ref and self.semver:
            raise ValueError("set either ref or semver, not both")
        if bool(self.username_file) != bool(self.password_file):
            raise ValueError("username_file and password_file go together")
        return self


def normalise_url(url: str) -> str:
    """One spelling per repository: scheme and host lower-case, no trailing ``.git`` or ``/``,
    ``user@host:path`` as ``ssh://user@host/path``."""
    if "://" not in url:
        m = _SCP.match(url)
        if m:
            user = f"{m['user']}@" if m["user"] else ""
            url = f"ssh://{user}{m['host']}/{m['path'].lstrip('/')}"
    scheme, _, rest = url.partition("://")
    if scheme.lower() == "file":
        return "file://" + rest.rstrip("/")
    host, slash, path = rest.partition("/")
    path = path.rstrip("/").removesuffix(".git")
    return f"{scheme.lower()}://{host.lower()}{slash}{path}"


@dataclass
class _Repo:
    """Per-repository state shared by every app using it."""

    mirror: Path
    fetch_lock: anyio.Lock = field(default_factory=anyio.Lock)
    polling: anyio.Event | None = None  # set when the ls-remote in flight ends
    refs: dict[str, str] | None = None
    refs_error: SourceError | None = None
    refs_at: float = 0.0
    ls_remote_count: int = 0
    fetch_count: int = 0
    # Facts about commits that never change once known: every app of the repository reuses
    # them, so a new revision costs a few git commands in all, not a few per app.
    commits: set[str] = field(default_factory=set)
    root_trees: dict[str, str] = field(default_factory=dict)
    # ``git diff --name-only`` between two commits (None: could not tell), for every app.
    diffs: dict[tuple[str, str], tuple[str, ...] | None] = field(default_factory=dict)
    # What one app is finding out for all the others (rev-parse, diff): see one_at_a_time.
    pending: dict[Hashable, anyio.Event] = field(default_factory=dict)
    # The root tree extracted last: the next commit's tree is built from it (see _gittree).
    last_tree: str | None = None
    full_extractions: int = 0

    def remember(self, sha: str, root_tree: str | None = None) -> None:
        """Record that ``sha`` is in the mirror (and its root tree); bounded."""
        if len(self.commits) > 4096:
            self.commits.clear()
            self.root_trees.clear()
        self.commits.add(sha)
        if root_tree is not None:
            self.root_trees[sha] = root_tree


def parse_ls_remote(text: str) -> dict[str, str]:
    """``ref -> sha``; tags are peeled (the commit, not the tag object); ``HEAD`` gets a ``symref:`` entry."""
    refs: dict[str, str] = {}
    peeled: dict[str, str] = {}
    for line in text.splitlines():
        left, _, right = line.partition("\t")
        if left.startswith("ref: "):
            refs["symref:" + right] = left[5:]
        elif right.endswith("^{}"):
            peeled[right[:-3]] = left
        elif right:
            refs[right] = left
    refs.update(peeled)
    return refs


class GitSource(gitopsd.Source):
    """A git repository; see the module docstring."""

    Options = GitOptions

    def __init__(self, options: GitOptions, ctx: gitopsd.PluginContext):
        super().__init__(options, ctx)
        self.normalised = normalise_url(options.url)
        auth = f"{options.ssh_key_file}|{options.known_hosts_file}|{options.username_file}|{options.password_file}"
        self._cache = ctx.cache_dir("git")
        self._shared_as = f"git:{self.normalised}|{auth}"
        # The mirror's path and lock are worked out once per repository and credentials, not
        # once per app (a thousand apps of one repository at start).
        self._repo = ctx.shared.get(self._shared_as, self._new_repo)
        self._runner: GitRunner | None = None

    def _new_repo(self) -> _Repo:
        repo_id = hashlib.sha256(self.normalised.encode()).hexdigest()[:24]
        mirror = self._cache / f"{repo_id}.git"
        # One lock per mirror directory, even for apps using different credentials.
        fetch_lock = self.ctx.shared.get(f"git-mirror-lock:{mirror}", anyio.Lock)
        return _Repo(mirror=mirror, fetch_lock=fetch_lock)

    @property
    def key(self) -> str:
        return f"git:{self.normalised}:{self.options.ref or self.options.semver or 'HEAD'}:{self.options.path}"

    @property
    def subdir(self) -> str:
        return self.options.path

    @property
    def poll_group(self) -> str:
        # Every source sharing this _Repo reads one ls-remote per poll_cache (remote_refs).
        return self._shared_as if self.options.poll_cache > 0 else ""

    @property
    def version_range(self) -> str:
        return str(self.options.semver or "")

    @property
    def repo(self) -> _Repo:
        """The shared per-repository state (mirror path, counters used by tests and metrics)."""
        return self._repo

    def _path(self, value: Path | None) -> Path | None:
        return None if value is None else (self.ctx.config_dir / value)

    def runner(self) -> GitRunner:
        if self._runner is None:
            o = self.options
            for name in ("username_file", "password_file"):
                path = self._path(getattr(o, name))
                if path is not None:
                    try:
                        read_secret_file(path, f"source.{name}", strict=self.ctx.strict_secret_permissions)  # registers it with the redactor
                    except ConfigError as exc:
                        raise SourceError(str(exc), reason="InvalidConfig") from None
            for name in ("ssh_key_file", "known_hosts_file"):
                path = self._path(getattr(o, name))
                if path is not None and not path.is_file():
                    raise SourceError(f"source.{name}: file {path} does not exist", reason="InvalidConfig")
            self._runner = GitRunner(
                self.ctx.tools.require("git"),
                self._cache,
                username_file=self._path(o.username_file),
                password_file=self._path(o.password_file),
                ssh_key_file=self._path(o.ssh_key_file),
                known_hosts_file=self._path(o.known_hosts_file),
                timeout=o.timeout,
                display_url=self.options.url,
            )
        return self._runner

    # -- polling --------------------------------------------------------------------

    async def remote_refs(self) -> dict[str, str]:
        """All refs of the repository: one shared ``ls-remote`` (see the module docstring).

        A fresh result is returned without waiting on anything, and the callers that arrive
        while an ``ls-remote`` runs all wait on one event, woken together: every app of a
        repository polls at the same instant (bench 2000x5: the lock's one-by-one hand-over
        was a tenth of the idle round's CPU).
        """
        repo = self._repo
        while True:
            if repo.refs_at and time.monotonic() - repo.refs_at < self.options.poll_cache:
                if repo.refs_error is not None:
                    raise repo.refs_error
                assert repo.refs is not None
                return repo.refs
            if repo.polling is None:
                break
            await repo.polling.wait()  # then as the lock did: the result if fresh, else poll again
        repo.polling = anyio.Event()
        try:
            return await self._ls_remote(repo)
        finally:
            repo.polling.set()
            repo.polling = None

    async def _ls_remote(self, repo: _Repo) -> dict[str, str]:
        repo.ls_remote_count += 1
        try:
            out = await self.runner()("ls-remote", "--symref", "--", self.options.url, what="git ls-remote")
        except SourceError as exc:
            self.ctx.count("git_ls_remote", result="failed")
            repo.refs, repo.refs_error, repo.refs_at = None, exc, time.monotonic()
            raise
        self.ctx.count("git_ls_remote", result="ok")
        repo.refs = parse_ls_remote(out.stdout.decode("utf-8", "replace"))
        repo.refs_error, repo.refs_at = None, time.monotonic()
        return repo.refs

    def invalidate(self, before: float) -> None:
        repo = self._repo
        if repo.refs_at < before:
            repo.refs_at = 0.0

    async def latest_revision(self) -> str:
        o = self.options
        if o.ref and _SHA.match(o.ref.lower()):
            return f"sha1:{o.ref.lower()}"
        refs = await self.remote_refs()
        if o.semver:
            from ._semver import highest

            tags = {r.removeprefix("refs/tags/"): sha for r, sha in refs.items() if r.startswith("refs/tags/")}
            best = highest(o.semver, tags)
            if best is None:
                shown = ", ".join(sorted(tags)[:20]) or "none"
                raise SourceError(
                    f"git {o.url}: no tag matches semver range {o.semver!r} (tags: {shown})", reason="RefNotFound"
                )
            return f"{best}@sha1:{tags[best]}"
        if not o.ref or o.ref == "HEAD":
            target = refs.get("symref:HEAD", "")
            sha = refs.get("HEAD") or refs.get(target)
            if not sha:
                raise SourceError(f"git {o.url}: the repository is empty (no HEAD)", reason="RefNotFound")
            name = target.removeprefix("refs/heads/") if target else "HEAD"
            return f"{name}@sha1:{sha}"
        for candidate in (o.ref, f"refs/heads/{o.ref}", f"refs/tags/{o.ref}"):
            if candidate.startswith("refs/") and candidate in refs:
                return f"{o.ref}@sha1:{refs[candidate]}"
        branches = sorted(r.removeprefix("refs/heads/") for r in refs if r.startswith("refs/heads/"))
        shown = ", ".join(branches[:20]) or "none"
        raise SourceError(f"git {o.url}: ref {o.ref!r} not found (branches: {shown})", reason="RefNotFound")

    # -- fetching -------------------------------------------------------------------

    async def fetch(self, revision: str) -> Artifact:
        m = _REVISION.match(revision)
        if not m:
            raise SourceError(f"git {self.options.url}: invalid revision {revision!r}", reason="InvalidRevision")
        name, sha = m["name"], m["sha"]
        git = self.runner()
        repo = self._repo
        if sha not in repo.commits:  # else no lock: each app of a new commit would wait its turn for it
            async with repo.fetch_lock:
                if not repo.mirror.exists():
                    tmp = Path(tempfile.mkdtemp(prefix=".init-", dir=repo.mirror.parent))
                    await git("init", "--bare", "--quiet", str(tmp), what="git init")
                    os.rename(tmp, repo.mirror)
                if not await self._has_commit(sha):
                    await self._fetch_into_mirror(name, sha)
        if self.options.verify is not None:
            await self._verify(sha)
        return await self._artifact(revision, sha)

    async def describe(self, revision: str) -> dict[str, str]:
        """The commit's subject, author and date, from the mirror (``{}`` if it lacks the commit)."""
        m = _REVISION.match(revision)
        if not m or not self._repo.mirror.exists():
            return {}
        try:
            out = await self.runner()(
                "log", "-1", "--format=%s%x00%an <%ae>%x00%aI", m["sha"], "--", cwd=self._repo.mirror, what="git log"
            )
        except SourceError:
            return {}
        parts = out.stdout.decode("utf-8", "replace").strip().split("\0")
        if len(parts) != 3:
            return {}
        return {"message": parts[0], "author": parts[1], "date": parts[2]}

    async def changed_paths(self, old: str, new: str) -> set[str] | None:
        """Files changed between two revisions (one ``git diff --name-only`` per pair, shared by every app)."""
        a, b = _REVISION.match(old), _REVISION.match(new)
        if not a or not b:
            return None
        files = await self._diff(a["sha"], b["sha"])
        if files is None:
            return None
        prefix = self.options.path.strip("/")
        if prefix in ("", "."):
            return set(files)
        up = "../" * (prefix.count("/") + 1)
        cut = len(prefix) + 1
        return {f[cut:] if f.startswith(prefix + "/") else ("." if f == prefix else up + f) for f in files}

    async def _diff(self, old_sha: str, new_sha: str) -> tuple[str, ...] | None:
        repo = self._repo
        key = (old_sha, new_sha)

        async def diff() -> None:
            files: tuple[str, ...] | None
            try:
                out = await self.runner()(
                    "diff", "--name-only", "--no-renames", "-z", old_sha, new_sha, "--",
                    cwd=repo.mirror, what="git diff",
                )
                files = tuple(f for f in out.stdout.decode("utf-8", "surrogateescape").split("\0") if f)
                if len(files) > _MAX_DIFF_FILES:
                    files = None  # a change this big re-renders everything anyway
            except SourceError:
                files = None  # the old commit may be gone from the mirror: render
            if len(repo.diffs) > 256:
                repo.diffs.clear()
            repo.diffs[key] = files

        # Every app of the repository asks at a push: one diff for all.
        await one_at_a_time(repo.pending, ("diff", key), lambda: key in repo.diffs, diff)
        return repo.diffs.get(key)

    async def _has_commit(self, sha: str) -> bool:
        if sha in self._repo.commits:
            return True
        try:
            await self.runner()("cat-file", "-e", f"{sha}^{{commit}}", cwd=self._repo.mirror, what="git cat-file")
        except SourceError:
            return False
        self._repo.remember(sha)
        return True

    async def _fetch_into_mirror(self, name: str | None, sha: str) -> None:
        git = self.runner()
        url = self.options.url
        repo = self._repo
        attempts: list[list[str]] = []
        if name and name != "HEAD":
            attempts.append([f"+{name}:refs/gitopsd/{name}"])
        elif name == "HEAD":
            attempts.append(["+HEAD:refs/gitopsd/HEAD"])
        attempts.append([f"{sha}:refs/gitopsd/pinned/{sha}"])
        last: SourceError | None = None
        for refspecs in attempts:
            repo.fetch_count += 1
            try:
                await git(
                    "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", url, *refspecs,
                    cwd=repo.mirror, what="git fetch",
                )
            except SourceError as exc:
                if exc.reason in ("AuthFailed", "RepositoryNotFound", "NetworkError", "Timeout", "HostKeyVerificationFailed"):
                    raise
                last = exc
            if await self._has_commit(sha):
                return
        detail = f": {last}" if last else ""
        raise SourceError(f"git {url}: commit {sha} not found{detail}", reason="RefNotFound")

    async def _verify(self, sha: str) -> None:
        verify = self.options.verify
        assert verify is not None
        git = self.runner()
        with tempfile.TemporaryDirectory(prefix="gitopsd-gpg-") as gnupghome:
            os.chmod(gnupghome, 0o700)
            env = {"GNUPGHOME": gnupghome}
            config: list[str] = []
            if verify.mode == "ssh":
                signers = self._path(verify.allowed_signers_file)
                assert signers is not None
                if not signers.is_file():
                    raise SourceError(f"source.verify.allowed_signers_file: {signers} does not exist", reason="InvalidConfig")
                config.append(f"gpg.ssh.allowedSignersFile={signers}")
                accept = {"G"}
            else:
                keyring = self._path(verify.keyring_file)
                assert keyring is not None
                if not keyring.is_file():
                    raise SourceError(f"source.verify.keyring_file: {keyring} does not exist", reason="InvalidConfig")
                await _gpg_import(keyring, env, self.options.timeout)
                accept = {"G", "U"}  # U: good signature by a key we were given, no owner trust set
            out = await git(
                "log", "-1", "--format=%G?%n%GK", sha, cwd=self._repo.mirror, env=env, config=config,
                what="git log",
            )
        status = out.stdout.decode().partition("\n")[0]
        if status.strip() not in accept:
            explain = {
                "N": "is not signed",
                "B": "has a bad signature",
                "E": "has a signature that cannot be checked (unknown key)",
                "U": "is signed by a key that is not allowed",
                "X": "has an expired signature",
                "Y": "is signed by an expired key",
                "R": "is signed by a revoked key",
            }.get(status.strip(), f"failed verification ({status.strip()})")
            raise SourceError(
                f"git {self.options.url}: commit {sha} {explain} ({verify.mode} verification)",
                reason="VerificationFailed",
            )

    async def _artifact(self, revision: str, sha: str) -> Artifact:
        git = self.runner()
        repo = self._repo
        path = self.options.path

        async def rev_parse() -> None:
            out = await git("rev-parse", f"{sha}^{{tree}}", cwd=repo.mirror, what="git rev-parse")
            repo.remember(sha, out.stdout.decode().strip())

        # Every app of a new commit asks at once: one rev-parse for all.
        await one_at_a_time(repo.pending, ("rev-parse", sha), lambda: sha in repo.root_trees, rev_parse)
        root_tree = repo.root_trees[sha]
        trees = self.ctx.cache_dir("git-trees", evictable=True)
        dest = cache_entry(trees, root_tree, f"git {self.options.url} at {revision}")
        sizes: dict[str, int] = self.ctx.shared.get("git-tree-sizes", dict)
        where = f"git {self.options.url} at {revision}"
        pending: dict[Hashable, anyio.Event] = self.ctx.shared.get("git-tree-pending", dict)
        await one_at_a_time(
            pending, dest, lambda: root_tree in sizes and _is_dir(dest),  # renamed into place once complete
            lambda: self._extract_tree(root_tree, dest, sizes, where),
        )
        repo.last_tree = root_tree
        if sizes.get(root_tree, 0) > self.options.max_size:
            raise SourceError(
                f"git {self.options.url} at {revision}: archive expands to more than {self.options.max_size} bytes (limit)",
                reason="TooLarge",
            )
        # The path is looked up in the extracted tree (shared by every app), as git would:
        # a symlink is not a directory, and is not followed on the way.
        kinds: dict[tuple[str, str], str] = self.ctx.shared.get("git-tree-kinds", dict)
        kind = kinds.get((root_tree, path)) or _tree_kind(dest, path)
        if kind == "tree" and (root_tree, path) not in kinds:  # a tree's content never changes
            if len(kinds) > 65536:
                kinds.clear()
            kinds[(root_tree, path)] = kind
        if kind != "tree":
            what = "is not a directory" if kind else "does not exist"
            raise SourceError(
                f"git {self.options.url}: path {path!r} {what} at {revision}", reason="PathNotFound"
            )
        digest = "sha256:" + hashlib.sha256(f"git-tree:{root_tree}:{path}".encode()).hexdigest()
        return Artifact(path=dest if path == "." else dest / path, revision=revision, digest=digest, url=self.options.url)


    async def _extract_tree(self, root_tree: str, dest: Path, sizes: dict[str, int], where: str) -> None:
        """Extract the tree ``root_tree`` to ``dest`` (from the previous tree's files where it can)
        and record its size; only measure it when it is there already."""
        # Imported with the first new tree (after ready: a start does not need it).
        from ._gittree import build_from_previous, newest_known_tree

        git = self.runner()
        repo = self._repo
        trees = dest.parent
        if _is_dir(dest):  # extracted by an app with a larger max_size, or before a restart
            sizes[root_tree] = await anyio.to_thread.run_sync(_files_size, dest)
            return
        previous = repo.last_tree
        if previous is None:  # the first new tree since the start: any extracted one will do
            previous = await newest_known_tree(git, repo.mirror, trees, root_tree)
        size = None
        if previous is not None and previous != root_tree:  # a new commit: reuse the unchanged files
            size = await build_from_previous(
                git, repo.mirror, trees / previous, previous, root_tree, dest, where=where,
                max_bytes=self.options.max_size,
            )
        if size is None:
            size = await git.archive(root_tree, cwd=repo.mirror, dest=dest, where=where,
                                     max_bytes=self.options.max_size)
            repo.full_extractions += 1
        if len(sizes) > 4096:
            sizes.clear()  # bounded; a tree found without its size is measured again
        sizes[root_tree] = size


def _is_dir(path: Path) -> bool:
    """One stat: whether an extracted tree is in place (it is renamed there once complete)."""
    return path.is_dir()


def _files_size(root: Path) -> int:
    """Bytes of the regular files under ``root`` (what max_size bounds), symlinks not followed."""
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                total += os.path.getsize(path)
    return total


def _tree_kind(root: Path, path: str) -> str:
    """``tree``, ``blob`` or ``""`` (missing) for ``path`` in an extracted tree, without following symlinks.

    One ``lstat`` per path component (every app asks once for its path at a new tree).
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        return "tree" if root.is_dir() else "blob"
    current = os.fspath(root)
    try:
        mode = os.lstat(current).st_mode
        for part in parts:
            if not stat.S_ISDIR(mode):  # a file, or a symlink: not a directory to look into
                return ""
            current = os.path.join(current, part)
            mode = os.lstat(current).st_mode
            if stat.S_ISLNK(mode):
                return "blob"
    except OSError:
        return ""
    return "tree" if stat.S_ISDIR(mode) else "blob"


async def _gpg_import(keyring: Path, env: dict[str, str], limit: float) -> None:
    """Import public keys into the temporary GNUPGHOME in ``env``."""
    from gitopsd import CommandFailed
    from gitopsd.core.proc import run

    gpg = shutil.which("gpg")
    if gpg is None:
        raise SourceError("gpg is not installed: needed for verify.mode = 'gpg'", reason="ToolMissing")
    try:
        await run([gpg, "--batch", "--quiet", "--import", str(keyring)], timeout=limit, env=env, what="gpg --import")
    except CommandFailed as exc:
        raise SourceError(f"source.verify.keyring_file {keyring}: {exc}", reason="InvalidConfig") from None


@gitopsd.hookimpl
def gitopsd_source_types() -> dict[str, type[gitopsd.Source]]:
    return {"git": GitSource}
