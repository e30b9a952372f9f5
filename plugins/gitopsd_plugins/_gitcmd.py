"""Running git safely: environment, credentials from files, and error classification.

Credentials never reach argv, URLs, logs or errors:
- HTTPS: ``credential.helper`` is a tiny script (written once under the cache dir) that
  answers with the contents of the files named by ``GITOPSD_GIT_USERNAME_FILE`` /
  ``GITOPSD_GIT_PASSWORD_FILE``; only the file paths travel in the environment, and the
  request and answer go through pipes (an askpass prompt would put the user name in argv,
  readable by every local user). It answers only for the configured host
  (``GITOPSD_GIT_HOST``), and credentialed fetches follow no HTTP redirect
  (``http.followRedirects=false``), so a 302 cannot carry the password to another host.
- SSH: ``GIT_SSH_COMMAND`` with the key file, ``IdentitiesOnly``, ``BatchMode`` and strict
  host-key checking against the configured ``known_hosts`` file.

Every git runs with ``GIT_TERMINAL_PROMPT=0``, no system/global config and a timeout.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

import anyio.to_thread

from gitopsd import USER_AGENT, CommandFailed, SourceError
from gitopsd.core.lazyre import LazyPattern
from gitopsd.core.proc import Completed, run
from gitopsd.core.secrets import REDACTOR

from ._archive import extract_tar_stream

T = TypeVar("T")
_MAX_TRAILER = 1024 * 1024
"""Bytes git may write after the end-of-archive marker (tar pads its last record) before we stop it."""

CREDENTIAL_HELPER = """#!/bin/sh
# gitopsd: git credential helper. git writes the request on stdin (never in argv, where any
# local user could read it); the answer comes from files named in the environment, and only
# for the configured host.
[ "$1" = get ] || exit 0
host=""
while IFS= read -r line; do
  [ -z "$line" ] && break
  case "$line" in host=*) host="${line#host=}" ;; esac
done
[ -n "$GITOPSD_GIT_HOST" ] && [ "$host" = "$GITOPSD_GIT_HOST" ] || exit 0
[ -r "$GITOPSD_GIT_USERNAME_FILE" ] && [ -r "$GITOPSD_GIT_PASSWORD_FILE" ] || exit 0
printf 'username=%s\\n' "$(head -n 1 "$GITOPSD_GIT_USERNAME_FILE")"
printf 'password=%s\\n' "$(head -n 1 "$GITOPSD_GIT_PASSWORD_FILE")"
"""

# (reason, pattern) in order: the first match wins.
_CLASSIFY: list[tuple[str, LazyPattern]] = [
    ("HostKeyVerificationFailed", LazyPattern(r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No \w+ host key is known", re.I)),
    ("AuthFailed", LazyPattern(
        r"Authentication failed|could not read (Username|Password)|terminal prompts disabled|"
        r"Permission denied \(|HTTP Basic: Access denied|The requested URL returned error: 40[13]|"
        r"invalid credentials|Load key .*: (bad permissions|invalid format)", re.I)),
    ("RepositoryNotFound", LazyPattern(
        r"Repository not found|does not appear to be a git repository|not a git repository|"
        r"repository '.*' not found|The requested URL returned error: 404|"
        r"access denied or repository not exported|no such repository|No such file or directory|not found: did you run git update-server-info", re.I)),
    ("NetworkError", LazyPattern(
        r"Could not resolve host|Connection refused|Failed to connect|unable to connect|Connection reset|"
        r"Network is unreachable|No route to host|Connection closed|unexpected disconnect|early EOF|"
        r"the remote end hung up|Connection timed out|RPC failed|Operation timed out|"
        r"The requested URL returned error: 5\d\d|SSL|TLS|certificate", re.I)),
]


def url_host(url: str) -> str:
    """``host[:port]`` of an http(s) URL as git shows it in credential prompts ("" for others)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return ""
    return rest.split("/", 1)[0].rpartition("@")[2]


def classify(stderr: str) -> str:
    """The SourceError reason for git's stderr."""
    for reason, pattern in _CLASSIFY:
        if pattern.search(stderr):
            return reason
    return "FetchFailed"


