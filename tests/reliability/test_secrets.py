"""Known secret values in every secret file: none of them may show in a log line, event, metric or API response."""

from __future__ import annotations

import base64
import contextlib
import glob
import hashlib
import hmac
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.procs import SandboxProc, toml_str, tool_env
from tests.conftest import require_tool
from tests.integration.sources.conftest import _GitHTTPHandler, _serve, git
from tests.reliability.harness import (
    AppDef,
    Env,
    configmap,
    local_app,
    log_events,
    wait_converged,
    wait_for,
    write_manifests,
)

pytestmark = pytest.mark.integration

SECRETS = {
    "api_token": "sec-api-token-Q7w9Zr2mXk4p",
    "github_secret": "sec-github-hook-Lm3Nb8Vc1Xz",
    "gitlab_token": "sec-gitlab-hook-Pp5Oo6Ii7Uu",
    "slack_path": "sec-slack-path-T1B2C3D4E5F6",
    "webhook_hmac": "sec-notifier-hmac-Ww8Ee9Rr0",
    "webhook_url_token": "sec-notifier-url-Hh4Jj5Kk6",
    "git_password": "sec-git-password-Zz1Yy2Xx3",
    "git_username": "sec-git-user-Aa9Ss8Dd7",
    "git_password_wrong": "sec-git-wrong-Qq4Ww5Ee6",
    "kube_token": "sec-kube-bearer-Ff3Gg2Hh1Jj0",
    "secret_data": "sec-manifest-value-Cc5Vv6Bb7",
}


