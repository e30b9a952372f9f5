"""Per-object health and sync of an app, from the live cache (the web page's objects table)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gitopsd.core.models import Health, HealthStatus, Manifest, ObjectRef
from gitopsd.engine.protocols import ObjectState
from gitopsd.kube.apply import Desired
from gitopsd.kube.cache import Key, key_of
from gitopsd.kube.normalize import matches
from gitopsd.kube.order import plan_steps, wave_of


def object_states(
    prepared: Mapping[Key, Desired],
    live: Callable[[Key], Manifest | None],
    synced: Callable[[str, str], bool],
    health: Callable[[Manifest | None], HealthStatus],
) -> list[ObjectState]:
    """``prepared`` objects in apply order, each compared with its live copy.

    ``synced(group, kind)`` says whether the cache listed that kind (else sync and health
    are unknown); ``health(live)`` is the object's health check.
    """
    out: list[ObjectState] = []
    for step in plan_steps([d.obj for d in prepared.values()]):
        for obj in step.objects:
            d = prepared[key_of(obj)]
            current = live(d.key)
            known = synced(d.resource.group, d.resource.kind)
            out.append(
                ObjectState(
                    ref=ObjectRef.from_manifest(obj),
                    step=step.name,
                    wave=wave_of(obj),
                    health=health(current) if known else HealthStatus(Health.UNKNOWN, "not listed yet"),
                    in_sync=matches(obj, current) if known else None,
                    live_exists=current is not None,
                )
            )
    return out
