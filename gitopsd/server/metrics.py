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
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

# Submodules, not the package: prometheus_client's __init__ imports the exposition servers
# (wsgiref, http.server) and the process-wide collectors; see gitopsd/server/__init__.py.
# Its metric types are imported when the metrics are made (Metrics).
from prometheus_client.utils import floatToGoString

from gitopsd.core.models import Health, SyncStatus

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_RESULTS = ("succeeded", "failed", "unchanged", "skipped")
_OPERATION = re.compile(r"[a-z][a-z0-9_]{0,62}")

# Reconciles take from milliseconds (a no-op against the live cache) to minutes (a health wait).
_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class AppSample(NamedTuple):
    """What the per-app gauges show about one app at scrape time."""

    app: str
    cluster: str
    sync: SyncStatus
    health: Health
    suspended: bool


def _label(value: str) -> str:
    """A label value escaped for the text format, as prometheus_client escapes it."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


_CHUNK_LINES = 1000
"""Lines per chunk of the per-app families: a scrape holds one chunk at a time, not the page."""


def _chunked(lines: Iterable[str]) -> Iterator[bytes]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= _CHUNK_LINES:
            yield "".join(batch).encode()
            batch.clear()
    if batch:
        yield "".join(batch).encode()


def _header(name: str, help_text: str, kind: str) -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"


def _flag(on: bool) -> str:
    return "1.0" if on else "0.0"


_WRITTEN_TYPES = frozenset({"counter", "gauge", "histogram"})


def _registry_lines(registry: CollectorRegistry) -> Iterator[str]:
    """The registry's families in the text format 0.0.4, the lines ``generate_latest`` writes.

    Not ``prometheus_client.exposition``: importing it loads http.server, wsgiref,
    urllib.request and gzip for this one function, about 75 ms of CPU at the first scrape.
    gitopsd registers counters, gauges and histograms without timestamps; a family of any
    other type is left to ``generate_latest`` (tests/unit/test_metrics_text.py compares
    the whole page).
    """
    families = list(registry.collect())
    if any(f.type not in _WRITTEN_TYPES for f in families):
        from prometheus_client.exposition import generate_latest

        yield generate_latest(registry).decode()
        return
    for family in families:
        name = f"{family.name}_total" if family.type == "counter" else family.name
        help_text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        yield _header(name, help_text, family.type)
        created_name = f"{family.name}_created"
        created: list[str] = []  # generate_latest moves them to a gauge family after the others
        for sample in family.samples:
            labels = ",".join(f'{k}="{_label(v)}"' for k, v in sorted(sample.labels.items()))
            line = f"{sample.name}{{{labels}}} " if labels else f"{sample.name} "
            line += f"{floatToGoString(sample.value)}\n"
            if sample.name == created_name:
                created.append(line)
            else:
                yield line
        if created:
            yield _header(created_name, help_text, "gauge")
            yield from created


class _AppFamilies:
    """State-set style gauges: one series per possible value, 1 for the current one.

    Written as text lines, not collected as ``prometheus_client`` samples: at 10,000 apps a
    scrape made 180,000 sample objects and the whole page at once, about 50 MiB for a moment
    on top of everything the daemon holds (its peak RSS). The lines are the ones
    ``generate_latest`` writes for the same families (tests/unit/test_metrics_text.py).
    """

    def __init__(self, source: Callable[[], Iterable[AppSample]]):
        self._source = source

    def lines(self) -> Iterator[str]:
        samples = list(self._source())
        names = [f'app="{_label(s.app)}",cluster="{_label(s.cluster)}"' for s in samples]
        yield _header("gitopsd_app_sync_status", "1 for the app's current sync status.", "gauge")
        for sample, labels in zip(samples, names, strict=True):
            for status in SyncStatus:
                yield f'gitopsd_app_sync_status{{{labels},status="{status}"}} {_flag(sample.sync == status)}\n'
        yield _header("gitopsd_app_health", "1 for the app's current health.", "gauge")
        for sample, labels in zip(samples, names, strict=True):
            for value in Health:
                yield f'gitopsd_app_health{{{labels},health="{value}"}} {_flag(sample.health == value)}\n'
        yield _header("gitopsd_app_suspended", "1 if the app is suspended.", "gauge")
        for sample, labels in zip(samples, names, strict=True):
            yield f"gitopsd_app_suspended{{{labels}}} {_flag(sample.suspended)}\n"
        yield _header("gitopsd_apps", "Number of configured applications.", "gauge")
        yield f"gitopsd_apps {floatToGoString(float(len(samples)))}\n"


class _ReconcileCounter:
    """``gitopsd_reconcile_total{app, result}`` from a plain dict, written as text lines.

    Every app counts a reconcile per interval: a labelled ``Counter`` child costs a metric
    object and a lock per app and result (1.3 KiB per app) and a label lookup per count.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def lines(self) -> Iterator[str]:
        help_text = "Reconciles by outcome (succeeded, failed, unchanged, skipped)."
        yield _header("gitopsd_reconcile_total", help_text, "counter")
        for (app, result), value in list(self.counts.items()):
            yield f'gitopsd_reconcile_total{{app="{_label(app)}",result="{_label(result)}"}} {floatToGoString(float(value))}\n'


