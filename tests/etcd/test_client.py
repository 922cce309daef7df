"""The etcd client against real etcd members: consistent pagination, per-revision watch
batches, compaction, leases, guarded transactions, request limits and failover."""

from __future__ import annotations

import anyio
import pytest

import pitr.sources.etcd
from pitr.errors import InvalidArgument, SourceError
from pitr.sources.etcd import (
    DEFAULT_MAX_TXN_OPS,
    CompactedError,
    Compare,
    Delete,
    EtcdClient,
    EtcdUnavailable,
    EventType,
    Get,
    GetResult,
    KeyValue,
    LeaseNotFound,
    Put,
    RequestTooLarge,
    WatchBatch,
    WatchStream,
    plan_txn_batches,
)
from pitr.sources.etcd._gateway import prefix_range_end
from tests.servers.etcd import PROGRESS_NOTIFY_INTERVAL, EtcdCluster, free_ports

pytestmark = pytest.mark.anyio

WATCH_TIMEOUT = 5.0


def key(prefix: bytes, index: int) -> bytes:
    return prefix + b"k%03d" % index


async def next_event_batch(batches: WatchStream) -> WatchBatch:
    """The next batch that carries events, skipping progress notifications."""
    with anyio.fail_after(WATCH_TIMEOUT):
        async for batch in batches:
            if not batch.is_progress:
                return batch
    raise AssertionError("the watch stream ended")


# -- without a server ----------------------------------------------------------------------------


def test_exports_resolve() -> None:
    for name in pitr.sources.etcd.__all__:
        assert getattr(pitr.sources.etcd, name) is not None, name


def test_compacted_error_is_a_source_error() -> None:
    error = CompactedError(42, endpoint="http://127.0.0.1:2379", requested_revision=7)
    assert isinstance(error, SourceError)
    assert error.compact_revision == 42
    assert "http://127.0.0.1:2379" in str(error)
    assert "42" in str(error)


@pytest.mark.parametrize(("prefix", "end"), [
    (b"a", b"b"), (b"a\xff", b"b"), (b"\xff\xff", b"\0"), (b"", b"\0"), (b"/x/", b"/x0"),
])
def test_prefix_range_end(prefix: bytes, end: bytes) -> None:
    assert prefix_range_end(prefix) == end


@pytest.mark.parametrize("endpoints", [[], ["127.0.0.1:2379"], ["http://127.0.0.1:2379/v3"], "http://x:1"])
def test_bad_endpoints_are_rejected(endpoints: list[str]) -> None:
    with pytest.raises(InvalidArgument):
        EtcdClient(endpoints)


def test_plan_txn_batches_respects_limits() -> None:
    puts = [Put(b"k%d" % i, b"v") for i in range(300)]
    batches = plan_txn_batches(puts)
    assert [len(b) for b in batches] == [DEFAULT_MAX_TXN_OPS, DEFAULT_MAX_TXN_OPS, 300 - 2 * DEFAULT_MAX_TXN_OPS]
    assert [op for batch in batches for op in batch] == puts
    big = [Put(b"k%d" % i, b"x" * 1000) for i in range(10)]
    assert [len(b) for b in plan_txn_batches(big, max_bytes=3500)] == [3, 3, 3, 1]
    # etcd rejects two writes of one key in a transaction: the second starts a new batch
    assert [len(b) for b in plan_txn_batches([Put(b"a", b"1"), Delete(b"b"), Delete(b"a")])] == [2, 1]
    with pytest.raises(InvalidArgument):
        plan_txn_batches([Put(b"k", b"x" * 100)], max_bytes=50)


async def test_unreachable_endpoints_raise_unavailable_naming_them() -> None:
    (port,) = free_ports(1)  # nothing listens there
    endpoint = f"http://127.0.0.1:{port}"
    async with EtcdClient([endpoint], retry_timeout=0.2, connect_timeout=0.5) as client:
        with pytest.raises(EtcdUnavailable, match=endpoint) as excinfo:
            await client.get(b"k")
    assert isinstance(excinfo.value, SourceError)
    assert excinfo.value.__cause__ is not None


# -- one member ----------------------------------------------------------------------------------


