"""Which member runs an app: weighted rendezvous (highest random weight) hashing.

Every member computes the same answer from the same member list, with no shared state:
each (member, app) pair gets a pseudo-random score and the app goes to the member with
the highest. When a member joins, it takes only the apps for which it now scores highest
(about 1/N of them); when one leaves, only its apps move. Weights use the logarithmic
method (Schindelhauer and Schomaker), so a member of weight 2 gets about twice the apps.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping

_SCALE = float(1 << 64)


def _unit(member: str, app: str) -> float:
    """A stable number in (0, 1) for the pair."""
    digest = hashlib.blake2b(f"{member}\0{app}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _SCALE


def rendezvous_scores(app: str, weights: Mapping[str, float]) -> dict[str, float]:
    """Each member's score for ``app`` (higher wins): ``-weight / ln(u)``."""
    return {m: -w / math.log(_unit(m, app)) for m, w in weights.items()}


def owner(app: str, weights: Mapping[str, float]) -> str | None:
    """The member that should run ``app`` among ``weights`` (member -> weight); None without members.

    Ties (practically impossible) go to the smaller member name, so every member agrees.
    """
    if not weights:
        return None
    scores = rendezvous_scores(app, weights)
    return max(scores, key=lambda m: (scores[m], [-ord(c) for c in m]))


def assign(apps: Iterable[str], weights: Mapping[str, float]) -> dict[str, str | None]:
    """``owner`` for every app."""
    return {app: owner(app, weights) for app in apps}
