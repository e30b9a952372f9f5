"""The per-app series on /metrics, written by gitopsd with each app's lines kept between scrapes.

Read back with prometheus_client's own parser: the text must be what Prometheus reads, with
label values escaped, and a scrape must show each app's state as of that scrape.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gitopsd.core.models import Health, SyncStatus
from gitopsd.server.metrics import AppSample, Metrics


def series(metrics: Metrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of the exposition: metric name -> sorted labels -> value."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def current(samples: dict[tuple[tuple[str, str], ...], float], label: str) -> dict[tuple[str, str], str]:
    """(app, cluster) -> the one value of ``label`` whose series is 1."""
    found: dict[tuple[str, str], str] = {}
    for labels, value in samples.items():
        d = dict(labels)
        if value == 1.0:
            assert (d["app"], d["cluster"]) not in found, f"two current values for {d}"
            found[d["app"], d["cluster"]] = d[label]
    return found


def test_state_sets_follow_each_scrape_and_escape_label_values() -> None:
    odd_cluster = 'east "1" \\ back\nline'
    apps = [
        AppSample("web", "prod", SyncStatus.SYNCED, Health.HEALTHY, False),
        AppSample("db", odd_cluster, SyncStatus.OUT_OF_SYNC, Health.DEGRADED, True),
    ]
    metrics = Metrics(lambda: apps)

    first = series(metrics)
    assert current(first["gitopsd_app_sync_status"], "status") == {
        ("web", "prod"): str(SyncStatus.SYNCED),
        ("db", odd_cluster): str(SyncStatus.OUT_OF_SYNC),
    }
    assert current(first["gitopsd_app_health"], "health") == {
        ("web", "prod"): str(Health.HEALTHY),
        ("db", odd_cluster): str(Health.DEGRADED),
    }
    # state-set style: one series per possible value
    assert len(first["gitopsd_app_sync_status"]) == 2 * len(SyncStatus)
    assert len(first["gitopsd_app_health"]) == 2 * len(Health)
    assert first["gitopsd_app_suspended"] == {
        (("app", "web"), ("cluster", "prod")): 0.0,
        (("app", "db"), ("cluster", odd_cluster)): 1.0,
    }
    assert first["gitopsd_apps"] == {(): 2.0}

    # A changed state shows at the next scrape; a removed app is gone from it.
    apps[:] = [AppSample("web", "prod", SyncStatus.OUT_OF_SYNC, Health.PROGRESSING, True)]
    second = series(metrics)
    assert current(second["gitopsd_app_sync_status"], "status") == {("web", "prod"): str(SyncStatus.OUT_OF_SYNC)}
    assert current(second["gitopsd_app_health"], "health") == {("web", "prod"): str(Health.PROGRESSING)}
    assert second["gitopsd_app_suspended"] == {(("app", "web"), ("cluster", "prod")): 1.0}
    assert second["gitopsd_apps"] == {(): 1.0}


def test_reconcile_counts_move_between_scrapes() -> None:
    metrics = Metrics(lambda: [])
    metrics.reconcile("web", "succeeded", 0.1)
    assert series(metrics)["gitopsd_reconcile_total"] == {(("app", "web"), ("result", "succeeded")): 1.0}
    metrics.reconcile("web", "succeeded", 0.1)
    metrics.reconcile('we"b', "failed", 0.1)
    assert series(metrics)["gitopsd_reconcile_total"] == {
        (("app", "web"), ("result", "succeeded")): 2.0,
        (("app", 'we"b'), ("result", "failed")): 1.0,
    }


def test_without_an_app_source_there_are_no_per_app_gauges() -> None:
    names = set(series(Metrics()))
    assert "gitopsd_app_sync_status" not in names and "gitopsd_apps" not in names
    assert "gitopsd_kube_requests_total" not in names  # no request yet: no series
