"""Plain data passed between the stages of a reconcile.

Every type here is a frozen dataclass (or a tuple of them): stages hand these to
each other, plugins receive them, and nothing mutates them in place.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

Manifest = dict[str, Any]
"""One rendered Kubernetes object as a plain dict (``apiVersion``, ``kind``, ``metadata``, ...)."""


@dataclass(frozen=True, slots=True)
class Artifact:
    """What a source fetched: a directory tree at one revision.

    Attributes:
        path: Directory holding the files. Renderers read it and must not write to it:
            it may be shared by several applications.
        revision: Human-readable revision, e.g. ``main@sha1:<40 hex>``, ``1.2.3@sha256:<hex>``.
        digest: Content digest of the tree (``sha256:<hex>``); renders are cached by it.
        url: Where it came from (for links in notifications), if known.
    """

    path: Path
    revision: str
    digest: str
    url: str = ""


@dataclass(frozen=True, slots=True)
class Rendered:
    """One render of one app: the value passed from the render stage to the cluster.

    Revision and digest travel with the manifests, so the kube layer reports the revision
    it applied and memoises its work per render (by ``key``) rather than by which list
    object it was given.

    Attributes:
        artifact: What the source fetched (revision, digest, path).
        manifests: The final manifests (after post-render hooks). Read-only: they may be
            shared with the render cache and with other apps.
        key: Identifies the render: equal keys mean equal manifests for the same app
            config (artifact digest, renderer, app inputs).
    """

    artifact: Artifact
    manifests: Sequence[Manifest]
    key: str

    @property
    def revision(self) -> str:
        return self.artifact.revision

    @property
    def digest(self) -> str:
        return self.artifact.digest

    @classmethod
    def of(cls, manifests: Sequence[Manifest], revision: str = "") -> Rendered:
        """A render of plain manifests (tests, one-off calls); its key is unique, so never memoised."""
        return cls(Artifact(Path(), revision, ""), tuple(manifests), f"adhoc:{next(_adhoc_keys)}")


_adhoc_keys = itertools.count(1)


@dataclass(frozen=True, slots=True, order=True)
class ObjectRef:
    """Identity of one Kubernetes object: what the inventory stores."""

    group: str
    version: str
    kind: str
    namespace: str
    name: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        kind = f"{self.kind}.{self.group}" if self.group else self.kind
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{kind} {where}{self.name}"

    @classmethod
    def from_manifest(cls, obj: Mapping[str, Any]) -> ObjectRef:
        api_version = str(obj.get("apiVersion", ""))
        group, _, version = api_version.rpartition("/")
        meta = obj.get("metadata") or {}
        return cls(
            group=group,
            version=version,
            kind=str(obj.get("kind", "")),
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
        )


class Health(enum.StrEnum):
    """Health of an object or an application, in Argo CD's order from best to worst."""

    HEALTHY = "Healthy"
    SUSPENDED = "Suspended"
    PROGRESSING = "Progressing"
    MISSING = "Missing"
    DEGRADED = "Degraded"
    UNKNOWN = "Unknown"

    @property
    def rank(self) -> int:
        return _HEALTH_ORDER.index(self)

    @classmethod
    def worst(cls, healths: list[Health]) -> Health:
        """The worst of ``healths``; Healthy for an empty list."""
        return max(healths, key=lambda h: h.rank, default=cls.HEALTHY)


_HEALTH_ORDER = list(Health)


@dataclass(frozen=True, slots=True)
class HealthStatus:
    """Health of one object, with the reason a person would want to read."""

    health: Health
    message: str = ""


class SyncStatus(enum.StrEnum):
    """Whether the live cluster matches the desired state."""

    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class ObjectResult:
    """What a sync did to one object."""

    ref: ObjectRef
    action: str  # "created", "changed", "unchanged", "pruned", "failed", "skipped"
    health: Health = Health.HEALTHY
    message: str = ""


@dataclass(frozen=True, slots=True)
class SyncResult:
    """The outcome of one reconcile of one application."""

    app: str
    revision: str
    ok: bool
    message: str = ""
    objects: tuple[ObjectResult, ...] = ()
    health: Health = Health.HEALTHY
    duration: float = 0.0
    dry_run: bool = False

    def count(self, action: str) -> int:
        return sum(1 for o in self.objects if o.action == action)

    @property
    def counts(self) -> dict[str, int]:
        return {a: self.count(a) for a in ("created", "changed", "unchanged", "pruned", "failed")}


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One row of an application's sync history."""

    time: datetime
    revision: str
    result: str  # "succeeded" | "failed"
    message: str = ""
    counts: Mapping[str, int] = field(default_factory=dict)
    health: str = ""  # the app's health after the sync ("" in entries older than gitopsd 0.2)
    trigger: str = ""  # what started the sync: "start", "webhook", "drift", "refresh", ...
