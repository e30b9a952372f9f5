"""The stages of a reconcile as plain async functions: fetch, render (+ post-render hooks).

Apply and health live behind :class:`gitopsd.engine.protocols.Cluster`. Each stage can run
alone, which is what ``gitopsd render`` and ``gitopsd diff`` do.
"""

from __future__ import annotations

import copy
import os
import posixpath
import time
from collections.abc import Callable
from pathlib import Path

import anyio

from gitopsd.core.errors import RenderError
from gitopsd.core.events import Event
from gitopsd.core.models import Artifact, Manifest, Rendered
from gitopsd.engine import decrypt
from gitopsd.engine.sharing import RenderCache, SingleFlight
from gitopsd.plugin.config import AppConfig, Config
from gitopsd.plugin.interfaces import PluginContext, Renderer, Source
from gitopsd.plugin.manager import PluginManager
from gitopsd.plugin.options import Options


class Workspace:
    """What the stages share within one daemon (or one CLI run): plugins, caches, single-flight.

    One per daemon; it outlives config reloads so caches and mirrors survive them.
    """

    def __init__(self, plugins: PluginManager, ctx: PluginContext) -> None:
        self.plugins = plugins
        self.ctx = ctx
        self.flights = SingleFlight()
        self.render_cache = RenderCache()
        self.artifacts_in_use: dict[str, Path] = {}
        """Source key -> path of its newest artifact: what the cache budget never evicts."""
        self.artifacts_handed_out: dict[Path, float] = {}
        """Artifact path -> monotonic time it was last handed out (the cache budget's recency)."""
        self.default_options: dict[type[Renderer], Options] = {}
        """Renderer class -> its default options (frozen, so shared) for apps without a ``render`` table."""

    @classmethod
    def create(
        cls, config: Config, plugins: PluginManager, emit: Callable[[Event], None] | None = None
    ) -> Workspace:
        """The workspace for ``config``; its plugin options become those the hooks see."""
        plugins.configure(config)
        daemon = config.daemon
        ctx = PluginContext(
            state_dir=daemon.state_dir,
            config_dir=config.path.parent if config.path else Path.cwd(),
            tools=daemon.tools.to_tools(),
            cpu_limiter=anyio.CapacityLimiter(daemon.render_concurrency or os.cpu_count() or 2),
            cache_root=cache_root(config),
            strict_secret_permissions=daemon.strict_secret_permissions,
        )
        if emit is not None:
            ctx.emit = emit
        return cls(plugins=plugins, ctx=ctx)

    def source_for(self, app: AppConfig) -> Source:
        """A new Source instance for ``app`` (one per app; they share state through ctx.shared)."""
        cls = self.plugins.types.sources[app.source.type]
        return cls(app.source.options, self.ctx)

    def renderer_for(self, app: AppConfig, artifact: Artifact) -> Renderer:
        """The app's renderer, auto-detected from the artifact's top-level files when not configured."""
        types = self.plugins.types
        if app.render is not None:
            return types.renderers[app.render.type](app.render.options, self.ctx)
        try:
            names = set(os.listdir(artifact.path))
        except OSError as exc:
            raise RenderError(f"app {app.name}: artifact path {artifact.path} is not readable: {exc.strerror}") from None
        type_name = types.detect_renderer(names)
        cls = types.renderers.get(type_name)
        if cls is None:
            raise RenderError(f"app {app.name}: no renderer {type_name!r} is installed")
        options = self.default_options.get(cls)
        if options is None:  # built once: a pydantic model per render was 0.4 % of the daemon's CPU
            options = self.default_options[cls] = cls.Options()
        return cls(options, self.ctx)


async def fetch(workspace: Workspace, source: Source, revision: str) -> Artifact:
    """Fetch ``revision``; concurrent fetches of the same source and revision run once."""
    artifact = await workspace.flights.do(("fetch", source.key, revision), lambda: source.fetch(revision))
    workspace.artifacts_in_use[source.key] = artifact.path
    handed = workspace.artifacts_handed_out
    handed[artifact.path] = now = time.monotonic()
    if len(handed) > 10_000:  # bounded: forget what was handed out over a day ago
        for path in [p for p, at in handed.items() if now - at > 86_400]:
            del handed[path]
    return artifact


