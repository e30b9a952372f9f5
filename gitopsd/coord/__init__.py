"""Coordination of several gitopsd members: membership, app placement and fenced app locks.

``[daemon.coordination]`` turns one daemon into a member of a group sharing the apps. The
group is kept by an existing distributed engine, never by gitopsd itself: etcd v3
(:mod:`gitopsd.coord.etcd`) or Kubernetes Leases (:mod:`gitopsd.kube.leases`). Both
implement :class:`~gitopsd.coord.base.Backend`; :mod:`gitopsd.coord.placement` decides
which member should run which app. The daemon's
:class:`~gitopsd.daemon.coordination.Coordinator` puts them together.

This layer imports only ``gitopsd.core`` and ``gitopsd.plugin``.
"""

from gitopsd.coord.base import Backend, CoordinationUnavailable, LeaseLost, MemberInfo
from gitopsd.coord.placement import owner, rendezvous_scores

__all__ = ["Backend", "CoordinationUnavailable", "LeaseLost", "MemberInfo", "owner", "rendezvous_scores"]
