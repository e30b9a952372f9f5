"""What an app wants in one cluster: its manifests resolved to resources and prepared for apply.

Resolving asks discovery (or a CRD in the same render) which resource serves each kind, and
prepares each object (namespace, labels, owner annotation; :func:`gitopsd.kube.apply.prepare`).
Hooks are left out: they are not desired state (:mod:`gitopsd.kube.hooks`).
"""

from __future__ import annotations

from collections.abc import Sequence

from gitopsd.core.models import Health, Manifest, ObjectRef, ObjectResult, Rendered
from gitopsd.kube.apply import Desired, prepare
from gitopsd.kube.cache import Key, LiveCache
from gitopsd.kube.discovery import Discovery, Resource, UnknownKind, is_crd, resources_from_crd
from gitopsd.kube.hooks import regular
from gitopsd.kube.normalize import matches
from gitopsd.plugin.config import AppConfig

Desires = Rendered | Sequence[Manifest]
"""What the Cluster methods accept: a :class:`Rendered`, or plain manifests (tests, one-off
calls: wrapped in a Rendered with a unique key, so never memoised)."""


def as_rendered(desires: Desires) -> Rendered:
    return desires if isinstance(desires, Rendered) else Rendered.of(desires)


class DesiredObjects:
    """Resolves and prepares renders for one cluster, memoising the last one per app.

    Args:
        discovery: The cluster's discovery (which resource serves a kind).
        instance: ``[daemon] instance``, for the owner annotation.
    """

    def __init__(self, discovery: Discovery, instance: str):
        self.discovery = discovery
        self.instance = instance
        # app name -> (app config, render key, prepared objects): see prepare_cached
        self._prepared: dict[str, tuple[AppConfig, str, dict[Key, Desired]]] = {}
        # object key -> (desired object, live resourceVersion, verdict): see matches
        self._verdicts: dict[Key, tuple[Manifest, str, bool]] = {}

    def forget(self, app_name: str) -> None:
        """Drop the app's memo (it stopped, or left the config)."""
        memo = self._prepared.pop(app_name, None)
        if memo is not None:
            self._drop_verdicts(memo[2])

    def _drop_verdicts(self, prepared: dict[Key, Desired]) -> None:
        for key in prepared:
            self._verdicts.pop(key, None)

    def matches(self, d: Desired, cache: LiveCache) -> bool:
        """Whether the live copy of ``d`` matches it (:func:`gitopsd.kube.normalize.matches`).

        The verdict is remembered until the desired object or the live resourceVersion
        changes: an idle app's interval check compares nothing (bench 300x5: half the
        no-op round's CPU was this comparison, repeated for objects that had not changed).
        """
        version = cache.version(d.key)
        if version is None:
            return False
        memo = self._verdicts.get(d.key)
        if memo is not None and version and memo[1] == version:
            if memo[0] is d.obj:
                return memo[2]
            if _same_prepared(memo[0], d.obj):  # prepared again from the same manifest (a sync prepares its own copy)
                self._verdicts[d.key] = (d.obj, version, memo[2])
                return memo[2]
        return self.judge(d.key, d.obj, cache.get(d.key))

    def judge(self, key: Key, desired: Manifest, live: Manifest | None) -> bool:
        """``matches(desired, live)``, remembered for :meth:`matches` (drift checks judge too)."""
        verdict = matches(desired, live)
        version = str(((live or {}).get("metadata") or {}).get("resourceVersion") or "")
        if version:
            self._verdicts[key] = (desired, version, verdict)
        return verdict

    @staticmethod
    def hints(manifests: Sequence[Manifest]) -> dict[tuple[str, str], Resource]:
        """The resources the render's own CRDs will serve (kinds discovery does not know yet)."""
        return {
            (r.api_version, r.kind): r
            for m in manifests
            if is_crd(m)
            for r in resources_from_crd(m)
        }

    async def resolve(
        self, app: AppConfig, manifests: Sequence[Manifest]
    ) -> tuple[list[Desired], list[ObjectResult]]:
        """Every regular manifest prepared for apply, and a failed result per one that cannot be."""
        hints = self.hints(manifests)
        desired: list[Desired] = []
        failed: list[ObjectResult] = []
        seen: set[Key] = set()
        for manifest in regular(manifests):  # hooks are not desired state (gitopsd.kube.hooks)
            ref = ObjectRef.from_manifest(manifest)
            if not ref.version or not ref.kind or not ref.name:
                failed.append(
                    ObjectResult(
                        ref,
                        "failed",
                        Health.UNKNOWN,
                        "manifest needs apiVersion, kind and metadata.name",
                    )
                )
                continue
            try:
                resource = await self.discovery.resolve(ref.api_version, ref.kind, hints=hints)
            except UnknownKind as exc:
                failed.append(ObjectResult(ref, "failed", Health.UNKNOWN, str(exc)))
                continue
            d = Desired(prepare(app, manifest, resource, self.instance), resource)
            if d.key in seen:
                failed.append(
                    ObjectResult(
                        d.ref, "failed", Health.UNKNOWN, "the render contains this object twice"
                    )
                )
                continue
            seen.add(d.key)
            desired.append(d)
        return desired, failed

    def prepare_cached(self, app: AppConfig, rendered: Rendered) -> dict[Key, Desired] | None:
        """Prepared objects from what discovery already knows (no request); None if a kind is unknown.

        Memoised per app by the app config's identity and the render's key: the engine
        passes the same render to ``track``, ``in_sync`` and ``health`` until the next one.
        """
        memo = self._prepared.get(app.name)
        if memo is not None and memo[0] is app and memo[1] == rendered.key:
            return memo[2]
        prepared = self.prepare_from_discovery(app, rendered.manifests)
        if prepared is not None:
            if memo is not None:
                self._drop_verdicts(memo[2])
            self._prepared[app.name] = (app, rendered.key, prepared)
        return prepared

    def remember(self, app: AppConfig, rendered: Rendered, desired: Sequence[Desired]) -> None:
        """Keep a sync's prepared objects as the app's memo (what :meth:`prepare_cached` returns next).

        The sync's ``in_sync``, ``health`` and ``track`` calls that follow then use the
        objects the sync applied instead of preparing every object of the render once more.
        Only a render whose every kind discovery knows is kept, as :meth:`prepare_cached` would.
        """
        if any(self.discovery.cached(d.resource.api_version, d.resource.kind) is None for d in desired):
            return
        memo = self._prepared.get(app.name)
        if memo is not None and memo[0] is app and memo[1] == rendered.key:
            return
        if memo is not None:
            self._drop_verdicts(memo[2])
        self._prepared[app.name] = (app, rendered.key, {d.key: d for d in desired})

    def prepare_from_discovery(
        self, app: AppConfig, manifests: Sequence[Manifest]
    ) -> dict[Key, Desired] | None:
        """Prepared objects from discovery's cache only (no request); None if a kind is unknown."""
        hints = self.hints(manifests)
        out: dict[Key, Desired] = {}
        for manifest in regular(manifests):
            ref = ObjectRef.from_manifest(manifest)
            resource = self.discovery.cached(ref.api_version, ref.kind) or hints.get(
                (ref.api_version, ref.kind)
            )
            if resource is None:
                return None
            d = Desired(prepare(app, manifest, resource, self.instance), resource)
            out[d.key] = d
        return out


def _same_prepared(a: Manifest, b: Manifest) -> bool:
    """Whether ``a`` and ``b`` were prepared from the same manifest: :func:`gitopsd.kube.apply.prepare`
    copies only the top level and ``metadata``, so every other value is the same object.

    Identity, not ``==``, for the rest: ``1 == True == 1.0`` in Python, while the comparison
    with the live object tells them apart.
    """
    return (
        a.keys() == b.keys()
        and all(value is b[key] for key, value in a.items() if key != "metadata")
        and a.get("metadata") == b.get("metadata")
    )