class _Families:
    """The prometheus_client metrics of one daemon, registered in a registry of their own."""

    def __init__(self) -> None:
        from prometheus_client.metrics import Counter, Gauge, Histogram
        from prometheus_client.registry import CollectorRegistry

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconcile_seconds = Histogram(
            # By result, not by app: a histogram per app is 15 series each (15,000 at 1000 apps).
            "gitopsd_reconcile_duration_seconds", "Duration of reconciles.", ["result"], buckets=_DURATION_BUCKETS, registry=r
        )
        self.fetch = Counter("gitopsd_source_fetch", "Source fetches by source type and result.", ["type", "result"], registry=r)
        self.plugin_ops = Counter(
            "gitopsd_plugin_operations", "Operations plugins count (PluginContext.count) by name and result.",
            ["operation", "result"], registry=r,
        )
        self.kube = Counter(
            "gitopsd_kube_requests", "Kubernetes API requests by cluster, verb and HTTP code.", ["cluster", "verb", "code"], registry=r
        )
        self.notifications = Counter(
            "gitopsd_notifications", "Notifications by notifier and result (sent, failed, retried, deduped).",
            ["notifier", "result"], registry=r,
        )
        self.dropped = Counter(
            "gitopsd_notifier_queue_dropped", "Events dropped from a full notifier queue.", ["notifier"], registry=r
        )
        self.drift = Counter("gitopsd_drift_corrections", "Self-heal re-applies after live drift.", ["app"], registry=r)
        self.webhooks = Counter(
            "gitopsd_webhook_requests", "Push webhook requests by provider and outcome.", ["provider", "outcome"], registry=r
        )
        self.reloads = Counter("gitopsd_config_reloads", "Config reloads by result (ok, failed).", ["result"], registry=r)
        self.api = Counter("gitopsd_api_requests", "HTTP API requests by route and status code.", ["route", "code"], registry=r)
        self.cache_bytes = Gauge("gitopsd_cache_bytes", "Bytes in the plugin caches (daemon.cache_dir).", registry=r)
        self.cache_evictions = Counter(
            "gitopsd_cache_evictions", "Cache entries evicted to stay under daemon.cache_max_bytes.", registry=r
        )


