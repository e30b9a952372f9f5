"""`gitopsd doctor` as an operator runs it, against real components: the sandbox, a real git
repository, a closed port for an unreachable cluster, a world-readable secret file."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from gitopsd.testing.plugin import GitRepo, HTTPServer

pytestmark = pytest.mark.anyio

API_TOKEN = "doctor-api-token-5f1c9e0b7a"
HOOK_PATH_SECRET = "T000/B000/doctorHookSecret42"
CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: production
"""


async def doctor(config: Path, *args: str) -> tuple[int, str, str]:
    """Run `gitopsd doctor` in its own process (the sandbox keeps serving in this one)."""
    result = await anyio.run_process(
        [sys.executable, "-m", "gitopsd", "doctor", "-c", str(config), *args], check=False
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


def setup(tmp_path: Path, sandbox: Any, repo: GitRepo, extra: str = "") -> Path:
    repo.commit({"app/settings.yaml": CONFIGMAP}, message="settings")
    kubeconfig = sandbox.write_kubeconfig(tmp_path / "kubeconfig")
    kubeconfig.chmod(0o600)
    token = secret_file(tmp_path / "api-token", API_TOKEN)
    hook = secret_file(tmp_path / "slack-url", f"http://localhost/services/{HOOK_PATH_SECRET}")
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[daemon]
state_dir = "{tmp_path / "state"}"
api_token_file = "{token}"

[clusters.sandbox]
kubeconfig = "{kubeconfig}"

[notifiers.ops]
type = "slack"
webhook_url_file = "{hook}"

[apps.web]
cluster = "sandbox"
namespace = "web"
source = {{ type = "git", url = "{repo.url}", ref = "main", path = "app" }}
render = {{ type = "plain" }}
notify = ["ops"]
{extra}
"""
    )
    return config


def assert_no_secret(text: str, sandbox: Any) -> None:
    for secret in (API_TOKEN, HOOK_PATH_SECRET, sandbox.token):
        assert secret not in text


async def test_everything_passes_on_a_healthy_setup(
    tmp_path: Path, gitopsd_sandbox: Any, git_repo: GitRepo
) -> None:
    config = setup(tmp_path, gitopsd_sandbox, git_repo)
    code, out, err = await doctor(config, "--json")
    assert code == 0, out + err
    report = json.loads(out)
    checks = {c["check"]: c for c in report["checks"]}
    assert report["ok"] is True
    assert all(c["status"] in ("ok", "warn") for c in report["checks"]), out
    assert "valid (1 apps, 1 clusters, 1 notifiers)" in checks["config"]["detail"]
    assert checks["secret daemon.api_token_file"]["status"] == "ok"
    assert "git version" in checks["tool git"]["detail"] and "needed by web" in checks["tool git"]["detail"]
    assert checks["state_dir"]["status"] == "ok"
    assert "answers: main@sha1:" + git_repo.git("rev-parse", "HEAD") in checks["source web"]["detail"]
    assert "Kubernetes v1.33.0-gitopsd-sandbox" in checks["cluster sandbox"]["detail"]
    assert checks["cluster sandbox access"]["detail"] == (
        "may create, patch and delete what the apps render: configmaps in web, namespaces"
    )
    assert checks["notifier ops"]["detail"].startswith("slack: localhost resolves")
    # Nothing was written: the access review only asks.
    assert gitopsd_sandbox.counters()["writes"] == 0
    assert_no_secret(out + err, gitopsd_sandbox)


async def test_failures_are_named_with_a_fix_and_exit_1(
    tmp_path: Path, gitopsd_sandbox: Any, git_repo: GitRepo
) -> None:
    down = tmp_path / "kubeconfig-down"
    gitopsd_sandbox.write_kubeconfig(down, server=f"https://127.0.0.1:{closed_port()}").chmod(0o600)
    extra = f"""
[clusters.down]
kubeconfig = "{down}"

[apps.gone]
cluster = "down"
source = {{ type = "git", url = "{(tmp_path / "no-such-repo").as_uri()}" }}
"""
    config = setup(tmp_path, gitopsd_sandbox, git_repo, extra)
    (tmp_path / "api-token").chmod(0o644)  # world-readable
    code, out, err = await doctor(config, "--timeout", "3")
    assert code == 1, out + err
    lines = out.splitlines()
    by_check = {line.split(":", 1)[0]: line for line in lines}
    token = str(tmp_path / "api-token")
    assert by_check["FAIL secret daemon.api_token_file"] == (
        f"FAIL secret daemon.api_token_file: {token} has mode 0644: other users can read it"
        f"  -> fix: chown {os.geteuid()} {token} && chmod 600 {token}"
    )
    assert by_check["FAIL cluster down"].startswith("FAIL cluster down: https://127.0.0.1:")
    assert "-> fix: check the kubeconfig's server and credentials" in by_check["FAIL cluster down"]
    assert "RepositoryNotFound" in by_check["FAIL source gone"] or "-> fix: check the URL" in by_check["FAIL source gone"]
    # the healthy parts still pass, and the summary counts the failures
    assert by_check["ok   cluster sandbox"]
    assert lines[-1] == f"{len(lines) - 1} checks, 3 failed"
    assert_no_secret(out + err, gitopsd_sandbox)


async def test_an_invalid_config_is_one_failed_check(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[apps.web]\ncluster = "nope"\n')
    code, out, _ = await doctor(config, "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    [check] = report["checks"]
    assert check["check"] == "config" and check["status"] == "FAIL"
    assert "apps.web" in check["detail"] and check["fix"].startswith("edit ")


async def test_denied_access_is_named_per_verb_and_resource(
    tmp_path: Path, http_server: HTTPServer, git_repo: GitRepo
) -> None:
    """An API server that answers the reviews with "no" (a real HTTP server, scripted)."""
    http_server.reply("/version", json.dumps({"major": "1", "minor": "30", "gitVersion": "v1.30.2"}))
    http_server.reply("/api/v1", json.dumps({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        {"name": "configmaps", "namespaced": True, "kind": "ConfigMap", "verbs": ["create", "patch", "delete"]},
    ]}))
    http_server.reply(
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        json.dumps({"kind": "SelfSubjectAccessReview", "status": {"allowed": False, "reason": "RBAC: no"}}),
        status=201,
    )
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": http_server.url}}],
        "users": [{"name": "u", "user": {"token": "reviewer-token-1234"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    kubeconfig.chmod(0o600)
    git_repo.commit({"app/settings.yaml": CONFIGMAP})
    config = tmp_path / "config.toml"
    config.write_text(f"""
[daemon]
state_dir = "{tmp_path / "state"}"
[clusters.c]
kubeconfig = "{kubeconfig}"
[apps.web]
cluster = "c"
namespace = "web"
source = {{ type = "git", url = "{git_repo.url}", path = "app" }}
render = {{ type = "plain" }}
""")
    code, out, err = await doctor(config)
    assert code == 1, out + err
    assert "FAIL cluster c access: may not create configmaps in web, patch configmaps in web, delete configmaps in web" in out
    reviews = [json.loads(body) for method, path, _, body in http_server.requests if path.endswith("selfsubjectaccessreviews")]
    assert [r["spec"]["resourceAttributes"]["verb"] for r in reviews] == ["create", "patch", "delete"]
    assert {r["spec"]["resourceAttributes"]["namespace"] for r in reviews} == {"web"}
    assert all(h.get("User-Agent", "").startswith("gitopsd/") for _, _, h, _ in http_server.requests)
    assert "reviewer-token-1234" not in out + err



async def test_a_missing_tool_the_config_needs_fails_with_the_install_hint(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{closed_port()}"}}],
        "users": [{"name": "u", "user": {"token": "t0k3n-for-nothing"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    kubeconfig.chmod(0o600)
    (tmp_path / "chart").mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f"""
[daemon]
state_dir = "{tmp_path / "state"}"
[daemon.tools]
helm = "{tmp_path / "no-such-helm"}"
[clusters.c]
kubeconfig = "{kubeconfig}"
[apps.web]
cluster = "c"
source = {{ type = "local", path = "{tmp_path / "chart"}" }}
render = {{ type = "helm" }}
""")
    code, out, err = await doctor(config, "--timeout", "2")
    assert code == 1, out + err
    [line] = [line for line in out.splitlines() if line.startswith("FAIL tool helm")] or [out]
    assert line == (
        f"FAIL tool helm: '{tmp_path / 'no-such-helm'}' not found (needed by web)"
        "  -> fix: scripts/install-tools.sh --prefix /opt/gitopsd/bin, and set daemon.tools.helm"
    )
    assert "ok   tool kubectl: " in out and "not needed by this config" in out
