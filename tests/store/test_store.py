"""The live store: the writer lock, fsync failure, input checks, commit times and TTL."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest
import trio

from pitr.errors import DiskFull, InvalidArgument, PitrError, StoreClosed, StoreLocked
from pitr.store import Store, StoreOptions
from segments import wal, wal_writer
from segments.record import DELETE, PUT, Op
from tests.helpers.server_client import StoreServer
from tests.store.support import SECOND, START_NS, FakeClock, wal_records

pytestmark = pytest.mark.anyio


def causes(exc: BaseException) -> list[BaseException]:
    chain = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return chain


# -- the writer lock ------------------------------------------------------------------------------


async def test_second_process_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    server = StoreServer(data, str(tmp_path / "repo"), START_NS)
    try:
        with pytest.raises(StoreLocked) as info:
            async with Store(data):
                pass
        assert info.value.pid == server.pid
        assert str(server.pid) in str(info.value)
        assert info.value.path == data  # tmp_path is absolute
        assert server.request("put", key=b"k".hex(), value=b"v".hex())["lsn"] == 1, \
            "the refused opener left the holder working"
    finally:
        server.kill()
    async with Store(data) as store:  # the kernel released the dead holder's lock
        assert await store.get(b"k") == b"v"


async def test_second_open_in_the_same_process_is_refused(tmp_path: Path) -> None:
    async with Store(str(tmp_path)) as store:
        with pytest.raises(StoreLocked) as info:
            async with Store(str(tmp_path)):
                pass
        assert info.value.pid == os.getpid()
        await store.put(b"still", b"works")
        assert await store.get(b"still") == b"works"


# -- fsync failure ----------------------------------------------------------------------------------


async def test_fsync_failure_poisons_the_store_and_reopen_recovers(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    acknowledged = {}
    failed: dict[bytes, BaseException] = {}

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    async with Store(str(tmp_path)) as store:
        for i in range(5):
            key = b"acked-%d" % i
            await store.put(key, b"v%d" % i)
            acknowledged[key] = b"v%d" % i
        monkeypatch.setattr(wal.os, "fdatasync", eio)

        async def writer(i: int) -> None:
            try:
                await store.put(b"lost-%d" % i, b"x")
            except StoreClosed as exc:
                failed[b"lost-%d" % i] = exc

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(writer, i)
        assert len(failed) == 8, "a commit whose fsync failed must not be acknowledged"
        for exc in failed.values():
            assert any(isinstance(e, OSError) and e.errno == errno.EIO for e in causes(exc)), \
                "the cause (EIO) is kept"
        monkeypatch.undo()  # the disk works again; the store must stay poisoned anyway
        with pytest.raises(StoreClosed, match="reopen"):
            await store.put(b"after", b"x")
        with pytest.raises(StoreClosed):
            async with store.batch() as batch:
                batch.put(b"after-batch", b"x")
    assert not any(r.ops[0].key.startswith(b"after") for r in wal_records(str(tmp_path))), \
        "nothing is written after the failure"
    async with Store(str(tmp_path)) as store:
        for key, value in acknowledged.items():
            assert await store.get(key) == value
        # Unacknowledged commits may or may not have reached the disk; either way the log is dense.
        assert 5 <= store.last_lsn <= 5 + len(failed)
        assert [r.lsn for r in wal_records(str(tmp_path))] == list(range(1, store.last_lsn + 1))
        commit = await store.put(b"next", b"1")
        assert commit.lsn == store.last_lsn
        assert await store.get(b"after") is None


async def test_full_disk_is_a_clear_error_and_the_store_works_again_once_space_is_freed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """ENOSPC while appending: DiskFull, no acknowledgement, no damaged file, reopen works.

    ENOSPC while preallocating is not a failure: preallocation degrades (smaller, then none) and
    says so once, with the sizes, and the commits go on.
    """
    real_pwritev, real_fallocate = os.pwritev, os.posix_fallocate

    def full(*args: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    async with Store(str(tmp_path), StoreOptions(wal_file_size=4096)) as store:
        await store.put(b"before", b"1")
        monkeypatch.setattr(wal_writer.os, "pwritev", full)
        with pytest.raises(DiskFull, match="No space left on device") as info:
            await store.put(b"during", b"x" * 100)
        assert ".wal" in str(info.value), "the error names the WAL file"
        assert info.value.hint
        assert "free space" in info.value.hint
        assert any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in causes(info.value))
        monkeypatch.setattr(wal_writer.os, "pwritev", real_pwritev)
        with pytest.raises(DiskFull, match="reopen"):
            await store.put(b"after", b"x")
    async with Store(str(tmp_path), StoreOptions(wal_file_size=4096)) as store:  # space is back
        assert await store.get(b"before") == b"1"
        assert await store.get(b"during") is None
        monkeypatch.setattr(wal_writer.os, "posix_fallocate", full)
        for i in range(200):  # rolls many WAL files, none of them preallocated
            await store.put(b"fill-%03d" % i, b"y" * 64)
    monkeypatch.setattr(wal_writer.os, "posix_fallocate", real_fallocate)
    warnings = [r.getMessage() for r in caplog.records if "preallocate" in r.getMessage()]
    assert warnings
    assert "writing without preallocation" in warnings[0]
    assert "MiB" in warnings[0]
    async with Store(str(tmp_path), StoreOptions(wal_file_size=4096)) as store:
        for i in range(200):
            assert await store.get(b"fill-%03d" % i) == b"y" * 64
        assert [r.lsn for r in wal_records(str(tmp_path))] == list(range(1, store.last_lsn + 1))
        commit = await store.put(b"works", b"again")
        assert commit.lsn == store.last_lsn


# -- input checks ---------------------------------------------------------------------------------


async def test_key_longer_than_511_bytes_is_refused_naming_it(tmp_path: Path) -> None:
    long_key = b"customer:" + b"x" * 503
    assert len(long_key) == 512
    async with Store(str(tmp_path)) as store:
        for attempt in (lambda: store.put(long_key, b"v"), lambda: store.delete(long_key),
                        lambda: store.get(long_key), lambda: store.compare_and_set(long_key, None, b"v")):
            with pytest.raises(InvalidArgument, match=r"512 bytes.*511.*b'customer:xxx") as info:
                await attempt()
            assert isinstance(info.value, ValueError)

        async def batch_with_long_key() -> None:
            async with store.batch() as batch:
                batch.put(b"fine", b"v")
                batch.put(long_key, b"v")

        with pytest.raises(InvalidArgument, match="customer:"):
            await batch_with_long_key()
        assert store.last_lsn == 0, "a refused batch commits nothing"
        commit = await store.put(b"k" * 511, b"v")  # the limit itself is fine
        assert commit.lsn == 1
        assert await store.get(b"k" * 511) == b"v"


@pytest.mark.parametrize("key", ["text", 7, None, b""])
async def test_key_must_be_non_empty_bytes(tmp_path: Path, key: object) -> None:
    async with Store(str(tmp_path)) as store:
        for attempt in (lambda: store.put(key, b"v"), lambda: store.delete(key),  # type: ignore[arg-type]
                        lambda: store.get(key)):  # type: ignore[arg-type]
            with pytest.raises(InvalidArgument, match="key"):
                await attempt()
        assert store.last_lsn == 0
        await store.put(b"ok", b"v")  # the store is not harmed


@pytest.mark.parametrize("value", ["text", 7, None])
async def test_value_must_be_bytes_and_the_error_names_the_key(tmp_path: Path, value: object) -> None:
    async with Store(str(tmp_path)) as store:
        with pytest.raises(InvalidArgument, match=r"b'user:42'.*bytes"):
            await store.put(b"user:42", value)  # type: ignore[arg-type]
        if value is not None:  # for compare_and_set, None means delete
            with pytest.raises(InvalidArgument, match=r"b'user:42'"):
                await store.compare_and_set(b"user:42", None, value)  # type: ignore[arg-type]
        assert store.last_lsn == 0


async def test_value_over_the_limit_is_refused(tmp_path: Path) -> None:
    async with Store(str(tmp_path)) as store:
        with pytest.raises(InvalidArgument, match="b'big'"):
            await store.put(b"big", b"\0" * ((64 << 20) + 1))
        assert store.last_lsn == 0


@pytest.mark.parametrize("ttl", [0, -1, -0.5])
async def test_ttl_must_be_positive(tmp_path: Path, ttl: float) -> None:
    async with Store(str(tmp_path)) as store:
        with pytest.raises(InvalidArgument, match="ttl"):
            await store.put(b"k", b"v", ttl=ttl)
        assert store.last_lsn == 0


async def test_commit_needs_an_operation(tmp_path: Path) -> None:
    async with Store(str(tmp_path)) as store:
        with pytest.raises(InvalidArgument):
            await store.commit([])
        async with store.batch() as batch:
            pass
        assert batch.commit is None
        assert store.last_lsn == 0


async def test_explicit_commit_time_must_increase(tmp_path: Path) -> None:
    async with Store(str(tmp_path), clock=FakeClock()) as store:
        first = await store.commit([Op(PUT, b"a", b"1")], ts_ns=START_NS - 10 * SECOND)
        assert first.ts_ns == START_NS - 10 * SECOND, "imports may date commits in the past"
        for ts in (first.ts_ns, first.ts_ns - 1, 0):
            with pytest.raises(InvalidArgument, match=f"{ts}.*{first.ts_ns}"):
                await store.commit([Op(PUT, b"a", b"2")], ts_ns=ts)
        with pytest.raises(InvalidArgument):
            await store.commit([Op(PUT, b"a", b"2")], ts_ns=1 << 63)  # does not fit the record
        second = await store.commit([Op(DELETE, b"a")], ts_ns=first.ts_ns + 1)
        assert second.lsn == 2, "refused commits used no LSN"
        third = await store.put(b"b", b"1")
        assert (third.lsn, third.ts_ns) == (3, START_NS), "the clock is ahead again"
    async with Store(str(tmp_path), clock=FakeClock(START_NS - 20 * SECOND)) as store:
        with pytest.raises(InvalidArgument):  # the last time survives a reopen
            await store.commit([Op(PUT, b"a", b"3")], ts_ns=START_NS)
        commit = await store.put(b"c", b"1")
        assert commit.ts_ns == START_NS + 1, "a clock behind the log still gives increasing times"


async def test_errors_share_the_root(tmp_path: Path) -> None:
    async with Store(str(tmp_path)) as store:
        with pytest.raises(PitrError):
            await store.put("k", b"v")  # type: ignore[arg-type]


async def test_closed_store_refuses_operations(tmp_path: Path) -> None:
    async with Store(str(tmp_path)) as store:
        await store.put(b"k", b"v")
    with pytest.raises(StoreClosed):
        await store.put(b"k", b"w")
    with pytest.raises(StoreClosed):
        await store.get(b"k")


# -- commit times and TTL ---------------------------------------------------------------------------


async def test_commit_times_increase_with_a_stalled_or_backward_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Store(str(tmp_path), clock=clock) as store:
        a = await store.put(b"a", b"1")
        b = await store.put(b"b", b"1")
        clock.advance(-5 * SECOND)
        c = await store.delete(b"a")
        clock.advance(10 * SECOND)
        d = await store.put(b"a", b"2")
    assert [x.lsn for x in (a, b, c, d)] == [1, 2, 3, 4]
    assert [x.ts_ns for x in (a, b, c, d)] == [START_NS, START_NS + 1, START_NS + 2, START_NS + 5 * SECOND]


async def test_ttl_counts_from_the_commit_time(tmp_path: Path) -> None:
    """Store.put: "with `ttl` seconds the key expires at commit time + ttl"; the commit time is
    after the clock when the clock stalls, so the expiry must follow the commit time."""
    clock = FakeClock()
    async with Store(str(tmp_path), clock=clock) as store:
        await store.put(b"first", b"1")
        commit = await store.put(b"session", b"s", ttl=1)
        assert commit.ts_ns == START_NS + 1
        found = await store.get_with_expiry(b"session")
        assert found == (b"s", commit.ts_ns + SECOND)


async def test_ttl_key_vanishes_at_its_expiry_in_memory_and_in_lmdb(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Store(str(tmp_path), clock=clock) as store:
        commit = await store.put(b"session", b"s", ttl=2)
        expires = commit.ts_ns + 2 * SECOND
        for flushed in (False, True):
            if flushed:
                await store.flush()
            clock.now = expires - 1
            assert await store.get(b"session") == b"s"
            assert await store.scan() == [(b"session", b"s")]
            clock.now = expires
            assert await store.get(b"session") is None
            assert await store.get_with_expiry(b"session") is None
            assert await store.scan() == []
        # an expired key is absent for compare-and-set, and a plain put clears the expiry
        assert await store.compare_and_set(b"session", b"s", b"t") is None
        assert await store.compare_and_set(b"session", None, b"t") is not None
        await store.flush()
        clock.advance(100 * SECOND)
        assert await store.get_with_expiry(b"session") == (b"t", None)


# -- rolling WAL files ------------------------------------------------------------------------------


async def test_wal_roll_while_writers_keep_committing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writers sequence new commits while a group is written and fsynced in a worker thread. A WAL
    file rolled at that moment must start at the first LSN it will actually hold, or the log has a
    hole: the archiver cannot read past it and the store refuses to reopen."""
    real_fdatasync = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        time.sleep(0.002)  # a slow disk: the event loop keeps sequencing commits meanwhile
        real_fdatasync(fd)

    monkeypatch.setattr(wal.os, "fdatasync", slow_fdatasync)
    acknowledged: dict[bytes, int] = {}
    async with Store(str(tmp_path), StoreOptions(wal_file_size=1024)) as store:

        async def writer(index: int) -> None:
            for seq in range(20):
                await trio.sleep(0.0005 * (index % 3))
                key = b"w%02d-%03d" % (index, seq)
                acknowledged[key] = (await store.put(key, b"v" * 40)).lsn

        async with trio.open_nursery() as nursery:
            for index in range(16):
                nursery.start_soon(writer, index)
        last = store.last_lsn
        assert len(store.wal_directory.files()) > 5, "the WAL rolled"
        read = [span.lsn for _data, spans in store.wal_directory.read_after(0, last) for span in spans]
        assert read == list(range(1, last + 1)), "the archiver's reader sees every LSN once, in order"
    monkeypatch.undo()
    async with Store(str(tmp_path)) as store:
        assert store.last_lsn == last == len(acknowledged)
        for key in acknowledged:
            assert await store.get(key) == b"v" * 40
