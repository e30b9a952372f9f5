"""The HTTP API on a real loopback port: auth, limits, JSON errors, metrics, webhook endpoints."""

from __future__ import annotations

import json

import httpx
import pytest
from structlog.testing import capture_logs

from .conftest import (
    API_TOKEN,
    GITHUB_SECRET,
    GITLAB_TOKEN,
    READ_TOKEN,
    Env,
    github_signature,
    running,
)

pytestmark = pytest.mark.anyio


async def test_health_ready_and_json_404(env: Env, http: httpx.AsyncClient) -> None:
    config = env.write(env.daemon_toml())
    async with running(env, config):
        r = await http.get(f"{env.base_url}/healthz")
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        r = await http.get(f"{env.base_url}/readyz")
        assert r.status_code == 200 and r.json()["status"] == "ready"
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        r = await http.get(f"{env.base_url}/api/v1/apps", headers=auth)
        assert r.status_code == 200 and r.json() == {"apps": []}
        r = await http.get(f"{env.base_url}/api/v1/apps/nope", headers=auth)
        assert r.status_code == 404 and r.json() == {"error": "no app named 'nope'"}
        r = await http.get(f"{env.base_url}/no/such/thing")
        assert r.status_code == 404 and "no such endpoint" in r.json()["error"]
        r = await http.delete(f"{env.base_url}/api/v1/apps")
        assert r.status_code == 405 and r.headers["content-type"].startswith("application/json")


async def test_mutating_calls_are_refused_without_a_configured_token(env: Env, http: httpx.AsyncClient) -> None:
    config = env.write(env.daemon_toml(token=False))
    async with running(env, config):
        for headers in ({}, {"Authorization": f"Bearer {API_TOKEN}"}, {"Authorization": "Bearer x"}):
            r = await http.post(f"{env.base_url}/api/v1/apps/web/refresh", headers=headers)
            assert r.status_code == 403
            assert "api_token_file" in r.json()["error"]


