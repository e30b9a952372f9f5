"""The per-app families of ``/metrics`` are written as text: the same lines prometheus_client writes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from gitopsd.core.models import Health, SyncStatus
from gitopsd.server import metrics as metrics_module
from gitopsd.server.metrics import AppSample, Metrics

SAMPLES = [
    AppSample("web", "prod", SyncStatus.SYNCED, Health.HEALTHY, False),
    AppSample('odd "name"\\with\nnewline', "edge-1", SyncStatus.OUT_OF_SYNC, Health.DEGRADED, True),
    AppSample("ünïcode", "default", SyncStatus.UNKNOWN, Health.PROGRESSING, False),
]
COUNTS = {("web", "succeeded"): 3, ("web", "unchanged"): 120, ('odd "name"\\with\nnewline', "failed"): 1}


class _Reference(Collector):
    """The families as prometheus_client's own metric families (what gitopsd wrote before)."""

    def collect(self) -> Iterator[Metric]:
        reconcile = CounterMetricFamily(
            "gitopsd_reconcile", "Reconciles by outcome (succeeded, failed, unchanged, skipped).", labels=["app", "result"]
        )
        for (app, result), value in COUNTS.items():
            reconcile.add_metric([app, result], float(value))
        sync = GaugeMetricFamily("gitopsd_app_sync_status", "1 for the app's current sync status.", labels=["app", "cluster", "status"])
        health = GaugeMetricFamily("gitopsd_app_health", "1 for the app's current health.", labels=["app", "cluster", "health"])
        suspended = GaugeMetricFamily("gitopsd_app_suspended", "1 if the app is suspended.", labels=["app", "cluster"])
        for s in SAMPLES:
            for status in SyncStatus:
                sync.add_metric([s.app, s.cluster, str(status)], 1.0 if s.sync == status else 0.0)
            for value in Health:
                health.add_metric([s.app, s.cluster, str(value)], 1.0 if s.health == value else 0.0)
            suspended.add_metric([s.app, s.cluster], 1.0 if s.suspended else 0.0)
        apps = GaugeMetricFamily("gitopsd_apps", "Number of configured applications.")
        apps.add_metric([], float(len(SAMPLES)))
        yield from (reconcile, sync, health, suspended, apps)


def test_per_app_lines_are_the_ones_prometheus_client_writes() -> None:
    metrics = Metrics(apps=lambda: SAMPLES)
    metrics._reconcile.counts.update(COUNTS)
    reference = CollectorRegistry()
    reference.register(_Reference())
    ours = b"".join(list(metrics.chunks())[1:])  # the first chunk is the registry's own metrics
    assert ours.decode() == generate_latest(reference).decode()
    assert metrics.exposition().endswith(ours)


def test_the_page_comes_in_bounded_chunks(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(metrics_module, "_CHUNK_LINES", 10)
    samples = [AppSample(f"app-{i}", "c", SyncStatus.SYNCED, Health.HEALTHY, False) for i in range(50)]
    metrics = Metrics(apps=lambda: samples)
    chunks = list(metrics.chunks())
    assert max(c.count(b"\n") for c in chunks[1:]) <= 11  # a family header is two lines
    assert b"".join(chunks).count(b"gitopsd_app_health{") == 50 * len(Health)


def test_the_registry_lines_are_the_ones_prometheus_client_writes() -> None:
    metrics = Metrics()
    metrics.reconcile('odd "app"\\x\n', "succeeded", 0.2)
    metrics.reconcile("web", "failed", 42.0)
    metrics.source_fetch("git", "ok")
    metrics.drift_correction("web")
    metrics.kube_request("prod", "PATCH", 200)
    metrics.kube_request("prod", "GET", "error")
    metrics.notifications_total("slack", "sent")
    metrics.queue_dropped("slack")
    metrics.webhook("github", "accepted")
    metrics.cache(1234, 2)
    metrics.reload("ok")
    metrics.api_request("/apps", 200)
    first = next(iter(metrics.chunks()))
    assert first.decode() == generate_latest(metrics.registry).decode()
    assert b"gitopsd_source_fetch_created{" in first  # the created series are there, as generate_latest moves them


def test_a_scrape_does_not_import_the_exposition_servers() -> None:
    code = (
        "import sys\n"
        "from gitopsd.server.metrics import Metrics\n"
        "m = Metrics()\nm.kube_request('c', 'GET', 200)\nb''.join(m.chunks())\n"
        "print(sorted(n for n in ('prometheus_client.exposition', 'wsgiref', 'http.server') if n in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_requests_before_the_first_count_are_tallied_then_added() -> None:
    """/healthz and /readyz polls while the daemon starts do not make the prometheus_client
    metrics (their import is about 1.6 % of the start): they are tallied and added later."""
    script = (
        "import sys; from gitopsd.server.metrics import Metrics; m = Metrics(); m.api_request('/readyz', 503); "
        "print('prometheus_client.metrics' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.split() == ["False"]
    metrics = Metrics()
    metrics.api_request("/readyz", 503)
    metrics.api_request("/readyz", 503)
    metrics.api_request("/healthz", 200)
    metrics.source_fetch("git", "ok")  # the first other count makes them
    metrics.api_request("/readyz", 200)
    page = metrics.exposition().decode()
    assert 'gitopsd_api_requests_total{code="503",route="/readyz"} 2.0' in page
    assert 'gitopsd_api_requests_total{code="200",route="/healthz"} 1.0' in page
    assert 'gitopsd_api_requests_total{code="200",route="/readyz"} 1.0' in page
    assert 'gitopsd_source_fetch_total{result="ok",type="git"} 1.0' in page