class Metrics:
    """Every gitopsd metric, registered in a registry of its own. Implements ``BusMetrics``.

    The prometheus_client metrics (:class:`_Families`) are made at their first count or the
    first scrape, not with the daemon: importing prometheus_client's metric types is about
    29 M instructions of the start (1.6 % at 1000 apps), and nothing counts before the daemon
    is ready except HTTP requests (``/healthz``, ``/readyz``), which are tallied meanwhile and
    added when the metrics are made.

    Args:
        apps: Called at scrape time for the per-app gauges (the daemon passes its runners'
            statuses); None for no per-app gauges.
    """

    def __init__(self, apps: Callable[[], Iterable[AppSample]] | None = None):
        self._reconcile = _ReconcileCounter()
        self._seconds_by_result: dict[str, Any] = {}
        self._kube_children: dict[tuple[str, str, int | str], Any] = {}
        self._early_requests: dict[tuple[str, str], int] = {}  # api_request before the metrics were made
        self._apps = _AppFamilies(apps) if apps is not None else None

    @cached_property
    def _f(self) -> _Families:
        families = _Families()
        for (route, code), count in self._early_requests.items():
            families.api.labels(route, code).inc(count)
        self._early_requests.clear()
        return families

    @property
    def registry(self) -> CollectorRegistry:
        """The registry every prometheus_client metric of this daemon is in."""
        return self._f.registry

    # -- engine --------------------------------------------------------------------------

    def reconcile(self, app: str, result: str, duration: float) -> None:
        """One reconcile finished with ``result`` (succeeded, failed, unchanged, skipped)."""
        counts = self._reconcile.counts
        counts[app, result] = counts.get((app, result), 0) + 1
        if result != "skipped":
            seconds = self._seconds_by_result.get(result)
            if seconds is None:
                seconds = self._seconds_by_result[result] = self._f.reconcile_seconds.labels(result)
            seconds.observe(duration)

    def source_fetch(self, source_type: str, result: str) -> None:
        """One fetch of a source (``result``: ok or failed)."""
        self._f.fetch.labels(source_type, result).inc()

    def drift_correction(self, app: str) -> None:
        self._f.drift.labels(app).inc()

    def forget_app(self, app: str) -> None:
        """Drop an app's labelled series after it was removed from the config."""
        for result in _RESULTS:
            self._reconcile.counts.pop((app, result), None)
        try:
            self._f.drift.remove(app)
        except KeyError:
            pass

    # -- other layers --------------------------------------------------------------------

    def kube_request(self, cluster: str, verb: str, code: int | str) -> None:
        """One Kubernetes API request (``code``: the HTTP status, or ``error`` when none came back)."""
        key = (cluster, verb, code)
        child = self._kube_children.get(key)
        if child is None:  # labels() validates and locks on every call: once per series instead
            child = self._kube_children[key] = self._f.kube.labels(cluster, verb.lower(), str(code))
        child.inc()

    def plugin_count(self, name: str, **labels: str) -> None:
        """``PluginContext.count``: one operation of a plugin, by name and ``result`` (default ok).

        Other labels are ignored and a name that is not a metric-safe identifier is dropped,
        so a plugin cannot blow up the number of series.
        """
        if _OPERATION.fullmatch(name):
            self._f.plugin_ops.labels(name, str(labels.get("result", "ok"))[:32]).inc()

    # -- BusMetrics ----------------------------------------------------------------------

    def notifications_total(self, notifier: str, result: str) -> None:
        self._f.notifications.labels(notifier, result).inc()

    def queue_dropped(self, notifier: str) -> None:
        self._f.dropped.labels(notifier).inc()

    # -- the daemon's own ----------------------------------------------------------------

    def webhook(self, provider: str, outcome: str) -> None:
        """A push webhook request: matched, ignored, unauthorized, bad-request, disabled."""
        self._f.webhooks.labels(provider, outcome).inc()

    def cache(self, size: int, evicted: int) -> None:
        """After a cache sweep: the cache's size and how many entries it evicted."""
        self._f.cache_bytes.set(size)
        if evicted:
            self._f.cache_evictions.inc(evicted)

    def reload(self, result: str) -> None:
        self._f.reloads.labels(result).inc()

    def api_request(self, route: str, code: int) -> None:
        if "_f" not in self.__dict__:  # not made yet: tallied, so /healthz and /readyz do not import them
            key = (route, str(code))
            self._early_requests[key] = self._early_requests.get(key, 0) + 1
            return
        self._f.api.labels(route, str(code)).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (:meth:`chunks`, joined)."""
        return b"".join(self.chunks())

    def chunks(self) -> Iterator[bytes]:
        """The Prometheus text format of every metric, in chunks of about a thousand lines.

        The per-app families are written chunk by chunk, so a server can send each one before
        the next is made (``GET /metrics`` does).
        """
        yield "".join(_registry_lines(self.registry)).encode()
        yield from _chunked(self._reconcile.lines())
        if self._apps is not None:
            yield from _chunked(self._apps.lines())
