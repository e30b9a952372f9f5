"""Prometheus metrics of one daemon, in their own :class:`CollectorRegistry`.

Never the process-global registry: two daemons in one process (tests) must not share
counters, and a library's metrics must not leak into ``/metrics``.

Who moves what:

- the engine (:mod:`gitopsd.daemon.housekeeping`): ``reconcile``, ``source_fetch``,
  ``drift_correction``, and the per-app gauges read at scrape time from the runners;
- the event bus (:class:`gitopsd.engine.bus.BusMetrics`): ``notifications_total``,
  ``queue_dropped``;
- the Kubernetes layer: :meth:`Metrics.kube_request` once per API request;
- plugins, through ``PluginContext.count(operation, result=...)``:
  ``gitopsd_plugin_operations_total{operation, result}`` (the git source counts
  ``git_ls_remote`` this way).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

# Submodules, not the package: prometheus_client's __init__ imports the exposition servers
# (wsgiref, http.server) and the process-wide collectors; see gitopsd/server/__init__.py.
from prometheus_client.metrics import Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from gitopsd.core.models import Health, SyncStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_RESULTS = ("succeeded", "failed", "unchanged", "skipped")
_OPERATION = re.compile(r"[a-z][a-z0-9_]{0,62}")

# Reconciles take from milliseconds (a no-op against the live cache) to minutes (a health wait).
_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


@dataclass(frozen=True, slots=True)
class AppSample:
    """What the per-app gauges show about one app at scrape time."""

    app: str
    cluster: str
    sync: SyncStatus
    health: Health
    suspended: bool


class _AppCollector(Collector):
    """State-set style gauges: one series per possible value, 1 for the current one."""

    def __init__(self, source: Callable[[], Iterable[AppSample]]):
        self._source = source

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []  # values are only known at scrape time: skip the registration-time collect

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sync = GaugeMetricFamily(
            "gitopsd_app_sync_status", "1 for the app's current sync status.", labels=["app", "cluster", "status"]
        )
        health = GaugeMetricFamily(
            "gitopsd_app_health", "1 for the app's current health.", labels=["app", "cluster", "health"]
        )
        suspended = GaugeMetricFamily("gitopsd_app_suspended", "1 if the app is suspended.", labels=["app", "cluster"])
        count = 0
        for sample in self._source():
            count += 1
            for status in SyncStatus:
                sync.add_metric([sample.app, sample.cluster, str(status)], 1.0 if sample.sync == status else 0.0)
            for value in Health:
                health.add_metric([sample.app, sample.cluster, str(value)], 1.0 if sample.health == value else 0.0)
            suspended.add_metric([sample.app, sample.cluster], 1.0 if sample.suspended else 0.0)
        apps = GaugeMetricFamily("gitopsd_apps", "Number of configured applications.")
        apps.add_metric([], float(count))
        yield from (sync, health, suspended, apps)


class _ReconcileCounter(Collector):
    """``gitopsd_reconcile_total{app, result}`` from a plain dict.

    Every app counts a reconcile per interval: a labelled ``Counter`` child costs a metric
    object and a lock per app and result (1.3 KiB per app) and a label lookup per count.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def describe(self) -> Iterable[CounterMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = self._family()
        for (app, result), value in list(self.counts.items()):
            family.add_metric([app, result], float(value))
        yield family

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            "gitopsd_reconcile", "Reconciles by outcome (succeeded, failed, unchanged, skipped).", labels=["app", "result"]
        )


