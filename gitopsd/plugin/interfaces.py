"""The classes plugins subclass: Source, Renderer, Notifier, and what the engine gives them.

A plugin registers a *type* (a subclass of one of these) through a hook. Each type
carries its own options model (a pydantic model, ``Options``) that gitopsd uses to
validate the type's config table at load time, so ``gitopsd check`` catches typos.
The engine creates one instance per application (sources, renderers) or per
notifier, and calls the async methods from its own tasks.

Engine guarantees to plugins:
- ``latest_revision``/``fetch``/``render``/``send`` run in the engine's task group and
  may be cancelled at any await (shutdown, reload, timeout); clean up in ``finally``.
- Never block the event loop: run programs with :func:`gitopsd.core.proc.run` and blocking
  calls with ``anyio.to_thread.run_sync``.
- A fetch is single-flighted by ``(Source.key, revision)`` across apps; a render is
  cached by ``(artifact.digest, Renderer.cache_key)``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import anyio

from gitopsd.core.events import Event
from gitopsd.core.models import Artifact, Manifest
from gitopsd.plugin.options import NotifierOptions, Options, Tools

if TYPE_CHECKING:
    from gitopsd.plugin.config import AppConfig

T = TypeVar("T")

__all__ = [
    "Control",
    "Notifier",
    "NotifierOptions",
    "Options",
    "PluginContext",
    "Renderer",
    "SharedState",
    "Source",
    "Tools",
]


class SharedState:
    """Per-daemon singletons that plugin instances share (one git mirror per repository, ...).

    It lives on the daemon (one per plugin manager), never in a module global, so two
    daemons in one process (tests) do not share mirrors or caches.
    """

    def __init__(self) -> None:
        self._items: dict[str, Any] = {}

    def get(self, key: str, factory: Callable[[], T]) -> T:
        """The object stored under ``key``, created by ``factory()`` on first use."""
        if key not in self._items:
            self._items[key] = factory()
        return self._items[key]  # type: ignore[no-any-return]


class Control(Protocol):
    """What a plugin may ask of the running daemon: chat commands and approval decisions.

    ``ctx.control`` in the daemon (None in one-shot commands). Every call names who asked
    (``by``, e.g. ``slack:U0123``), which goes into the log and the events. Errors (unknown
    app, a revision that is not pending) are raised as :class:`gitopsd.GitopsdError` with a
    message fit to show the person.
    """

    def status(self, app: str | None = None) -> list[dict[str, Any]]:
        """The API's view of every app (or of ``app``)."""
        ...

    def open_windows(self) -> list[dict[str, Any]]:
        """Sync windows open now: ``name``, ``kind``, ``start``, ``end`` (ISO times)."""
        ...

    def approvers(self, app: str) -> list[str]:
        """The ``approval.approvers`` of ``app`` (``[]`` when it has none or no approval)."""
        ...

    async def sync(self, app: str, *, by: str) -> str:
        """Reconcile ``app`` now (a manual sync); returns what happened, in words."""
        ...

    async def suspend(self, app: str, *, by: str) -> str:
        """Suspend ``app``."""
        ...

    async def resume(self, app: str, *, by: str) -> str:
        """Resume ``app``."""
        ...

    async def decide(self, app: str, revision: str, *, approve: bool, by: str) -> str:
        """Approve or reject ``app``'s pending ``revision`` (idempotent)."""
        ...


@dataclass(slots=True)
class PluginContext:
    """What the engine gives every source, renderer and notifier instance.

    Attributes:
        state_dir: The daemon's state directory; plugins keep caches under
            ``state_dir / "cache" / <plugin name>`` (see :meth:`cache_dir`).
        config_dir: Directory of the config file: relative paths in options are relative to it.
        tools: Paths of git, helm, kubectl, kustomize.
        cpu_limiter: Bound on concurrent CPU-heavy subprocesses (helm, kustomize).
        shared: Per-daemon singletons shared between instances.
        emit: Emit an event (e.g. a signature verification refusal) from inside a plugin.
        count: Count an operation for the metrics: ``ctx.count("git_ls_remote", result="ok")``
            becomes ``gitopsd_plugin_operations_total{operation="git_ls_remote", result="ok"}``.
            Names are lowercase identifiers; labels other than ``result`` are ignored.
        control: The running daemon's :class:`Control` (chat commands, approvals); None
            outside the daemon.
    """

    state_dir: Path
    config_dir: Path = field(default_factory=Path.cwd)
    tools: Tools = field(default_factory=Tools)
    cpu_limiter: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(os.cpu_count() or 2))
    shared: SharedState = field(default_factory=SharedState)
    emit: Callable[[Event], None] = lambda event: None
    count: Callable[..., None] = lambda name, **labels: None
    control: Control | None = None

    cache_root: Path | None = None
    """Root of the plugin caches (``daemon.cache_dir``); default ``state_dir / "cache"``."""
    strict_secret_permissions: bool = True
    """``daemon.strict_secret_permissions``: pass it to :func:`gitopsd.read_secret_file` as ``strict``."""
    evictable: set[str] = field(default_factory=set)
    """Names of the cache directories registered with ``cache_dir(name, evictable=True)``."""
    _cache_dirs: dict[str, Path] = field(default_factory=dict, init=False, repr=False)

    def cache_dir(self, name: str, *, evictable: bool = False) -> Path:
        """The plugin cache directory ``name`` (created on first use).

        ``evictable=True`` declares the convention the cache budget (``daemon.cache_max_bytes``)
        relies on: every entry directly inside is an immutable, content-addressed directory the
        plugin re-creates when it is missing (an extracted tree, chart or layer), built under a
        ``.extract-*`` name and renamed into place. Entries no app uses may then be deleted,
        least recently used first, and ``.extract-*`` leftovers are removed at start.
        """
        path = self._cache_dirs.get(name)
        if path is None:  # once per name: every app's source asks at start (a path join and a mkdir each)
            path = (self.cache_root or self.state_dir / "cache") / name
            path.mkdir(parents=True, exist_ok=True)
            self._cache_dirs[name] = path
        if evictable:
            self.evictable.add(name)
        return path


