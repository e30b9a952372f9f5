"""Who owns a live object, and whether an app may apply or prune it (pure decisions, no I/O).

Every object gitopsd applies carries the annotation ``gitopsd.dev/owner: "<instance>/<app>"``
(:data:`OWNER_ANNOTATION`, set by :func:`gitopsd.kube.apply.prepare`). Before an object is
applied, :func:`admit` compares it with its live copy:

- no live object: created, it is ours;
- live owner is this app: applied;
- live owner is another app or installation: refused, ``SharedResource`` (never applied,
  never pruned by this app);
- no owner annotation: the object was made by someone else and is refused, unless the app
  has ``adopt = true`` or the manifest carries ``gitopsd.dev/adopt: "true"`` (then it is
  adopted: the apply writes our owner annotation, and an ``adopted`` event is sent). Objects
  applied by gitopsd before owner annotations existed (our app label, in the app's own
  inventory) are adopted silently.

:func:`may_prune` is the matching rule for deletes: only objects whose live owner annotation
names this app.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from gitopsd.core.models import Manifest
from gitopsd.kube.cache import APP_LABEL

OWNER_ANNOTATION = "gitopsd.dev/owner"
ADOPT_ANNOTATION = "gitopsd.dev/adopt"
DEFAULT_INSTANCE = "gitopsd"
SHARED_RESOURCE = "SharedResource"
"""The reason named in a refusal of an object another app or installation owns."""


def owner_value(instance: str, app: str) -> str:
    """The owner annotation's value for ``app`` of installation ``instance``.

    Interned: every prepared object of the app keeps it, one string for them all.
    """
    return sys.intern(f"{instance}/{app}")


def owner_of(obj: Manifest | None) -> str:
    """The live object's owner annotation, or ""."""
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(OWNER_ANNOTATION) or "")


def wants_adoption(obj: Manifest) -> bool:
    """Whether the manifest asks to adopt an existing object (``gitopsd.dev/adopt: "true"``)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(ADOPT_ANNOTATION, "")).lower() == "true"


@dataclass(frozen=True, slots=True)
class Admission:
    """What :func:`admit` decided for one object."""

    allowed: bool
    adopted: bool = False  # an existing object without owner is taken over: send an event
    action: str = ""  # for a refusal: "failed" (SharedResource) or "skipped" (not managed)
    message: str = ""


def admit(
    desired: Manifest,
    live: Manifest | None,
    *,
    owner: str,
    app_name: str,
    adopt: bool,
    in_inventory: bool,
) -> Admission:
    """Whether the object ``desired`` may be applied over ``live`` by ``owner`` (see module docs)."""
    if live is None:
        return Admission(True)
    current = owner_of(live)
    if current == owner:
        return Admission(True)
    if current:
        return Admission(
            False,
            action="failed",
            message=f"{SHARED_RESOURCE}: owned by {current}, not by {owner}: "
            "two apps (or installations) render this object; remove it from one of them",
        )
    labels = (live.get("metadata") or {}).get("labels") or {}
    if in_inventory and labels.get(APP_LABEL) == app_name:
        return Admission(True)  # applied by a gitopsd before owner annotations: ours already
    if adopt or wants_adoption(desired):
        return Admission(True, adopted=True)
    return Admission(
        False,
        action="skipped",
        message="exists and is not managed by gitopsd; set adopt = true on the app or annotate it "
        f'{ADOPT_ANNOTATION}: "true"',
    )


def may_prune(live: Manifest, owner: str) -> str:
    """"" when ``owner`` may delete ``live``; else why not (the skip message)."""
    current = owner_of(live)
    if current == owner:
        return ""
    if current:
        return f"not deleted: owned by {current}, not by {owner}"
    return f"not deleted: it has no {OWNER_ANNOTATION} annotation (not managed by this app)"