class Metrics:
    """Every gitopsd metric, registered in a registry of its own. Implements ``BusMetrics``.

    Args:
        apps: Called at scrape time for the per-app gauges (the daemon passes its runners'
            statuses); None for no per-app gauges.
    """

    def __init__(self, apps: Callable[[], Iterable[AppSample]] | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._reconcile = _ReconcileCounter()
        r.register(self._reconcile)
        self._reconcile_seconds = Histogram(
            # By result, not by app: a histogram per app is 15 series each (15,000 at 1000 apps).
            "gitopsd_reconcile_duration_seconds", "Duration of reconciles.", ["result"], buckets=_DURATION_BUCKETS, registry=r
        )
        self._seconds_by_result: dict[str, Histogram] = {}
        self._fetch = Counter("gitopsd_source_fetch", "Source fetches by source type and result.", ["type", "result"], registry=r)
        self._plugin_ops = Counter(
            "gitopsd_plugin_operations", "Operations plugins count (PluginContext.count) by name and result.",
            ["operation", "result"], registry=r,
        )
        self._kube = Counter(
            "gitopsd_kube_requests", "Kubernetes API requests by cluster, verb and HTTP code.", ["cluster", "verb", "code"], registry=r
        )
        self._notifications = Counter(
            "gitopsd_notifications", "Notifications by notifier and result (sent, failed, retried, deduped).",
            ["notifier", "result"], registry=r,
        )
        self._dropped = Counter(
            "gitopsd_notifier_queue_dropped", "Events dropped from a full notifier queue.", ["notifier"], registry=r
        )
        self._drift = Counter("gitopsd_drift_corrections", "Self-heal re-applies after live drift.", ["app"], registry=r)
        self._webhooks = Counter(
            "gitopsd_webhook_requests", "Push webhook requests by provider and outcome.", ["provider", "outcome"], registry=r
        )
        self._reloads = Counter("gitopsd_config_reloads", "Config reloads by result (ok, failed).", ["result"], registry=r)
        self._api = Counter("gitopsd_api_requests", "HTTP API requests by route and status code.", ["route", "code"], registry=r)
        self._cache_bytes = Gauge("gitopsd_cache_bytes", "Bytes in the plugin caches (daemon.cache_dir).", registry=r)
        self._cache_evictions = Counter(
            "gitopsd_cache_evictions", "Cache entries evicted to stay under daemon.cache_max_bytes.", registry=r
        )
        if apps is not None:
            r.register(_AppCollector(apps))

    # -- engine --------------------------------------------------------------------------

    def reconcile(self, app: str, result: str, duration: float) -> None:
        """One reconcile finished with ``result`` (succeeded, failed, unchanged, skipped)."""
        counts = self._reconcile.counts
        counts[app, result] = counts.get((app, result), 0) + 1
        if result != "skipped":
            seconds = self._seconds_by_result.get(result)
            if seconds is None:
                seconds = self._seconds_by_result[result] = self._reconcile_seconds.labels(result)
            seconds.observe(duration)

    def source_fetch(self, source_type: str, result: str) -> None:
        """One fetch of a source (``result``: ok or failed)."""
        self._fetch.labels(source_type, result).inc()

    def drift_correction(self, app: str) -> None:
        self._drift.labels(app).inc()

    def forget_app(self, app: str) -> None:
        """Drop an app's labelled series after it was removed from the config."""
        for result in _RESULTS:
            self._reconcile.counts.pop((app, result), None)
        try:
            self._drift.remove(app)
        except KeyError:
            pass

    # -- other layers --------------------------------------------------------------------

    def kube_request(self, cluster: str, verb: str, code: int | str) -> None:
        """One Kubernetes API request (``code``: the HTTP status, or ``error`` when none came back)."""
        self._kube.labels(cluster, verb.lower(), str(code)).inc()

    def plugin_count(self, name: str, **labels: str) -> None:
        """``PluginContext.count``: one operation of a plugin, by name and ``result`` (default ok).

        Other labels are ignored and a name that is not a metric-safe identifier is dropped,
        so a plugin cannot blow up the number of series.
        """
        if _OPERATION.fullmatch(name):
            self._plugin_ops.labels(name, str(labels.get("result", "ok"))[:32]).inc()

    # -- BusMetrics ----------------------------------------------------------------------

    def notifications_total(self, notifier: str, result: str) -> None:
        self._notifications.labels(notifier, result).inc()

    def queue_dropped(self, notifier: str) -> None:
        self._dropped.labels(notifier).inc()

    # -- the daemon's own ----------------------------------------------------------------

    def webhook(self, provider: str, outcome: str) -> None:
        """A push webhook request: matched, ignored, unauthorized, bad-request, disabled."""
        self._webhooks.labels(provider, outcome).inc()

    def cache(self, size: int, evicted: int) -> None:
        """After a cache sweep: the cache's size and how many entries it evicted."""
        self._cache_bytes.set(size)
        if evicted:
            self._cache_evictions.inc(evicted)

    def reload(self, result: str) -> None:
        self._reloads.labels(result).inc()

    def api_request(self, route: str, code: int) -> None:
        self._api.labels(route, str(code)).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        from prometheus_client.exposition import generate_latest  # at the first scrape

        return generate_latest(self.registry)