class Source(ABC):
    """Where desired state comes from. Subclass, set ``Options``, register via ``gitopsd_source_types``.

    One instance per application. ``options`` is the validated ``Options`` instance of the
    app's ``source`` table (``type`` removed).
    """

    Options: ClassVar[type[Options]] = Options

    def __init__(self, options: Any, ctx: PluginContext):
        self.options = options
        self.ctx = ctx

    @property
    def key(self) -> str:
        """Identity for sharing: apps whose sources have the same key share fetches."""
        return f"{type(self).__module__}.{type(self).__qualname__}:{self.options.model_dump_json()}"

    @property
    def url(self) -> str:
        """Where the source lives (shown in notifications and matched against push webhooks)."""
        return str(getattr(self.options, "url", ""))

    @property
    def ref(self) -> str:
        """The branch or tag followed, if any (matched against push webhooks)."""
        return str(getattr(self.options, "ref", "") or "")

    @property
    def subdir(self) -> str:
        """The directory inside the source that the app reads; "" (the default) for all of it.

        Push webhooks refresh first the apps whose path a push touched; the web page shows it.
        """
        return ""

    @property
    def version_range(self) -> str:
        """A version range followed instead of ``ref`` (e.g. a semver range over tags); "" if none.

        A push of a tag refreshes the apps that follow a range (see :mod:`gitopsd.server.push`).
        """
        return ""

    @abstractmethod
    async def latest_revision(self) -> str:
        """Cheap poll: the newest revision (e.g. one ``git ls-remote``). Raise SourceError on failure."""

    @abstractmethod
    async def fetch(self, revision: str) -> Artifact:
        """Materialise ``revision`` as a directory; return its Artifact. Raise SourceError on failure."""

    def invalidate(self, before: float) -> None:  # noqa: B027 - optional hook with no default behaviour
        """Forget a cached poll result taken before ``before`` (``time.monotonic()``).

        Called when a push webhook or a manual refresh says the source changed, so the next
        ``latest_revision()`` must ask the server. Sources that cache nothing ignore it.
        """

    async def describe(self, revision: str) -> Mapping[str, str]:
        """Optional: what a person approving ``revision`` wants to know about it.

        Keys shown when present: ``message`` (first line of the commit message), ``author``,
        ``date``, ``url``. The default knows nothing and returns ``{}``; never raise for a
        revision you cannot describe, return ``{}``.
        """
        return {}

    def changes(self) -> AsyncIterator[None] | None:
        """Optional push stream: yields whenever the source changed (e.g. a watched directory).

        Return None (the default) when the source can only be polled.
        """
        return None

    @property
    def poll_group(self) -> str:
        """Optional: apps whose sources return the same non-empty value share one poll.

        Declare it only when, of the apps of a group polling at one instant, all but the
        first get ``latest_revision()`` from the first one's result without waiting (git: one
        ``ls-remote`` per repository). The daemon then makes the interval checks of a group's
        idle apps in one task, one after another, instead of waking each app. "" (the
        default): each app polls in its own task.
        """
        return ""

    async def aclose(self) -> None:  # noqa: B027 - optional hook with no default behaviour
        """Release resources (connections, watchers). Called when the app stops."""

    async def changed_paths(self, old: str, new: str) -> set[str] | None:
        """Optional: the files that differ between revisions ``old`` and ``new``.

        Paths are POSIX, relative to this app's artifact directory (``Artifact.path``);
        files outside it start with ``../`` (a repository's other directories). A new
        revision whose changes miss every input of an app's renderer
        (:meth:`Renderer.inputs`) is not rendered again: the app keeps its manifests and
        only moves to the new revision. Return None (the default) when the source cannot
        tell; then every new revision is rendered.
        """
        return None