@pytest.mark.integration
async def test_put_get_delete_roundtrip(etcd_server: EtcdCluster, key_prefix: bytes) -> None:
    async with EtcdClient(etcd_server.endpoints) as client:
        revision = await client.put(key_prefix + b"a", b"\x00binary\xff")
        kv = await client.get(key_prefix + b"a")
        assert kv == KeyValue(key_prefix + b"a", b"\x00binary\xff", create_revision=revision,
                              mod_revision=revision, version=1, lease=0)
        assert await client.get(key_prefix + b"missing") is None
        deleted = await client.delete(key_prefix + b"a")
        assert (deleted.deleted, deleted.revision) == (1, revision + 1)
        assert await client.get(key_prefix + b"a", revision=revision) == kv  # history is still there
        status = await client.status()
        assert status.revision >= revision + 1
        assert status.is_leader
        assert status.version.startswith("3.")
        members = await client.member_list()
        assert [m.client_urls for m in members] == [tuple(etcd_server.endpoints)]


@pytest.mark.integration
async def test_paginated_read_stays_at_the_first_pages_revision(etcd_server: EtcdCluster,
                                                                 key_prefix: bytes) -> None:
    async with EtcdClient(etcd_server.endpoints) as client:
        await client.put_many([Put(key(key_prefix, i), b"v%d" % i) for i in range(25)])
        await client.put(key_prefix[:-1] + b"0", b"just after the prefix")  # must not be listed

        reader = client.iter_range(key_prefix, page_size=10)
        first = await reader.__anext__()
        revision = first.revision
        assert len(first.kvs) == 10
        assert first.more
        assert first.count == 25

        # Writes between pages: new keys, an overwrite and a delete, all after `revision`.
        await client.put_many([Put(key(key_prefix, i), b"late") for i in range(25, 35)])
        await client.put(key(key_prefix, 15), b"changed")
        await client.delete(key(key_prefix, 20))

        pages = [first]
        async for page in reader:
            pages.append(page)
        assert [len(p.kvs) for p in pages] == [10, 10, 5]
        assert all(p.revision == revision for p in pages)
        kvs = [kv for p in pages for kv in p.kvs]
        assert [kv.key for kv in kvs] == [key(key_prefix, i) for i in range(25)]
        assert [kv.value for kv in kvs] == [b"v%d" % i for i in range(25)]
        assert all(kv.mod_revision <= revision for kv in kvs)

        now_revision, now = await client.read_all(key_prefix, page_size=7)
        assert now_revision > revision
        assert len(now) == 34
        assert {kv.key: kv.value for kv in now}[key(key_prefix, 15)] == b"changed"

        again_revision, again = await client.read_all(key_prefix, page_size=4, revision=revision)
        assert (again_revision, again) == (revision, kvs)


@pytest.mark.integration
async def test_watch_groups_a_transaction_into_one_batch(etcd_server: EtcdCluster, key_prefix: bytes) -> None:
    async with EtcdClient(etcd_server.endpoints) as client:
        first = await client.put(key_prefix + b"before", b"0")
        txn = await client.txn([], [Put(key_prefix + b"a", b"1"), Put(key_prefix + b"b", b"2"),
                                    Delete(key_prefix + b"before"), Put(key_prefix + b"c", b"3")])
        single = await client.put(key_prefix + b"d", b"4")

        async with client.watch(key_prefix, first) as batches:
            # History: three revisions, three batches.
            batch = await next_event_batch(batches)
            assert (batch.revision, [e.key for e in batch.events]) == (first, [key_prefix + b"before"])
            batch = await next_event_batch(batches)
            assert batch.revision == txn.revision
            assert [(e.type, e.key, e.value) for e in batch.events] == [
                (EventType.PUT, key_prefix + b"a", b"1"), (EventType.PUT, key_prefix + b"b", b"2"),
                (EventType.DELETE, key_prefix + b"before", b""), (EventType.PUT, key_prefix + b"c", b"3")]
            assert all(e.mod_revision == txn.revision for e in batch.events)
            batch = await next_event_batch(batches)
            assert (batch.revision, len(batch.events)) == (single, 1)

            # Live: a transaction written while watching also arrives as one batch.
            live = await client.put_many([Put(key_prefix + b"e", b"5"), Delete(key_prefix + b"a")])
            batch = await next_event_batch(batches)
            assert batch.revision == live
            assert [(e.type, e.key) for e in batch.events] == [(EventType.PUT, key_prefix + b"e"),
                                                              (EventType.DELETE, key_prefix + b"a")]