def cache_root(config: Config) -> Path:
    """``daemon.cache_dir``, else ``$CACHE_DIRECTORY`` (systemd's CacheDirectory=), else ``state_dir/cache``."""
    if config.daemon.cache_dir is not None:
        return config.daemon.cache_dir
    from_systemd = os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
    return Path(from_systemd) if from_systemd else config.daemon.state_dir / "cache"


async def render(workspace: Workspace, app: AppConfig, artifact: Artifact) -> Rendered:
    """Render ``artifact`` for ``app`` (cached), then run the post-render hooks on a private copy.

    The manifests returned are read-only: without post-render hooks they are the cached
    objects themselves, shared by every app that renders the same input.
    """
    renderer = workspace.renderer_for(app, artifact)
    decrypt_key = app.decrypt.model_dump_json() if app.decrypt is not None else ""
    key = (artifact.digest, renderer.cache_key, app.name, app.namespace, decrypt_key)
    return Rendered(artifact, tuple(await _render_manifests(workspace, app, artifact, renderer, key)), "\0".join(key))


async def _render_manifests(
    workspace: Workspace, app: AppConfig, artifact: Artifact, renderer: Renderer, key: tuple[str, ...]
) -> list[Manifest]:
    cached = workspace.render_cache.get(key)
    if cached is None:
        # SOPS files and manifests decrypted around the renderer (gitopsd.engine.decrypt); the
        # cache lives in memory only. The sops binary is looked up on PATH only for an app
        # that decrypts (a PATH search per render cost 1.7 % of the daemon's CPU at 1000 apps).
        sops = decrypt.sops_binary(workspace.ctx.tools.sops) if app.decrypt is not None else ""
        cached = await workspace.flights.do(
            ("render", *key),
            lambda: decrypt.render_decrypted(app, artifact, sops, lambda a: renderer.render(a, app)),
        )
        workspace.render_cache.put(key, cached)
    manifests = cached  # read-only from here on, shared with the cache (and other apps)
    if workspace.plugins.hooks.has_post_render:
        try:
            manifests = workspace.plugins.hooks.post_render(app, copy.deepcopy(cached))
        except RenderError:
            raise
        except Exception as exc:
            raise RenderError(f"app {app.name}: a post-render hook failed: {type(exc).__name__}: {exc}") from exc
    return with_app_namespace(app, manifests) if app.create_namespace and manifests else manifests


async def carry_over(workspace: Workspace, app: AppConfig, source: Source, applied: Rendered, artifact: Artifact) -> Rendered | None:
    """``applied`` moved to ``artifact``'s revision when the change cannot affect its render; else None.

    True when the source lists the files changed between the two revisions
    (:meth:`Source.changed_paths`), the renderer lists what it reads (:meth:`Renderer.inputs`),
    and none of those files is among them. The manifests (and the render key, so the kube
    layer's memo stays valid) are kept, post-render hooks' output included: the hooks see
    the app, its manifests and their options, never the revision, so they would return the
    same again.
    """
    if applied.revision == artifact.revision:
        return None
    changed = await source.changed_paths(applied.revision, artifact.revision)
    if changed is None:
        return None
    try:
        inputs = workspace.renderer_for(app, artifact).inputs(artifact, app)
    except RenderError:
        return None
    if inputs is None or touches(changed, inputs):
        return None
    return Rendered(artifact, applied.manifests, applied.key)


def touches(changed: set[str], inputs: set[str]) -> bool:
    """True when a changed path is one of ``inputs``, inside one, or contains one (all relative, POSIX)."""
    norm = {posixpath.normpath(i) for i in inputs}
    for path in changed:
        path = posixpath.normpath(path)
        for i in norm:
            if i == ".":
                if path != ".." and not path.startswith("../"):
                    return True
            elif path == i or path.startswith(i + "/") or i.startswith(path + "/"):
                return True
    return False


def with_app_namespace(app: AppConfig, manifests: list[Manifest]) -> list[Manifest]:
    """Add the app's Namespace unless the manifests define it.

    It is marked ``gitopsd.dev/prune: disabled`` (deleting a namespace deletes everything in
    it, so gitopsd creates it but never prunes it) and ``gitopsd.dev/shared: "true"`` (apps
    sharing a namespace all apply the same object; none of them owns it).
    """
    for m in manifests:
        if m.get("kind") == "Namespace" and (m.get("metadata") or {}).get("name") == app.namespace:
            return manifests
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": app.namespace,
            "annotations": {"gitopsd.dev/prune": "disabled", "gitopsd.dev/shared": "true"},
        },
    }
    return [namespace, *manifests]