class Renderer(ABC):
    """Turns an artifact into manifests. Subclass, set ``Options``, register via ``gitopsd_renderer_types``.

    ``detect`` lists file names whose presence at the top of the artifact's path makes this
    renderer the automatic choice when an app has no ``render`` table.
    """

    Options: ClassVar[type[Options]] = Options
    detect: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: Any, ctx: PluginContext):
        self.options = options
        self.ctx = ctx

    @property
    def cache_key(self) -> str:
        """Identity of this renderer's options for the render cache."""
        return f"{type(self).__module__}.{type(self).__qualname__}:{self.options.model_dump_json()}"

    @abstractmethod
    async def render(self, artifact: Artifact, app: AppConfig) -> list[Manifest]:
        """Render ``artifact`` for ``app``. Raise RenderError naming the file/document on bad input."""

    def inputs(self, artifact: Artifact, app: AppConfig) -> set[str] | None:
        """Optional: what :meth:`render` reads, as POSIX paths relative to ``artifact.path``.

        ``"."`` is the artifact directory itself (and everything under it); ``"../base"``
        a directory or file beside it (a Kustomize base, a local Helm dependency). Used with
        :meth:`Source.changed_paths` to skip renders a new revision cannot change. Return
        None (the default) when the renderer cannot tell; then it always renders.
        """
        return None


class Notifier(ABC):
    """Delivers events to people or systems. Register via ``gitopsd_notifier_types``.

    The engine owns the queue, filtering, dedupe, rate limit and retries: ``send`` only
    delivers one event once, raising NotifyError (``permanent``, ``retry_after``) on failure.
    """

    Options: ClassVar[type[NotifierOptions]] = NotifierOptions

    def __init__(self, name: str, options: Any, ctx: PluginContext):
        self.name = name
        self.options = options
        self.ctx = ctx

    @property
    def rate_key(self) -> str:
        """Deliveries sharing a key share one rate limit (Slack: per webhook or channel)."""
        return self.name

    @abstractmethod
    async def send(self, event: Event) -> None:
        """Deliver ``event`` once. Raise NotifyError on failure."""

    async def serve(self) -> None:  # noqa: B027 - optional hook with no default behaviour
        """Optional long-lived work beside deliveries (e.g. Slack's Socket Mode connection).

        The event bus runs it as a task of the daemon for as long as the notifier is
        configured, restarts it with backoff if it raises, and cancels it at shutdown or when
        the notifier is replaced (before :meth:`aclose`). The default does nothing.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook with no default behaviour
        """Close connections. Called after the queue drained at shutdown."""



Params = dict[str, Any]
"""One parameter set of a generator: the names an appset template's ``{{ ... }}`` can use."""


@dataclass(slots=True)
class GeneratorContext:
    """What the engine gives every generator instance.

    Attributes:
        appset: Name of the ``[appsets.NAME]`` table the generator belongs to (for errors).
        where: Dotted config key of the generator's table, e.g. ``appsets.svc.generators[0]``.
        clusters: Every ``[clusters.NAME]`` as ``{"name": ..., "labels": {...}}``, by name.
        build: Build a nested generator from a ``{type = ..., ...}`` table (what ``matrix``
            uses); ``build(table, where)`` raises ConfigError naming ``where`` on bad options.
        plugin: The plugin context for I/O (git mirrors, caches), or ``None`` while the config
            is being validated: a generator must do no I/O then.
    """

    appset: str
    where: str
    clusters: dict[str, dict[str, Any]]
    build: Callable[[Any, str], Generator]
    plugin: PluginContext | None = None


class Generator(ABC):
    """Produces the parameter sets an appset's template is rendered with, one app per set.

    Subclass, set ``Options``, register via ``gitopsd_generator_types``. One instance per
    generator table of an appset, built at config load (``ctx.plugin`` is None: validate,
    no I/O) and again by the daemon and the CLI (with a plugin context).

    A generator whose output depends only on the config (``needs_fetch`` is False) is
    expanded when the config is loaded. One that reads something outside the config (a
    git repository) says ``needs_fetch``: the engine calls :meth:`refresh` at start, every
    appset ``interval`` and on a matching push webhook, then :meth:`generate`.
    """

    Options: ClassVar[type[Options]] = Options

    def __init__(self, options: Any, ctx: GeneratorContext):
        self.options = options
        self.ctx = ctx

    @property
    def needs_fetch(self) -> bool:
        """Whether :meth:`refresh` must run before :meth:`generate` can."""
        return False

    async def refresh(self) -> bool:
        """Fetch what :meth:`generate` reads; return True when it may have changed.

        Raise SourceError on failure: the appset then keeps the apps it had.
        """
        return False

    def repositories(self) -> list[tuple[str, str]]:
        """``(url, ref)`` of each repository read, matched against push webhooks."""
        return []

    def invalidate(self, before: float) -> None:  # noqa: B027 - optional hook with no default behaviour
        """A push webhook says a repository changed: forget cached polls taken before ``before``."""

    @abstractmethod
    def generate(self) -> list[Params]:
        """The parameter sets, in a stable order. Raise ConfigError naming ``ctx.where`` on bad input."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook with no default behaviour
        """Release resources (the sources it opened). Called when the appset stops."""
