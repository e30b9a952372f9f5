"""``gitopsd_reconcile_total``: counted per app and result, and forgotten with the app."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gitopsd.server.metrics import Metrics


def reconciles(metrics: Metrics) -> dict[tuple[str, str], float]:
    text = metrics.exposition().decode()
    return {
        (s.labels["app"], s.labels["result"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "gitopsd_reconcile_total"
    }


def test_counts_per_app_and_result_and_forgets_a_removed_app() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.reconcile("web", "unchanged", 0.001)
    metrics.reconcile("web", "succeeded", 0.5)
    metrics.reconcile("db", "skipped", 0.0)
    assert reconciles(metrics) == {("web", "unchanged"): 3.0, ("web", "succeeded"): 1.0, ("db", "skipped"): 1.0}
    metrics.forget_app("web")
    assert reconciles(metrics) == {("db", "skipped"): 1.0}
