"""Fixtures for the etcd client tests: real etcd members on 127.0.0.1.

`etcd_server` is one member shared by the session; every test gets its own
key prefix from `key_prefix`, so tests never see each other's keys.
Compaction is store-wide: a test may only compact revisions it wrote itself
(that is, up to its own latest revision). `etcd_cluster` is a fresh
three-member cluster per test, for failover.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.servers.etcd import EtcdCluster, require_etcd, running_etcd


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdCluster]:
    """One healthy etcd member; its ``endpoints`` list has a single URL."""
    with running_etcd(require_etcd(), size=1) as cluster:
        yield cluster


@pytest.fixture
def etcd_cluster() -> Iterator[EtcdCluster]:
    """Three healthy etcd members with a static initial cluster on loopback."""
    with running_etcd(require_etcd(), size=3) as cluster:
        yield cluster


@pytest.fixture
def key_prefix() -> bytes:
    """A key prefix no other test uses."""
    return f"/pitr-test/{uuid.uuid4().hex[:12]}/".encode()