class GitRunner:
    """Runs git for one repository with its auth settings."""

    def __init__(
        self,
        git: str,
        cache_root: Path,
        *,
        username_file: Path | None = None,
        password_file: Path | None = None,
        ssh_key_file: Path | None = None,
        known_hosts_file: Path | None = None,
        timeout: float = 60.0,
        display_url: str = "",
    ):
        self.git = git
        self.timeout = timeout
        self.display_url = display_url
        env = {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GCM_INTERACTIVE": "never",
            "LC_ALL": "C",
            "LANG": "C",
            "SSH_ASKPASS_REQUIRE": "never",
            # http.userAgent for git over HTTP(S), as config from the environment (git >= 2.31)
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.userAgent",
            "GIT_CONFIG_VALUE_0": USER_AGENT,
        }
        env["GIT_ASKPASS"] = "/bin/false"  # never prompt: a prompt carries the user name in argv
        if username_file or password_file:
            env["GITOPSD_GIT_HOST"] = url_host(display_url)
            env.update({
                "GIT_CONFIG_COUNT": "2",
                "GIT_CONFIG_KEY_0": "credential.helper",
                "GIT_CONFIG_VALUE_0": str(_credential_helper(cache_root)),
                # A redirect could take the credentials to another host: credentialed fetches follow none.
                "GIT_CONFIG_KEY_1": "http.followRedirects",
                "GIT_CONFIG_VALUE_1": "false",
            })
            if username_file:
                env["GITOPSD_GIT_USERNAME_FILE"] = str(username_file)
            if password_file:
                env["GITOPSD_GIT_PASSWORD_FILE"] = str(password_file)
        ssh = [
            "ssh", "-F", os.devnull, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={max(1, int(timeout))}", "-o", "ServerAliveInterval=15",
        ]
        if known_hosts_file:
            ssh += ["-o", f"UserKnownHostsFile={known_hosts_file}", "-o", "GlobalKnownHostsFile=/dev/null"]
        if ssh_key_file:
            ssh += ["-i", str(ssh_key_file), "-o", "IdentitiesOnly=yes"]
        env["GIT_SSH_COMMAND"] = shlex.join(ssh)
        env["GIT_SSH_VARIANT"] = "ssh"
        self.env: Mapping[str, str] = env

    async def __call__(
        self,
        *args: str,
        cwd: Path | None = None,
        what: str = "git",
        env: Mapping[str, str] | None = None,
        config: Sequence[str] = (),
        stdin: bytes | None = None,
    ) -> Completed:
        """Run ``git <args>``; translate failures into SourceError with a reason."""
        argv: list[str] = [self.git]
        for item in config:
            argv += ["-c", item]
        argv += list(args)
        try:
            return await run(argv, timeout=self.timeout, cwd=cwd, env={**self.env, **(env or {})}, stdin=stdin,
                             what=what)
        except CommandFailed as exc:
            where = f" {self.display_url}" if self.display_url else ""
            if exc.returncode is None and "timed out" in str(exc):
                raise SourceError(f"{what}{where}: timed out after {self.timeout:g}s", reason="Timeout") from None
            detail = exc.stderr or str(exc)
            raise SourceError(f"{what}{where}: {detail}", reason=classify(detail)) from None


    async def archive(self, tree: str, *, cwd: Path, dest: Path, where: str, max_bytes: int) -> int:
        """``git archive --format=tar <tree>`` extracted into ``dest`` while git writes it.

        The archive is never held in memory: it is piped into the safe extractor, which stops
        (and git is killed) as soon as ``max_bytes`` of file content is crossed. Returns the
        bytes of the files extracted.
        """
        return await anyio.to_thread.run_sync(
            self.archive_sync, tree, cwd, lambda stream: extract_tar_stream(stream, dest, where=where, max_bytes=max_bytes)
        )

    def archive_sync(self, tree: str, cwd: Path, sink: Callable[[IO[bytes]], T], paths: Sequence[str] = ()) -> T:
        """Run ``git archive --format=tar <tree> [-- paths]`` (in a worker thread) and feed its
        output to ``sink``; ``paths`` are literal (no glob). Git is killed when ``sink`` raises
        SourceError or after the timeout."""
        argv = [self.git, "--literal-pathspecs", "archive", "--format=tar", tree]
        if paths:
            argv += ["--", *paths]
        env = {**os.environ, **self.env}
        timed_out = threading.Event()
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=env, cwd=cwd)

            def expire() -> None:
                timed_out.set()
                proc.kill()

            timer = threading.Timer(self.timeout, expire)
            timer.start()
            try:
                assert proc.stdout is not None
                result = sink(proc.stdout)
                # The tar reader stops at the end-of-archive marker; git may still be writing the
                # padding after it. Read that too: closing the pipe first kills git with SIGPIPE.
                drained = 0
                while drained <= _MAX_TRAILER and (chunk := proc.stdout.read(65536)):
                    drained += len(chunk)
                if drained > _MAX_TRAILER:
                    proc.kill()
                    raise SourceError(f"git archive {self.display_url}: data after the end of the archive",
                                      reason="InvalidArchive")
            except SourceError:
                proc.kill()  # over a limit or hostile: stop git now
                if proc.wait() in (0, -signal.SIGKILL) and not timed_out.is_set():
                    raise
            finally:
                timer.cancel()
                if proc.stdout is not None:
                    proc.stdout.close()
            code = proc.wait()
            if timed_out.is_set():
                raise SourceError(f"git archive {self.display_url}: timed out after {self.timeout:g}s", reason="Timeout")
            if code != 0:  # git failed: its own message explains the broken stream
                err.seek(0)
                detail = REDACTOR.scrub(err.read().decode("utf-8", "replace"))[-4000:].strip()
                raise SourceError(f"git archive {self.display_url}: {detail or f'exited with {code}'}",
                                  reason=classify(detail))
        return result


def _credential_helper(cache_root: Path) -> Path:
    path = cache_root / "credential-helper.sh"
    if not path.exists() or path.read_text() != CREDENTIAL_HELPER:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(CREDENTIAL_HELPER)
        tmp.chmod(0o700)
        os.replace(tmp, path)
    return path
