"""Known secret values in every secret file: none of them may show in a log line, event, metric or API response."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.procs import SandboxProc, free_port, toml_str
from tests.conftest import require_tool
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


def forms(value: str) -> list[str]:
    """A secret and the encodings it could leak in (base64 as in a Secret's data)."""
    return [value, base64.b64encode(value.encode()).decode()]


def test_no_secret_leaks_anywhere(tmp_path: Path, receiver: Receiver) -> None:
    """Syncs, drift of a Secret, notifications, bad and good webhooks and API calls, a failing git fetch:
    the daemon log, every event delivered, /metrics and every API response are free of the secrets."""
    require_tool("kubectl")
    sandbox = SandboxProc.start(tmp_path / "sandbox", rollout_delay=0.1, token=SECRETS["kube_token"])
    env = Env(tmp_path, sandbox, token=SECRETS["api_token"], hook_secret=SECRETS["github_secret"])
    env.log_level = "debug"
    files = {}
    for key in ("gitlab_token", "webhook_hmac", "git_password", "git_username"):
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
               f'{{ type = "git", url = "http://127.0.0.1:{free_port()}/private/repo.git", ref = "main", '
               f"username_file = {toml_str(files['git_username'])}, password_file = {toml_str(files['git_password'])}, "
               f"timeout = 5.0 }}", extra={"notify": '["chat", "audit"]'}),
    ]
    env.write_config(apps, extra=notifiers)
    # gitlab_token_file goes into the same [daemon.webhooks] table as the GitHub secret.
    config = env.root / "gitopsd.toml"
    config.write_text(config.read_text().replace(
        "[daemon.webhooks]\n", f"[daemon.webhooks]\ngitlab_token_file = {toml_str(files['gitlab_token'])}\n"))
    responses: list[str] = []
    try:
        daemon = env.start()
        wait_converged(daemon, ["vault"], timeout=60)
        wait_for(lambda: daemon.client.get("/api/v1/apps/private-git").json()["last_sync"]["message"], 30,
                 "the private git fetch to fail")

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
        responses.append(daemon.post("/api/v1/apps/vault/refresh", token=SECRETS["api_token"] + "x").text)
        responses.append(daemon.post("/api/v1/apps/vault/refresh").text)
        wait_converged(daemon, ["vault"], timeout=30)
        for path in ("/api/v1/apps", "/api/v1/apps/vault", "/api/v1/apps/private-git", "/healthz", "/readyz",
                     "/metrics", "/api/v1/nope"):
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
        code = env.stop()
        sandbox.stop()
    assert code == 0

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
    assert any(e.get("app") == "private-git" for e in events), "the failing fetch produced no event"
    delivered = [body.decode(errors="replace") for _, _, body in receiver.requests]
    assert delivered, "no notification was delivered"
    places = {"daemon log": log_text, "events": json.dumps(events), "notifications": "\n".join(delivered),
              "API responses": "\n".join(responses)}
    for where, text in places.items():
        for name, value in SECRETS.items():
            for form in forms(value):
                assert form not in text, f"secret {name} leaked into the {where}"
    # The near-miss token and forged signatures are not echoed either.
    assert SECRETS["api_token"] + "x" not in log_text
