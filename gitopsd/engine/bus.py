"""The event bus: logs every event, shows it to plugins, and feeds each notifier's own queue.

``emit()`` is synchronous and never blocks: it logs the event as one JSON line (logger
``gitopsd.core.events``), calls the ``gitopsd_event`` hook, and offers the event to every
notifier that wants it. Each notifier then has:

- a bounded queue: when full, the *oldest* event is dropped, counted (metric and stats) and
  reported by a ``notifier-failed`` event, at most once per ``report_interval``;
- filters: event names, minimum severity, app glob patterns (daemon-wide events, whose
  ``app`` is "", skip the app patterns);
- routes: an event of app X goes only to the notifiers named in X's ``notify`` list
  (:meth:`EventBus.set_routes`); daemon-wide events go to every notifier;
- dedupe: the same :attr:`Event.dedupe_key` within ``dedupe_window`` seconds is sent once;
- a rate limit per :attr:`Notifier.rate_key` (``rate_per_second``, no burst, measured from
  the end of the previous request): notifiers sharing a key share one limiter at the lowest
  of their rates;
- one worker task that delivers in order, retrying transient failures with exponential
  backoff and jitter; a ``retry_after`` from the receiver pauses the whole rate key for
  that long and does not use up ``max_retries``; a permanent failure is not retried.

A failure to deliver is reported once (a ``notifier-failed`` event) until that notifier
succeeds again. ``notifier-failed`` events about notifier N are never offered to N, and a
failure to deliver a ``notifier-failed`` event is only logged, so a broken notifier cannot
make the bus talk about itself in a loop.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import structlog
from anyio.abc import TaskGroup

from gitopsd.core.errors import NotifyError
from gitopsd.core.events import Event, NotifierFailed, Severity
from gitopsd.core.secrets import REDACTOR
from gitopsd.plugin.interfaces import Notifier, NotifierOptions

if TYPE_CHECKING:
    from gitopsd.plugin.config import Config

__all__ = ["BusMetrics", "EventBus", "EventHooks", "NotifierStats", "notifier_accepts"]


class EventHooks(Protocol):
    """What the bus needs from the plugin manager: ``PluginManager.hooks`` fits."""

    def event(self, event: Event) -> None: ...


class BusMetrics(Protocol):
    """Metrics the bus reports; the operations side wires these to prometheus_client.

    ``notifications_total(notifier, result)`` is called once per outcome, with ``result``
    one of ``sent``, ``failed`` (gave up: permanent error or retries exhausted),
    ``retried`` (a transient failure that will be retried) or ``deduped``.
    ``queue_dropped(notifier)`` is called once per event dropped from a full queue (or
    left undelivered when the shutdown deadline passed).
    """

    def notifications_total(self, notifier: str, result: str) -> None: ...

    def queue_dropped(self, notifier: str) -> None: ...


class NotifierStats:
    """Counters of one notifier since the bus started (``queued`` is the current backlog)."""

    __slots__ = ("deduped", "dropped", "failed", "queued", "retried", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.queued = 0
        self.deduped = 0
        self.retried = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "queued": self.queued,
            "deduped": self.deduped,
            "retried": self.retried,
        }


def notifier_accepts(options: NotifierOptions, event: Event) -> bool:
    """True when ``event`` passes a notifier's filters: event names, min severity, app globs.

    Daemon-wide events (``app == ""``) are not subject to the app patterns.
    """
    if options.events and event.name not in options.events:
        return False
    if Severity(event.severity).rank < Severity(options.min_severity).rank:
        return False
    if event.app and not any(fnmatch.fnmatchcase(event.app, pattern) for pattern in options.apps):
        return False
    return True


class _RateLimiter:
    """Spacing of ``1/rate`` seconds between requests (no burst), plus pauses asked for by 429s.

    One request at a time per key, and the next one waits a full interval from the *end* of
    the previous one: the receiver never sees two requests closer than the interval, even
    when one travels slower than the next or two notifiers share the key.
    """

    def __init__(self, rate: float, clock: Callable[[], float]):
        self.rate = rate
        self._clock = clock
        self._next = 0.0
        self._lock: anyio.Lock | None = None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            wait = self._next - self._clock()
            if wait > 0:
                await anyio.sleep(wait)
            try:
                yield
            finally:
                self._next = max(self._next, self._clock() + 1.0 / self.rate)

    def pause(self, seconds: float) -> None:
        self._next = max(self._next, self._clock() + seconds)


class _Channel:
    """One notifier's queue, rate limiter, counters and the state of its delivery task."""

    __slots__ = (
        "closing", "dropped_unreported", "failure_reported", "inflight", "last_drop_report", "limiter", "name",
        "notifier", "options", "queue", "scope", "seen", "serve_scope", "stats", "wakeup",
    )

    def __init__(self, name: str, notifier: Notifier, options: NotifierOptions, limiter: _RateLimiter) -> None:
        self.name = name
        self.notifier = notifier
        self.options = options
        self.limiter = limiter
        self.queue: deque[Event] = deque()
        self.stats = NotifierStats()
        self.seen: dict[tuple[str, ...], float] = {}
        self.wakeup: anyio.Event | None = None
        self.inflight: Event | None = None
        self.closing = False
        self.scope: anyio.CancelScope | None = None
        self.serve_scope: anyio.CancelScope | None = None  # the notifier's own serve() task
        self.dropped_unreported = 0
        self.last_drop_report = -math.inf
        self.failure_reported = False

    @property
    def backlog(self) -> int:
        return len(self.queue) + (1 if self.inflight is not None else 0)

    def wake(self) -> None:
        if self.wakeup is not None:
            self.wakeup.set()


