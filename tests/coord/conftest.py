"""Fixtures: a 3-node etcd cluster (Debian's etcd-server) on loopback ports, per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.coord.harness import EtcdCluster


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path / "etcd")
    cluster.start_all()
    try:
        yield cluster
    finally:
        cluster.stop_all()
