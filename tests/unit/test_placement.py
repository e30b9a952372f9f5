"""Rendezvous placement: even shards, ~1/N moved on a join, weights; the coordination config."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import ValidationError

from gitopsd.coord.placement import assign, owner
from gitopsd.plugin.config import Config

APPS = [f"app-{i}" for i in range(3000)]


def test_shards_are_even() -> None:
    counts = Counter(assign(APPS, {"m1": 1, "m2": 1, "m3": 1}).values())
    assert set(counts) == {"m1", "m2", "m3"}
    assert max(counts.values()) / min(counts.values()) < 1.15, counts


def test_a_join_moves_only_the_apps_of_the_new_member() -> None:
    before = assign(APPS, {"m1": 1, "m2": 1, "m3": 1})
    after = assign(APPS, {"m1": 1, "m2": 1, "m3": 1, "m4": 1})
    moved = [a for a in APPS if before[a] != after[a]]
    assert all(after[a] == "m4" for a in moved)  # nothing moves between the old members
    assert 0.20 < len(moved) / len(APPS) < 0.30  # ideal 1/4


def test_a_leave_moves_only_the_leavers_apps() -> None:
    before = assign(APPS, {"m1": 1, "m2": 1, "m3": 1})
    after = assign(APPS, {"m1": 1, "m3": 1})
    assert all(before[a] == "m2" for a in APPS if before[a] != after[a])


def test_weights_shift_the_share() -> None:
    counts = Counter(assign(APPS, {"big": 2, "small": 1}).values())
    assert 1.7 < counts["big"] / counts["small"] < 2.3, counts


def test_every_member_agrees_and_no_member_means_no_owner() -> None:
    assert owner("web", {"a": 1, "b": 1}) == owner("web", {"b": 1, "a": 1})
    assert owner("web", {}) is None


def test_coordination_config() -> None:
    config = Config.model_validate(
        {"daemon": {"coordination": {"backend": "etcd", "endpoints": ["http://127.0.0.1:2379"], "lease_ttl": "3s", "member": "b1"}}}
    )
    c = config.daemon.coordination
    assert c is not None and c.lease_ttl == 3.0 and c.mode == "shard" and c.namespace == "gitopsd-system"
    assert Config.model_validate({}).daemon.coordination is None  # single bastion: nothing to configure
    with pytest.raises(ValidationError, match="endpoints"):
        Config.model_validate({"daemon": {"coordination": {"backend": "etcd"}}})
    with pytest.raises(ValidationError, match="cluster"):
        Config.model_validate({"daemon": {"coordination": {"backend": "kubernetes"}}})
    with pytest.raises(ValidationError, match="password_file"):
        Config.model_validate({"daemon": {"coordination": {"backend": "etcd", "endpoints": ["http://e"], "username": "u"}}})