@pytest.mark.integration
async def test_watch_reports_progress_while_idle(etcd_server: EtcdCluster, key_prefix: bytes) -> None:
    async with EtcdClient(etcd_server.endpoints) as client:
        revision = await client.put(key_prefix + b"a", b"1")
        async with client.watch(key_prefix, revision + 1) as batches:
            with anyio.fail_after(PROGRESS_NOTIFY_INTERVAL * 6):
                batch = await batches.__anext__()
        assert batch.is_progress
        assert batch.revision >= revision


@pytest.mark.integration
async def test_watch_cancelled_while_waiting_closes_cleanly(etcd_server: EtcdCluster, key_prefix: bytes) -> None:
    async with EtcdClient(etcd_server.endpoints) as client:
        revision = await client.put(key_prefix + b"a", b"1")
        async with client.watch(key_prefix, revision + 1, progress_notify=False) as batches:
            with anyio.move_on_after(0.2) as scope:
                await batches.__anext__()
            assert scope.cancelled_caught
            # The stream is still usable after a cancelled wait.
            written = await client.put(key_prefix + b"b", b"2")
            assert (await next_event_batch(batches)).revision == written


@pytest.mark.integration
async def test_watch_reopens_after_an_idle_timeout(etcd_server: EtcdCluster, key_prefix: bytes) -> None:
    async with EtcdClient(etcd_server.endpoints) as client:
        first = await client.put(key_prefix + b"a", b"1")
        async with client.watch(key_prefix, first, progress_notify=False, idle_timeout=0.2) as batches:
            assert (await next_event_batch(batches)).revision == first
            with anyio.move_on_after(0.7):  # silent for several idle timeouts: reopened each time
                await batches.__anext__()
            second = await client.put(key_prefix + b"b", b"2")
            batch = await next_event_batch(batches)
        assert batch.revision == second
        assert [e.key for e in batch.events] == [key_prefix + b"b"]


@pytest.mark.integration
def test_client_runs_under_asyncio(etcd_server: EtcdCluster, key_prefix: bytes) -> None:
    async def exercise() -> tuple[int, int, WatchBatch]:
        async with EtcdClient(etcd_server.endpoints) as client:
            written = await client.put_many([Put(key_prefix + b"a", b"1"), Put(key_prefix + b"b", b"2")])
            revision, kvs = await client.read_all(key_prefix, page_size=1)
            async with client.watch(key_prefix, written) as batches:
                batch = await next_event_batch(batches)
            return written, len(kvs), batch

    written, count, batch = anyio.run(exercise, backend="asyncio")
    assert count == 2
    assert batch.revision == written
    assert len(batch.events) == 2


@pytest.mark.integration
async def test_watch_from_a_compacted_revision_raises(etcd_server: EtcdCluster, key_prefix: bytes) -> None:
    async with EtcdClient(etcd_server.endpoints) as client:
        old = await client.put(key_prefix + b"a", b"1")
        compacted_at = await client.put(key_prefix + b"a", b"2")
        await client.compact(compacted_at)

        async with client.watch(key_prefix, old) as batches:
            with pytest.raises(CompactedError) as excinfo, anyio.fail_after(WATCH_TIMEOUT):
                await batches.__anext__()
        assert excinfo.value.compact_revision == compacted_at
        assert excinfo.value.requested_revision == old
        assert etcd_server.endpoints[0] in str(excinfo.value)

        with pytest.raises(CompactedError):
            await client.read_all(key_prefix, revision=old)
        # The compact revision itself is still readable and watchable.
        assert (await client.get(key_prefix + b"a", revision=compacted_at)) is not None
        async with client.watch(key_prefix, compacted_at) as batches:
            batch = await next_event_batch(batches)
        assert batch.revision == compacted_at