async def test_bearer_token(env: Env, http: httpx.AsyncClient) -> None:
    config = env.write(env.daemon_toml())
    url = f"{env.base_url}/api/v1/apps/web/suspend"
    async with running(env, config):
        with capture_logs() as logs:
            for headers in (
                {},
                {"Authorization": "Bearer wrong-token"},
                {"Authorization": f"Basic {API_TOKEN}"},
                {"Authorization": f"Bearer {API_TOKEN}x"},
            ):
                r = await http.post(url, headers=headers)
                assert r.status_code == 401, headers
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                assert API_TOKEN not in r.text
        assert logs and API_TOKEN not in json.dumps(logs, default=str)
        # the right token passes auth; the app does not exist: 404 JSON
        r = await http.post(url, headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert r.status_code == 404 and r.json() == {"error": "no app named 'web'"}
        r = await http.post(f"{env.base_url}/api/v1/apps/web/explode", headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert r.status_code == 404


async def test_bodies_over_the_limit_get_413(env: Env, http: httpx.AsyncClient) -> None:
    config = env.write(env.daemon_toml())  # max_body_bytes = 4096
    big = b"{" + b" " * 5000 + b"}"
    async with running(env, config):
        r = await http.post(
            f"{env.base_url}/hooks/github",
            content=big,
            headers={"X-Hub-Signature-256": github_signature(big), "X-GitHub-Event": "push"},
        )
        assert r.status_code == 413 and "4096" in r.json()["error"]

        async def chunks():  # no Content-Length: the limit holds while reading
            for _ in range(10):
                yield b"x" * 1000

        r = await http.post(
            f"{env.base_url}/api/v1/apps/web/rollback",
            content=chunks(),
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        )
        assert r.status_code in (404, 413)  # unknown app is decided before the body is read
        r = await http.post(f"{env.base_url}/hooks/gitlab", content=chunks(), headers={"X-Gitlab-Token": GITLAB_TOKEN})
        assert r.status_code == 413
        small = b'{"ref": "refs/heads/main", "repository": {"clone_url": "https://github.com/acme/x.git"}}'
        r = await http.post(
            f"{env.base_url}/hooks/github",
            content=small,
            headers={"X-Hub-Signature-256": github_signature(small), "X-GitHub-Event": "push"},
        )
        assert r.status_code == 202 and r.json()["refreshed"] == []


async def test_webhook_endpoints_without_a_secret_are_disabled(env: Env, http: httpx.AsyncClient) -> None:
    config = env.write(env.daemon_toml(hooks=False))
    body = b'{"ref": "refs/heads/main"}'
    async with running(env, config):
        for provider in ("github", "gitlab", "gitea", "bitbucket"):
            r = await http.post(
                f"{env.base_url}/hooks/{provider}", content=body, headers={"X-Hub-Signature-256": github_signature(body)}
            )
            assert r.status_code == 404, provider


async def test_bad_signatures_are_401_and_logged_without_payload(env: Env, http: httpx.AsyncClient) -> None:
    config = env.write(env.daemon_toml())
    body = json.dumps(
        {"ref": "refs/heads/main", "repository": {"clone_url": "https://github.com/acme/secret-project-name.git"}}
    ).encode()
    async with running(env, config):
        with capture_logs() as logs:
            r = await http.post(
                f"{env.base_url}/hooks/github",
                content=body,
                headers={"X-Hub-Signature-256": github_signature(body, "forged"), "X-GitHub-Event": "push"},
            )
        assert r.status_code == 401
        text = json.dumps(logs, default=str)
        assert "webhook refused" in text
        assert "secret-project-name" not in text and GITHUB_SECRET not in text
        assert GITHUB_SECRET not in r.text
        # ping and non-push events
        ping = b"{}"
        r = await http.post(
            f"{env.base_url}/hooks/github", content=ping, headers={"X-Hub-Signature-256": github_signature(ping), "X-GitHub-Event": "ping"}
        )
        assert r.status_code == 200 and r.json() == {"status": "pong"}
        r = await http.post(
            f"{env.base_url}/hooks/github", content=ping, headers={"X-Hub-Signature-256": github_signature(ping), "X-GitHub-Event": "issues"}
        )
        assert r.status_code == 202 and r.json()["status"] == "ignored"
        r = await http.post(
            f"{env.base_url}/hooks/github", content=ping, headers={"X-Hub-Signature-256": github_signature(ping), "X-GitHub-Event": "push"}
        )
        assert r.status_code == 400


def _sample(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def test_metrics_are_exposed_and_move(env: Env, http: httpx.AsyncClient) -> None:
    config = env.write(env.daemon_toml())
    async with running(env, config) as daemon:
        r = await http.get(f"{env.base_url}/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        for name in (
            "gitopsd_reconcile_total",
            "gitopsd_reconcile_duration_seconds",
            "gitopsd_source_fetch_total",
            "gitopsd_plugin_operations_total",
            "gitopsd_kube_requests_total",
            "gitopsd_notifications_total",
            "gitopsd_notifier_queue_dropped_total",
            "gitopsd_drift_corrections_total",
            "gitopsd_apps",
        ):
            assert f"# TYPE {name.removesuffix('_total')}" in r.text, name
        before = _sample(r.text, "gitopsd_api_requests_total", route="/healthz", code="200")
        for _ in range(3):
            await http.get(f"{env.base_url}/healthz")
        body = b"{}"
        await http.post(f"{env.base_url}/hooks/github", content=body, headers={"X-Hub-Signature-256": "sha256=00"})
        daemon.metrics.kube_request("prod", "PATCH", 200)  # the hook the kube layer calls
        r = await http.get(f"{env.base_url}/metrics")
        assert _sample(r.text, "gitopsd_api_requests_total", route="/healthz", code="200") == before + 3
        assert _sample(r.text, "gitopsd_webhook_requests_total", provider="github", outcome="unauthorized") == 1
        assert _sample(r.text, "gitopsd_kube_requests_total", cluster="prod", verb="patch", code="200") == 1
        assert "python_gc_objects_collected_total" not in r.text  # a registry of its own, not the global one


async def test_reads_need_a_token_and_the_read_token_only_reads(env: Env, http: httpx.AsyncClient) -> None:
    config = env.write(env.daemon_toml(read_token=True))
    base = env.base_url
    async with running(env, config):
        for path in ("/api/v1/apps", "/api/v1/apps/web"):
            r = await http.get(base + path)
            assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer"), path
            r = await http.get(base + path, headers={"Authorization": f"Bearer {READ_TOKEN}x"})
            assert r.status_code == 401, path
        for token in (READ_TOKEN, API_TOKEN):
            r = await http.get(base + "/api/v1/apps", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200 and r.json() == {"apps": []}
        r = await http.post(base + "/api/v1/apps/web/refresh", headers={"Authorization": f"Bearer {READ_TOKEN}"})
        assert r.status_code == 403 and "read token" in r.json()["error"]
        # health, readiness and metrics stay open by default
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await http.get(base + path)).status_code == 200, path


async def test_reads_are_refused_without_any_token(env: Env, http: httpx.AsyncClient) -> None:
    config = env.write(env.daemon_toml(token=False))
    async with running(env, config):
        r = await http.get(f"{env.base_url}/api/v1/apps", headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert r.status_code == 403 and "read_token_file" in r.json()["error"]


async def test_metrics_can_require_the_token(env: Env, http: httpx.AsyncClient) -> None:
    config = env.write(env.daemon_toml(read_token=True, extra="metrics_require_token = true"))
    async with running(env, config):
        assert (await http.get(f"{env.base_url}/metrics")).status_code == 401
        r = await http.get(f"{env.base_url}/metrics", headers={"Authorization": f"Bearer {READ_TOKEN}"})
        assert r.status_code == 200 and "gitopsd_" in r.text
        assert (await http.get(f"{env.base_url}/healthz")).status_code == 200
