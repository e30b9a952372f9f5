"""A Slack outage: refusals, then 429s, then recovery. Events within the queue bound arrive once; drops are counted and reported."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.procs import metric_sum, toml_str
from tests.reliability.harness import (
    Env,
    local_app,
    log_events,
    log_records,
    standard_app,
    wait_converged,
    wait_for,
    write_manifests,
)

pytestmark = pytest.mark.integration

APPS = 10
QUEUE = 4


@dataclass
class SlackStandIn:
    """A loopback Slack incoming webhook: ``mode`` is ok, refuse (503) or ratelimit (429 + Retry-After: 1)."""

    mode: str = "refuse"
    delivered: list[dict] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    """The stand-in, serving on a thread."""
    state = SlackStandIn()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.lock:
                state.attempts[state.mode] = state.attempts.get(state.mode, 0) + 1
                mode = state.mode
                if mode == "ok":
                    state.delivered.append(json.loads(body))
            if mode == "ok":
                self._reply(200, b"ok")
            elif mode == "ratelimit":
                self._reply(429, b"rate_limited", {"Retry-After": "1"})
            else:
                self._reply(503, b"service_unavailable")

        def _reply(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def app_of(message: dict) -> str:
    """Which app a delivered Slack message is about (its text names the app)."""
    text = json.dumps(message)
    found = [f"app-{i}" for i in range(APPS) if f"app-{i}" in text]
    assert len(found) == 1, f"cannot tell the app of {text[:300]}"
    return found[0]


def test_slack_outage_then_recovery(env: Env, slack: SlackStandIn, tmp_path: Path) -> None:
    """Ten sync-succeeded events during an outage, queue of 4: the newest ones arrive once each, the rest are counted drops."""
    env.log_level = "debug"
    url_file = tmp_path / "slack-url"
    url_file.write_text(f"http://127.0.0.1:{slack.port}/services/T0/B0/outage-test-secret\n")
    notifier = "\n".join([
        "[notifiers.team]",
        'type = "slack"',
        f"webhook_url_file = {toml_str(url_file)}",
        'events = ["sync-succeeded"]',
        "dedupe_window = 0.0",
        "rate_per_second = 50.0",
        f"queue_size = {QUEUE}",
        "max_retries = 30",
        "timeout = 2.0",
        "",
    ])
    apps = [local_app(f"app-{i}", write_manifests(tmp_path / "apps" / f"app-{i}", standard_app(i, objects=2)),
                      notify='["team"]') for i in range(APPS)]
    env.write_config(apps, extra=notifier)
    daemon = env.start()
    names = [a.name for a in apps]

    # The outage does not hold reconciliation back.
    wait_converged(daemon, names, timeout=60)
    succeeded = wait_for(
        lambda: (evs := [e for e in log_events(env.log) if e.get("name") == "sync-succeeded"]) and len(evs) >= APPS and evs,
        20, "every app's sync-succeeded event",
    )
    assert not slack.delivered
    time.sleep(1.5)
    assert slack.attempts.get("refuse", 0) >= 1, slack.attempts
    slack.mode = "ratelimit"
    # The next retry comes after a doubling backoff (1 s, 2 s, 4 s... with jitter): after three
    # refusals it can be 4-5 s away, more when the converge was slow.
    wait_for(lambda: slack.attempts.get("ratelimit", 0) >= 1, 40, f"a rate-limited attempt ({slack.attempts})")
    slack.mode = "ok"

    dropped_metric = wait_for(lambda: metric_sum(daemon.metrics(), "gitopsd_notifier_queue_dropped_total"), 10,
                              "the dropped-events metric")
    expected_delivered = APPS - int(dropped_metric)
    wait_for(lambda: len(slack.delivered) >= expected_delivered, 30, f"{expected_delivered} deliveries after recovery")
    time.sleep(2.0)  # anything more (a duplicate) would arrive now

    delivered_apps = [app_of(m) for m in slack.delivered]
    assert len(delivered_apps) == len(set(delivered_apps)), f"delivered more than once: {delivered_apps}"
    # Within the bound: the one in flight when the outage began plus a full queue.
    assert len(delivered_apps) == QUEUE + 1, (len(delivered_apps), dropped_metric)
    assert int(dropped_metric) == APPS - QUEUE - 1

    # The dropped events are exactly the ones not delivered, and the drop was reported.
    by_id = {e["id"]: e for e in succeeded}
    dropped_ids = [r["dropped_id"] for r in log_records(env.log) if r.get("event") == "notifier queue full, dropped oldest event"]
    dropped_apps = {by_id[i]["app"] for i in dropped_ids if i in by_id}
    assert dropped_apps.isdisjoint(delivered_apps)
    assert dropped_apps | set(delivered_apps) == set(names)
    reports = [e for e in log_events(env.log) if e.get("name") == "notifier-failed" and e.get("reason") == "QueueOverflow"]
    assert reports, "the queue overflow was not reported as a notifier-failed event"
    assert reports[0]["data"]["notifier"] == "team" and reports[0]["data"]["dropped"] >= 1
    sent = metric_sum(daemon.metrics(), "gitopsd_notifications_total", notifier="team", result="sent")
    assert sent == len(delivered_apps)
    assert daemon.alive()