def _options_of(notifier: Notifier) -> NotifierOptions:
    options = getattr(notifier, "options", None)
    return options if isinstance(options, NotifierOptions) else NotifierOptions.model_validate({})


def _dedupe_key(event: Event) -> tuple[str, ...]:
    # notifier-failed events about different notifiers are different events.
    notifier = str(event.data.get("notifier", "")) if event.name == NotifierFailed.name else ""
    return (*event.dedupe_key, notifier)


def _describe(exc: BaseException) -> str:
    """An error's text, safe for logs and events (known secrets scrubbed)."""
    if isinstance(exc, NotifyError):
        return REDACTOR.scrub(str(exc))
    text = str(exc)
    return REDACTOR.scrub(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


class EventBus:
    """Fans events out to the log, the ``gitopsd_event`` hook and per-notifier queues.

    Args:
        hooks: Anything with ``event(event)`` (``PluginManager.hooks``), or None.
        notifiers: Notifier instances by config name; each one's ``options`` (a
            NotifierOptions) sets its filters and pacing.
        routes: App name -> notifier names (the app's ``notify`` list); see :meth:`set_routes`.
        logger: A structlog logger for the event lines and bus messages (default:
            ``structlog.get_logger("gitopsd.core.events")``).
        metrics: Optional :class:`BusMetrics`.
        backoff_base: First retry delay in seconds; doubles per attempt (with jitter).
        backoff_max: Cap of one retry delay.
        report_interval: At most one queue-overflow ``notifier-failed`` per notifier per
            this many seconds.
        clock: Monotonic clock (seconds), for dedupe windows and rate limits.

    Use inside the daemon's task group::

        bus = EventBus(hooks=pm.hooks, notifiers=notifiers, routes=EventBus.routes_from_config(cfg))
        async with bus.running():
            ...                       # bus.emit(event) from anywhere on the event loop
            await bus.drain(10)       # at shutdown: deliver the backlog until the deadline

    Events emitted before ``running()`` are queued and delivered once the workers start.
    """

    def __init__(
        self,
        hooks: EventHooks | None = None,
        notifiers: Mapping[str, Notifier] | None = None,
        *,
        routes: Mapping[str, Iterable[str]] | None = None,
        logger: Any = None,
        metrics: BusMetrics | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        report_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._hooks = hooks
        self._log = (
            logger
            if logger is not None
            else structlog.get_logger("gitopsd.core.events").bind(logger="gitopsd.core.events")
        )
        self._metrics = metrics
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._report_interval = report_interval
        self._clock = clock
        self._limiters: dict[str, _RateLimiter] = {}
        self._channels: dict[str, _Channel] = {}
        self._retired: list[_Channel] = []
        self._routes: dict[str, frozenset[str]] = {}
        self._tg: TaskGroup | None = None
        self._draining = False
        self._stopped: anyio.Event | None = None
        self._progress: anyio.Event | None = None
        self._listeners: list[Callable[[Event], None]] = []
        for name, notifier in (notifiers or {}).items():
            self._channels[name] = self._make_channel(name, notifier)
        if routes is not None:
            self.set_routes(routes)

    # -- configuration -------------------------------------------------------------

    @staticmethod
    def routes_from_config(config: Config) -> dict[str, list[str]]:
        """``{app: app.notify}`` for every app of a validated config (plus its approval notifier)."""
        return {
            name: list(dict.fromkeys([*app.notify, *([app.approval.notifier] if app.approval else [])]))
            for name, app in config.apps.items()
        }

    def set_routes(self, routes: Mapping[str, Iterable[str]]) -> None:
        """Replace the app -> notifier names map (call again after a config reload).

        Events of an app that is not in the map go to no notifier (they are still logged and
        passed to the hook); daemon-wide events (``app == ""``) go to every notifier.
        """
        self._routes = {app: frozenset(names) for app, names in routes.items()}

    async def reconfigure(
        self,
        notifiers: Mapping[str, Notifier],
        routes: Mapping[str, Iterable[str]] | None = None,
        *,
        drain_seconds: float = 10.0,
    ) -> None:
        """Swap the notifier set after a config reload, without losing unaffected queues.

        A name mapped to the *same instance* as before keeps its queue and worker. Removed or
        replaced notifiers stop receiving events, deliver their backlog for at most
        ``drain_seconds`` in the background, then are closed. New ones start at once (when
        the bus is running).
        """
        old = self._channels
        new: dict[str, _Channel] = {}
        for name, notifier in notifiers.items():
            kept = old.get(name)
            if kept is not None and kept.notifier is notifier:
                new[name] = kept
            else:
                new[name] = self._make_channel(name, notifier)
        self._channels = new
        if routes is not None:
            self.set_routes(routes)
        for name, channel in old.items():
            if new.get(name) is not channel:
                channel.closing = True
                channel.wake()
                self._retired.append(channel)
                if self._tg is not None:
                    self._tg.start_soon(
                        self._retire, channel, drain_seconds, name=f"notifier-retire:{name}"
                    )
                else:
                    self._retired.remove(channel)
                    await self._close(channel)
        self._retune_limiters()
        if self._tg is not None:
            for name, channel in new.items():
                if channel.scope is None and channel not in old.values():
                    self._tg.start_soon(self._worker, channel, name=f"notifier:{name}")
                    self._tg.start_soon(self._serve, channel, name=f"notifier-serve:{name}")

    def _make_channel(self, name: str, notifier: Notifier) -> _Channel:
        options = _options_of(notifier)
        key = notifier.rate_key
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = _RateLimiter(options.rate_per_second, self._clock)
        else:
            limiter.rate = min(limiter.rate, options.rate_per_second)
        return _Channel(name=name, notifier=notifier, options=options, limiter=limiter)

    def _retune_limiters(self) -> None:
        """Each shared limiter runs at the lowest rate of the notifiers that use it now."""
        rates: dict[int, float] = {}
        for channel in self._channels.values():
            key = id(channel.limiter)
            rates[key] = min(rates.get(key, math.inf), channel.options.rate_per_second)
        for channel in self._channels.values():
            channel.limiter.rate = rates[id(channel.limiter)]

    # -- emitting ------------------------------------------------------------------

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Also call ``listener(event)`` for every event (on the event loop; must not block or raise)."""
        self._listeners.append(listener)

    def emit(self, event: Event) -> None:
        """Log ``event``, pass it to the ``gitopsd_event`` hook and queue it for notifiers.

        Synchronous, never blocks, never raises because of a notifier. Call it from the
        event loop's thread (from a worker thread: ``anyio.from_thread.run_sync(bus.emit, e)``).
        """
        self._log_event(event)
        if self._hooks is not None:
            try:
                self._hooks.event(event)
            except Exception as exc:  # observers must never break the caller
                self._log.warning("event hook failed", error=_describe(exc))
        for listener in self._listeners:
            try:
                listener(event)
            except Exception as exc:
                self._log.warning("event listener failed", error=_describe(exc))
        if self._draining:
            return
        for channel in list(self._channels.values()):
            if self._wants(channel, event):
                self._offer(channel, event)

    def _log_event(self, event: Event) -> None:
        fields = event.to_dict()
        method = {"warning": self._log.warning, "error": self._log.error}.get(
            str(event.severity), self._log.info
        )
        try:
            method(event.name, **fields)
        except Exception:  # a broken log sink must not stop events
            pass

    def _wants(self, channel: _Channel, event: Event) -> bool:
        if channel.closing:
            return False
        if event.name == NotifierFailed.name and event.data.get("notifier") == channel.name:
            return False  # never tell a notifier about its own failures
        if event.app and channel.name not in self._routes.get(event.app, frozenset()):
            return False
        return notifier_accepts(channel.options, event)

    def _offer(self, channel: _Channel, event: Event) -> None:
        now = self._clock()
        window = channel.options.dedupe_window
        if window > 0:
            key = _dedupe_key(event)
            last = channel.seen.get(key)
            if last is not None and now - last < window:
                channel.stats.deduped += 1
                self._metric("notifications_total", channel.name, "deduped")
                return
            channel.seen[key] = now
            if len(channel.seen) > 4 * channel.options.queue_size:
                channel.seen = {k: t for k, t in channel.seen.items() if now - t < window}
        dropped = None
        if len(channel.queue) >= channel.options.queue_size:
            dropped = channel.queue.popleft()
        channel.queue.append(event)
        channel.wake()
        if dropped is not None:
            self._dropped(channel, dropped, now)

    def _dropped(self, channel: _Channel, dropped: Event, now: float) -> None:
        channel.stats.dropped += 1
        channel.dropped_unreported += 1
        self._metric("queue_dropped", channel.name)
        self._log.debug(  # the rate-limited notifier-failed event below is the warning
            "notifier queue full, dropped oldest event",
            notifier=channel.name,
            dropped_event=dropped.name,
            dropped_id=dropped.id,
            queue_size=channel.options.queue_size,
        )
        if now - channel.last_drop_report >= self._report_interval:
            count, channel.dropped_unreported = channel.dropped_unreported, 0
            channel.last_drop_report = now  # before emitting: emit may come back here
            self.emit(
                NotifierFailed.make(
                    reason="QueueOverflow",
                    message=(
                        f"notifier {channel.name} is not keeping up: dropped {count} queued "
                        f"event(s) (queue size {channel.options.queue_size})"
                    ),
                    data={
                        "notifier": channel.name,
                        "dropped": count,
                        "dropped_total": channel.stats.dropped,
                    },
                )
            )

    def _metric(self, name: str, *args: str) -> None:
        if self._metrics is None:
            return
        try:
            getattr(self._metrics, name)(*args)
        except Exception as exc:
            self._log.warning("metrics call failed", metric=name, error=_describe(exc))

    # -- running -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[EventBus]:
        """Run one worker per notifier for the duration of the block; close notifiers after.

        Leaving the block without :meth:`drain` abandons the backlog (it stays in
        :meth:`stats` as ``queued``).
        """
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for name, channel in self._channels.items():
                    tg.start_soon(self._worker, channel, name=f"notifier:{name}")
                    tg.start_soon(self._serve, channel, name=f"notifier-serve:{name}")
                try:
                    yield self
                finally:
                    tg.cancel_scope.cancel()
        finally:
            self._tg = None
            with anyio.CancelScope(shield=True):
                for channel in [*self._channels.values(), *self._retired]:
                    await self._close(channel)
                self._retired.clear()

    async def run(self) -> None:
        """Run the workers until :meth:`drain` finishes (for use with ``tg.start_soon``)."""
        self._stopped = self._stopped or anyio.Event()
        async with self.running():
            await self._stopped.wait()

    async def drain(self, deadline_seconds: float) -> dict[str, int]:
        """Stop queueing new events and deliver the backlog for at most ``deadline_seconds``.

        Then the workers stop. Returns, per notifier, how many events were left undelivered
        (also counted as ``dropped`` and logged). Events emitted from now on are still logged
        and passed to the hook, but not queued.
        """
        self._draining = True
        channels = list(self._channels.values())
        if self._tg is not None:
            with anyio.move_on_after(deadline_seconds):
                while any(ch.backlog for ch in channels):
                    await self._wait_progress()
        left: dict[str, int] = {}
        for channel in channels:
            if channel.scope is not None:
                channel.scope.cancel()
            count = channel.backlog
            left[channel.name] = count
            if count:
                channel.stats.dropped += count
                for _ in range(count):
                    self._metric("queue_dropped", channel.name)
                self._log.warning(
                    "notifier backlog not delivered before the shutdown deadline",
                    notifier=channel.name,
                    undelivered=count,
                    deadline_seconds=deadline_seconds,
                )
                channel.queue.clear()
                channel.inflight = None
        if self._stopped is not None:
            self._stopped.set()
        return left

    def stats(self) -> dict[str, dict[str, int]]:
        """Per notifier: sent, failed, dropped, queued (plus deduped and retried)."""
        result = {}
        for name, channel in self._channels.items():
            channel.stats.queued = channel.backlog
            result[name] = channel.stats.as_dict()
        return result

    # -- workers -------------------------------------------------------------------

    async def _worker(self, channel: _Channel) -> None:
        with anyio.CancelScope() as scope:
            channel.scope = scope
            while True:
                while not channel.queue:
                    if channel.closing:
                        return
                    channel.wakeup = anyio.Event()
                    await channel.wakeup.wait()
                    channel.wakeup = None
                event = channel.queue.popleft()
                channel.inflight = event
                try:
                    await self._deliver(channel, event)
                except Exception as exc:  # a bug here must not take the daemon down
                    channel.stats.failed += 1
                    self._log.exception(
                        "notifier worker error", notifier=channel.name, error=_describe(exc)
                    )
                finally:
                    channel.inflight = None
                    self._progressed()

    async def _serve(self, channel: _Channel) -> None:
        """Run the notifier's ``serve()`` until cancelled; restart it with backoff if it fails."""
        if type(channel.notifier).serve is Notifier.serve:
            return
        with anyio.CancelScope() as scope:
            channel.serve_scope = scope
            attempt = 0
            while not channel.closing:
                try:
                    await channel.notifier.serve()
                    return
                except Exception as exc:
                    delay = self._backoff(attempt)
                    attempt += 1
                    self._log.warning(
                        "notifier service failed, restarting",
                        notifier=channel.name,
                        error=_describe(exc),
                        retry_in=round(delay, 3),
                    )
                    await anyio.sleep(delay)

    async def _wait_progress(self) -> None:
        """Wait until some worker finished an event."""
        if self._progress is None:
            self._progress = anyio.Event()
        await self._progress.wait()

    def _progressed(self) -> None:
        if self._progress is not None:
            self._progress.set()
            self._progress = None

    async def _retire(self, channel: _Channel, drain_seconds: float) -> None:
        with anyio.move_on_after(drain_seconds):
            while channel.backlog:
                await self._wait_progress()
        if channel.scope is not None:
            channel.scope.cancel()
        if channel.serve_scope is not None:
            channel.serve_scope.cancel()
        with anyio.CancelScope(shield=True):
            await self._close(channel)
        if channel in self._retired:
            self._retired.remove(channel)

    async def _close(self, channel: _Channel) -> None:
        try:
            with anyio.move_on_after(5):
                await channel.notifier.aclose()
        except Exception as exc:
            self._log.warning("notifier close failed", notifier=channel.name, error=_describe(exc))

    def _backoff(self, attempt: int) -> float:
        delay = min(self._backoff_max, self._backoff_base * 2**attempt)
        return random.uniform(delay / 2, delay)  # "equal jitter"

    async def _deliver(self, channel: _Channel, event: Event) -> None:
        options = channel.options
        attempt = 0  # transient failures so far that counted against max_retries
        while True:
            try:
                async with channel.limiter.slot():
                    with anyio.fail_after(options.timeout):
                        await channel.notifier.send(event)
            except Exception as exc:
                error: NotifyError
                if isinstance(exc, NotifyError):
                    error = exc
                elif isinstance(exc, TimeoutError):
                    error = NotifyError(f"timed out after {options.timeout:g}s")
                else:
                    error = NotifyError(_describe(exc))
                message = _describe(error)
                if error.retry_after is not None and error.retry_after >= 0 and not error.permanent:
                    channel.limiter.pause(error.retry_after)
                    delay = error.retry_after
                elif error.permanent or attempt >= options.max_retries:
                    self._give_up(
                        channel, event, message, permanent=error.permanent, attempts=attempt + 1
                    )
                    return
                else:
                    delay = self._backoff(attempt)
                    attempt += 1
                channel.stats.retried += 1
                self._metric("notifications_total", channel.name, "retried")
                self._log.info(
                    "notification failed, will retry",
                    notifier=channel.name,
                    event_name=event.name,
                    event_id=event.id,
                    error=message,
                    retry_in=round(delay, 3),
                )
                await anyio.sleep(delay)
                continue
            channel.stats.sent += 1
            channel.failure_reported = False
            self._metric("notifications_total", channel.name, "sent")
            return

    def _give_up(
        self, channel: _Channel, event: Event, message: str, *, permanent: bool, attempts: int
    ) -> None:
        channel.stats.failed += 1
        self._metric("notifications_total", channel.name, "failed")
        self._log.warning(
            "notification failed, giving up",
            notifier=channel.name,
            event_name=event.name,
            event_id=event.id,
            error=message,
            permanent=permanent,
            attempts=attempts,
        )
        if event.name == NotifierFailed.name or channel.failure_reported:
            return  # no events about failing to deliver events about failures; and say it once
        channel.failure_reported = True
        what = "permanent error" if permanent else f"giving up after {attempts} attempts"
        self.emit(
            NotifierFailed.make(
                reason="PermanentError" if permanent else "RetriesExhausted",
                message=f"notifier {channel.name} could not deliver {event.name} ({what}): {message}",
                data={
                    "notifier": channel.name,
                    "event": event.name,
                    "event_id": event.id,
                    "error": message,
                },
            )
        )