class Receiver:
    """A loopback HTTP receiver for both notifiers; keeps every request (path, headers, body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """The notifier receiver."""
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """git's own smart HTTP backend with basic auth (the test's git username and password), serving
    ``private/repo.git`` (a ConfigMap); yields (base URL, Authorization headers seen)."""
    served = tmp_path / "served"
    work = tmp_path / "private-work"
    work.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=work)
    (work / "cm.yaml").write_text(json.dumps(configmap("from-private-git", a="1")))
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "private", cwd=work)
    git("clone", "-q", "--bare", str(work), str(served / "private" / "repo.git"))
    seen: list[str] = []

    class Recording(_GitHTTPHandler):
        def _handle(self) -> None:
            seen.append(self.headers.get("Authorization") or "")
            super()._handle()

    handler = type("H", (Recording,), {"root": served, "requests": [],
                                       "credentials": (SECRETS["git_username"], SECRETS["git_password"])})
    for server in _serve(handler):
        yield f"http://127.0.0.1:{server.server_address[1]}", seen


class ChildWatcher:
    """Samples the command lines of the daemon's descendants (git, kubectl, ...) while it runs."""

    def __init__(self) -> None:
        self.cmdlines: set[str] = set()
        self.pid = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, pid: int) -> None:
        self.pid = pid
        self._thread.start()

    def _children(self, pid: int) -> list[int]:
        out: list[int] = []
        for task in glob.glob(f"/proc/{pid}/task/*/children"):
            with contextlib.suppress(OSError):
                out += [int(p) for p in Path(task).read_text().split()]
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            pending = self._children(self.pid)
            while pending:
                child = pending.pop()
                with contextlib.suppress(OSError):
                    self.cmdlines.add(Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                pending += self._children(child)
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def argv_recorder(tmp_path: Path) -> tuple[Path, Path]:
    """A directory with a ``head`` that appends its parent's command line to a log, then runs the
    real head: credential scripts read their files with head, so every one of them is recorded
    (sampling /proc alone can miss a process that lives a millisecond). (bin dir, log)."""
    bin_dir, log = tmp_path / "argv-bin", tmp_path / "argv.log"
    bin_dir.mkdir()
    real = shutil.which("head") or "/usr/bin/head"
    (bin_dir / "head").write_text(
        "#!/bin/sh\n"
        f"{{ tr '\\000' ' ' < /proc/$PPID/cmdline; echo; }} >> {log}\n"
        f'exec {real} "$@"\n'
    )
    (bin_dir / "head").chmod(0o755)
    return bin_dir, log


def files_text(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (contents)."""
    out = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with contextlib.suppress(OSError):
                out[str(path)] = path.read_bytes()
    return out


def forms(value: str) -> list[str]:
    """A secret and the encodings it could leak in (base64 as in a Secret's data)."""
    return [value, base64.b64encode(value.encode()).decode()]


def test_no_secret_leaks_anywhere(tmp_path: Path, receiver: Receiver, git_server: tuple[str, list[str]]) -> None:
    """Syncs (one through a credentialed git server), drift of a Secret, notifications, bad and good
    webhooks and API calls, a git fetch with a wrong password: the daemon log, every event delivered,
    /metrics, every API response, the command lines of its children, its temporary files, its caches
    and state.db are free of the secrets."""
    require_tool("kubectl")
    sandbox = SandboxProc.start(tmp_path / "sandbox", rollout_delay=0.1, token=SECRETS["kube_token"])
    env = Env(tmp_path, sandbox, token=SECRETS["api_token"], hook_secret=SECRETS["github_secret"])
    env.log_level = "debug"
    files = {}
    git_url, git_auth_seen = git_server
    for key in ("gitlab_token", "webhook_hmac", "git_password", "git_username", "git_password_wrong"):
        files[key] = tmp_path / f"{key}.secret"
        files[key].write_text(SECRETS[key] + "\n")
    slack_url = tmp_path / "slack-url"
    slack_url.write_text(f"http://127.0.0.1:{receiver.port}/services/T0/B0/{SECRETS['slack_path']}\n")
    hook_url = tmp_path / "hook-url"
    hook_url.write_text(f"http://127.0.0.1:{receiver.port}/hook?token={SECRETS['webhook_url_token']}\n")
    notifiers = "\n".join([
        "[notifiers.chat]", 'type = "slack"', f"webhook_url_file = {toml_str(slack_url)}",
        "dedupe_window = 0.0", "rate_per_second = 50.0", "",
        "[notifiers.audit]", 'type = "webhook"', f"url_file = {toml_str(hook_url)}",
        f"secret_file = {toml_str(files['webhook_hmac'])}", "dedupe_window = 0.0", "rate_per_second = 50.0", "",
    ])
    secret_manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                       "stringData": {"password": SECRETS["secret_data"]}}
    app_dir = write_manifests(tmp_path / "apps" / "vault", [secret_manifest, configmap("plain", a="1")])
    apps = [
        local_app("vault", app_dir, notify='["chat", "audit"]'),
        AppDef("private-git",
               f'{{ type = "git", url = "{git_url}/private/repo.git", ref = "main", '
               f"username_file = {toml_str(files['git_username'])}, password_file = {toml_str(files['git_password'])}, "
               f"timeout = 20.0 }}", extra={"notify": '["chat", "audit"]'}),
        AppDef("private-git-wrong",
               f'{{ type = "git", url = "{git_url}/private/repo.git", ref = "main", '
               f"username_file = {toml_str(files['git_username'])}, "
               f"password_file = {toml_str(files['git_password_wrong'])}, timeout = 20.0 }}",
               extra={"notify": '["chat", "audit"]'}),
    ]
    env.write_config(apps, extra=notifiers)
    # gitlab_token_file goes into the same [daemon.webhooks] table as the GitHub secret.
    config = env.root / "gitopsd.toml"
    config.write_text(config.read_text().replace(
        "[daemon.webhooks]\n", f"[daemon.webhooks]\ngitlab_token_file = {toml_str(files['gitlab_token'])}\n"))
    responses: list[str] = []
    daemon_tmp = tmp_path / "daemon-tmp"
    daemon_tmp.mkdir()
    watcher = ChildWatcher()
    near_miss = "near-miss-token-Mm7Nn8Bb9Vv0"
    try:
        bin_dir, argv_log = argv_recorder(tmp_path)
        daemon = env.start(TMPDIR=str(daemon_tmp), PATH=f"{bin_dir}{os.pathsep}{tool_env()['PATH']}")
        watcher.start(daemon.pid)
        wait_converged(daemon, ["vault", "private-git"], timeout=90)
        assert sandbox.get("/api/v1/namespaces/private-git/configmaps/from-private-git").status_code == 200
        wait_for(lambda: daemon.client.get("/api/v1/apps/private-git-wrong").json()["last_sync"]["message"], 60,
                 "the fetch with the wrong password to fail")

        # Drift on the Secret: changed out of band, put back by self-heal.
        patch = json.dumps({"data": {"password": base64.b64encode(b"tampered").decode()}})
        r = sandbox.client.patch("/api/v1/namespaces/vault/secrets/creds", content=patch,
                                 headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text
        wait_for(lambda: base64.b64decode(sandbox.get("/api/v1/namespaces/vault/secrets/creds").json()["data"]["password"])
                 == SECRETS["secret_data"].encode(), 30, "the Secret to be healed")

        # Webhooks: forged, right, GitLab with a wrong and a right token.
        body = json.dumps({"ref": "refs/heads/main", "repository": {"clone_url": "https://example.invalid/x.git"}}).encode()
        good_sig = "sha256=" + hmac.new(SECRETS["github_secret"].encode(), body, hashlib.sha256).hexdigest()
        for headers in ({"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "1" * 64},
                        {"X-GitHub-Event": "push", "X-Hub-Signature-256": good_sig}):
            responses.append(daemon.client.post("/hooks/github", content=body, headers=headers).text)
        for token in (SECRETS["gitlab_token"][:-1] + "!", SECRETS["gitlab_token"]):
            responses.append(daemon.client.post("/hooks/gitlab", content=body,
                                                headers={"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": token}).text)
        # API: a near-miss token, the right one, every read.
        responses.append(daemon.post("/api/v1/apps/vault/refresh", token=near_miss).text)
        responses.append(daemon.post("/api/v1/apps/vault/refresh").text)
        wait_converged(daemon, ["vault"], timeout=30)
        for path in ("/api/v1/apps", "/api/v1/apps/vault", "/api/v1/apps/private-git",
                     "/api/v1/apps/private-git-wrong", "/healthz", "/readyz", "/metrics", "/api/v1/nope"):
            responses.append(daemon.client.get(path).text)
        # The web page: the login answer, the list, each app page (objects, diff, events, history).
        login = daemon.client.post("/ui/login", data={"token": SECRETS["api_token"]})
        assert login.status_code == 303 and SECRETS["api_token"] not in str(login.headers)
        for path in ("/ui/", "/ui/apps/vault", "/ui/apps/private-git"):
            page = daemon.client.get(path)
            assert page.status_code == 200 and "<h1>" in page.text, path
            responses.append(page.text)
        wait_for(lambda: len(receiver.requests) >= 4, 20, "notifications to arrive")
        time.sleep(1.0)
    finally:
        watcher.stop()
        code = env.stop()
        sandbox.stop()
    assert code == 0
    # Positive controls: the git credentials were really used, and children were seen.
    basic = "Basic " + base64.b64encode(f"{SECRETS['git_username']}:{SECRETS['git_password']}".encode()).decode()
    assert basic in git_auth_seen, "the git server never received the configured credentials"
    assert any(" ls-remote " in c or " fetch " in c for c in watcher.cmdlines), watcher.cmdlines
    recorded = argv_log.read_text(errors="replace")
    assert recorded.strip(), "no credential script ran"

    log_text = env.log.read_text(errors="replace")
    events = log_events(env.log)
    names = {e.get("name") for e in events}
    assert {"drift-corrected", "fetch-failed", "sync-succeeded"} <= names, names
    assert "webhook refused" in log_text and "API call refused" in log_text
    # Positive controls: the secrets were really read and used.
    paths = [path for path, _, _ in receiver.requests]
    assert any(SECRETS["slack_path"] in p for p in paths) and any(SECRETS["webhook_url_token"] in p for p in paths)
    signed = [(h, b) for p, h, b in receiver.requests if p.startswith("/hook")]
    header, signed_body = signed[0]
    expected = hmac.new(SECRETS["webhook_hmac"].encode(), signed_body, hashlib.sha256).hexdigest()
    assert header.get("X-Gitopsd-Signature-256") == f"sha256={expected}"
    wrong = [e for e in events if e.get("app") == "private-git-wrong" and e.get("name") == "fetch-failed"]
    assert wrong and wrong[0].get("reason") == "AuthFailed", "the fetch with the wrong password produced no event"
    delivered = [body.decode(errors="replace") for _, _, body in receiver.requests]
    assert delivered, "no notification was delivered"
    places = {"daemon log": log_text, "events": json.dumps(events), "notifications": "\n".join(delivered),
              "API responses": "\n".join(responses), "children's argv": "\n".join(watcher.cmdlines) + "\n" + recorded}
    for where, text in places.items():
        for name, value in SECRETS.items():
            for form in forms(value):
                assert form not in text, f"secret {name} leaked into the {where}"
    stored = {**files_text(daemon_tmp), **files_text(env.state_dir)}  # temp files, caches, state.db and its WAL
    assert any(p.endswith("state.db") for p in stored)
    for path, content in stored.items():
        for name, value in SECRETS.items():
            for form in forms(value):
                assert form.encode() not in content, f"secret {name} leaked into {path}"
    # A near-miss token (not a secret, so the redactor does not know it) is not echoed either.
    assert near_miss not in log_text
