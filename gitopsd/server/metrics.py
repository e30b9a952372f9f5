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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# Submodules, not the package: prometheus_client's __init__ imports the exposition servers
# (wsgiref, http.server) and the process-wide collectors; see gitopsd/server/__init__.py.
from prometheus_client.metrics import Counter, Gauge, Histogram
from prometheus_client.registry import CollectorRegistry

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


def _label(value: str) -> str:
    """A label value escaped as the text format wants it (backslash, double quote, newline)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family_header(name: str, help_text: str, kind: str) -> bytes:
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n".encode()


_SYNC_HEADER = _family_header("gitopsd_app_sync_status", "1 for the app's current sync status.", "gauge")
_HEALTH_HEADER = _family_header("gitopsd_app_health", "1 for the app's current health.", "gauge")
_SUSPENDED_HEADER = _family_header("gitopsd_app_suspended", "1 if the app is suspended.", "gauge")
_APPS_HEADER = _family_header("gitopsd_apps", "Number of configured applications.", "gauge")
_RECONCILE_HEADER = _family_header(
    "gitopsd_reconcile_total", "Reconciles by outcome (succeeded, failed, unchanged, skipped).", "counter"
)


class _PerAppSeries:
    """The per-app series, written in the text format by gitopsd, each app's lines kept until they change.

    ``prometheus_client`` validates and escapes every label of every sample at every scrape:
    ~20 us a line, 0.2 s a scrape at 1000 apps (11,000 lines), 2 s at 10,000. These families
    are a dozen lines per app whose labels never change and whose values rarely do, so each
    app's lines are rendered once per state (gauges: state-set style, one series per possible
    value, 1 for the current one) and once per count (``gitopsd_reconcile_total``).
    """

    def __init__(self, source: Callable[[], Iterable[AppSample]] | None):
        self._source = source
        self._states: dict[AppSample, tuple[bytes, bytes, bytes]] = {}
        self.counts: dict[tuple[str, str], int] = {}  # (app, result) -> reconciles
        self._count_lines: dict[tuple[str, str, int], bytes] = {}

    def text(self) -> bytes:
        out = [self._gauges()] if self._source is not None else []
        out.append(self._reconciles())
        return b"".join(out)

    def _gauges(self) -> bytes:
        assert self._source is not None
        sync, health, suspended = [_SYNC_HEADER], [_HEALTH_HEADER], [_SUSPENDED_HEADER]
        seen: dict[AppSample, tuple[bytes, bytes, bytes]] = {}
        for sample in self._source():
            lines = self._states.get(sample) or _state_lines(sample)
            seen[sample] = lines
            sync.append(lines[0])
            health.append(lines[1])
            suspended.append(lines[2])
        self._states = seen  # what apps no longer show is dropped with them
        apps = _APPS_HEADER + f"gitopsd_apps {float(len(seen))}\n".encode()
        return b"".join([*sync, *health, *suspended, apps])

    def _reconciles(self) -> bytes:
        lines = [_RECONCILE_HEADER]
        seen: dict[tuple[str, str, int], bytes] = {}
        for (app, result), value in list(self.counts.items()):
            key = (app, result, value)
            line = self._count_lines.get(key)
            if line is None:
                line = f'gitopsd_reconcile_total{{app="{_label(app)}",result="{_label(result)}"}} {float(value)}\n'.encode()
            seen[key] = line
            lines.append(line)
        self._count_lines = seen
        return b"".join(lines)


def _state_lines(sample: AppSample) -> tuple[bytes, bytes, bytes]:
    labels = f'app="{_label(sample.app)}",cluster="{_label(sample.cluster)}"'
    sync = "".join(
        f'gitopsd_app_sync_status{{{labels},status="{_label(str(status))}"}} {1.0 if sample.sync == status else 0.0}\n'
        for status in SyncStatus
    )
    health = "".join(
        f'gitopsd_app_health{{{labels},health="{_label(str(value))}"}} {1.0 if sample.health == value else 0.0}\n'
        for value in Health
    )
    suspended = f"gitopsd_app_suspended{{{labels}}} {1.0 if sample.suspended else 0.0}\n"
    return sync.encode(), health.encode(), suspended.encode()


class Metrics:
    """Every gitopsd metric, registered in a registry of its own. Implements ``BusMetrics``.

    Args:
        apps: Called at scrape time for the per-app gauges (the daemon passes its runners'
            statuses); None for no per-app gauges.
    """

    def __init__(self, apps: Callable[[], Iterable[AppSample]] | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        """Every metric but the per-app series (:class:`_PerAppSeries`, joined in :meth:`exposition`)."""
        r = self.registry
        self._per_app = _PerAppSeries(apps)
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
        self._kube_children: dict[tuple[str, str, int | str], Any] = {}
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

    # -- engine --------------------------------------------------------------------------

    def reconcile(self, app: str, result: str, duration: float) -> None:
        """One reconcile finished with ``result`` (succeeded, failed, unchanged, skipped)."""
        counts = self._per_app.counts
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
            self._per_app.counts.pop((app, result), None)
        try:
            self._drift.remove(app)
        except KeyError:
            pass

    # -- other layers --------------------------------------------------------------------

    def kube_request(self, cluster: str, verb: str, code: int | str) -> None:
        """One Kubernetes API request (``code``: the HTTP status, or ``error`` when none came back)."""
        key = (cluster, verb, code)
        child = self._kube_children.get(key)
        if child is None:  # labels() validates and locks on every call: once per series instead
            child = self._kube_children[key] = self._kube.labels(cluster, verb.lower(), str(code))
        child.inc()

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

        return generate_latest(self.registry) + self._per_app.text()