@pytest.mark.integration
async def test_lease_ttl_is_reported(etcd_server: EtcdCluster, key_prefix: bytes) -> None:
    async with EtcdClient(etcd_server.endpoints) as client:
        lease = await client.grant_lease(30)
        assert lease.ttl == 30
        revision = await client.put(key_prefix + b"a", b"1", lease=lease.id)
        kv = await client.get(key_prefix + b"a")
        assert kv is not None
        assert kv.lease == lease.id

        ttl = await client.lease_ttl(lease.id, keys=True)
        assert 0 < ttl.ttl <= 30
        assert ttl.granted_ttl == 30
        assert not ttl.expired
        assert ttl.keys == (key_prefix + b"a",)

        async with client.watch(key_prefix, revision) as batches:
            batch = await next_event_batch(batches)
        assert batch.events[0].lease == lease.id

        await client.revoke_lease(lease.id)
        assert await client.get(key_prefix + b"a") is None
        assert (await client.lease_ttl(lease.id)).expired
        with pytest.raises(LeaseNotFound):
            await client.put(key_prefix + b"b", b"1", lease=lease.id)


@pytest.mark.integration
async def test_guarded_transactions(etcd_server: EtcdCluster, key_prefix: bytes) -> None:
    async with EtcdClient(etcd_server.endpoints) as client:
        target = key_prefix + b"a"
        created = await client.txn([Compare.version(target, "==", 0)], [Put(target, b"first")], [Get(target)])
        assert created.succeeded
        refused = await client.txn([Compare.version(target, "==", 0)], [Put(target, b"second")], [Get(target)])
        assert not refused.succeeded
        current = await client.get(target)
        assert current is not None
        assert refused.responses == (GetResult(refused.revision, (current,)),)
        swapped = await client.txn([Compare.mod_revision(target, "==", created.revision),
                                    Compare.value(target, "==", b"first")], [Put(target, b"third")])
        assert swapped.succeeded
        assert swapped.revision == created.revision + 1


@pytest.mark.integration
async def test_request_limits_are_reported(etcd_server: EtcdCluster, key_prefix: bytes) -> None:
    operations = [Put(key(key_prefix, i), b"v") for i in range(DEFAULT_MAX_TXN_OPS + 1)]
    async with EtcdClient(etcd_server.endpoints) as client:
        with pytest.raises(RequestTooLarge, match=etcd_server.endpoints[0]):
            await client.put_many(operations)
        for batch in plan_txn_batches(operations):
            await client.txn([], batch)
        _, kvs = await client.read_all(key_prefix)
        assert len(kvs) == len(operations)


# -- three members -------------------------------------------------------------------------------


@pytest.mark.integration
async def test_failover_when_a_member_dies(etcd_cluster: EtcdCluster, key_prefix: bytes) -> None:
    leader = etcd_cluster.leader_index()
    assert leader is not None
    follower = (leader + 1) % 3
    # The client and its watch start on a follower, so killing it leaves a quorum with its leader.
    order = [follower, *(i for i in range(3) if i != follower)]
    endpoints = [etcd_cluster.endpoints[i] for i in order]
    async with EtcdClient(endpoints, retry_timeout=10.0) as client:
        start = await client.put(key_prefix + b"a", b"1")
        async with client.watch(key_prefix, start) as batches:
            assert (await next_event_batch(batches)).revision == start
            assert batches.endpoint == endpoints[0]

            etcd_cluster.kill_member(follower)
            with pytest.raises(EtcdUnavailable, match=endpoints[0]):
                await client.status(endpoints[0])

            after = await client.put(key_prefix + b"b", b"2")
            assert client.endpoint != endpoints[0]
            assert (await client.get(key_prefix + b"b")) is not None
            revision, kvs = await client.read_all(key_prefix)
            assert revision >= after
            assert [kv.key for kv in kvs] == [key_prefix + b"a", key_prefix + b"b"]
            # The watch resumes on another member without losing or repeating a revision.
            batch = await next_event_batch(batches)
            assert batch.revision == after
            assert batch.events[0].key == key_prefix + b"b"
            assert batches.endpoint in endpoints[1:]

            etcd_cluster.restart_member(follower)
            assert (await client.status(endpoints[0])).revision >= after

            # Killing the leader: reads wait out the election on the other members.
            etcd_cluster.kill_member(leader)
            revision, kvs = await client.read_all(key_prefix)
            assert revision >= after
            assert len(kvs) == 2
            latest = await client.put(key_prefix + b"c", b"3")
            batch = await next_event_batch(batches)
            assert batch.revision == latest
            assert batch.events[0].key == key_prefix + b"c"
            assert batches.endpoint != etcd_cluster.endpoints[leader]
        assert len(await client.member_list()) == 3
