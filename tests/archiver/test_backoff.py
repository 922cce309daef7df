"""A failing repository is retried with backoff and reported sparingly; it never stops the store
(issue #11, items 9, 16 and 11 on the archiver side)."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any

import anyio
import lmdb
import pytest

from pitr.archiver import ArchiveOptions, Archiver, DirectorySource
from pitr.archiving import StoreSource, archiving
from pitr.datadir.state import StateDB
from pitr.errors import CorruptData, DiskFull, StorageError, file_error
from pitr.repo.repository import Repository, open_repository
from pitr.store import Store
from segments.wal import scan_wal
from tests.store.support import FakeClock

pytestmark = pytest.mark.anyio


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def full_disk(calls: list[float], clock: Clock) -> Any:
    async def publish(name: str, data: bytes) -> None:
        calls.append(clock.now)
        raise file_error(OSError(errno.ENOSPC, "No space left on device"), f"/repo/{name}", "publish")
    return publish


async def test_a_full_disk_is_retried_with_backoff_and_reported_sparingly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    clock, mono = FakeClock(), Clock()
    options = ArchiveOptions(interval=1.0, retry_initial=1.0, retry_max=8.0)
    async with open_repository(str(tmp_path / "repo"), create=True) as repo, \
            Store(str(tmp_path / "data"), clock=clock) as store:
        archiver = Archiver(StoreSource(store), [repo], options, clock=clock, monotonic=mono)
        await archiver.start()
        attempts: list[float] = []
        real_publish = repo.storage.publish
        monkeypatch.setattr(repo.storage, "publish", full_disk(attempts, mono))
        await store.put(b"k", b"v")
        caplog.set_level(logging.WARNING, logger="pitr.archiver")
        for second in range(41):
            mono.now = float(second)
            assert await archiver.cycle(respect_backoff=True) == 0
        assert attempts == [0.0, 1.0, 3.0, 7.0, 15.0, 23.0, 31.0, 39.0], "1, 2, 4, then 8 s apart"
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 4, lines  # the first failure, then after 2, 4 and 8 failures
        assert "No space left on device" in lines[0]
        assert "retrying in 1 s" in lines[0]
        assert "still failing (2 times, next try in 2 s)" in lines[1]
        assert "still failing (8 times, next try in 8 s)" in lines[3]
        assert "No space left" in archiver.failing[repo.url]
        monkeypatch.setattr(repo.storage, "publish", real_publish)
        mono.now = 46.0
        assert await archiver.cycle(respect_backoff=True) == 0, "not due before 47 s"
        mono.now = 47.0
        assert await archiver.cycle(respect_backoff=True) == 1
        assert "recovered after 8 failed attempts" in caplog.records[-1].getMessage()
        assert archiver.failing == {}


async def test_lmdb_errors_from_the_catalog_are_translated_and_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    async with open_repository(str(tmp_path / "repo"), create=True) as repo, \
            Store(str(tmp_path / "data"), clock=clock) as store:
        archiver = Archiver(StoreSource(store), [repo], ArchiveOptions(interval=3600.0), clock=clock)
        await archiver.start()

        def broken(*_args: object) -> None:
            raise lmdb.DiskError("mdb_txn_commit: Input/output error")

        real_add = repo.catalog.add_segment_indexed
        monkeypatch.setattr(repo.catalog, "add_segment_indexed", broken)
        await store.put(b"k", b"v")
        assert await archiver.cycle() == 0
        assert repo.catalog.path in archiver.failing[repo.url]
        monkeypatch.setattr(repo.catalog, "add_segment_indexed", real_add)
        assert await archiver.cycle() == 1, "the retry publishes the same segment again and indexes it"
        assert archiver.failing == {}
        assert [(s.first_lsn, s.last_lsn) for s in repo.catalog.segments()] == [(1, 1)]


async def test_a_marker_that_cannot_be_written_is_a_file_error_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    async with open_repository(str(tmp_path / "repo"), create=True) as repo, \
            Store(str(tmp_path / "data"), clock=clock) as store:
        archiver = Archiver(StoreSource(store), [repo], ArchiveOptions(interval=3600.0), clock=clock)
        await archiver.start()

        def no_space(*_args: object, **_kwargs: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr("pitr.datadir.markers.publish_atomically", no_space)
        await store.put(b"k", b"v")
        await archiver.cycle()
        error = archiver.failing[repo.url]
        assert os.path.join(store.wal_directory.path, "archived-") in error
        assert "write the archive marker" in error


async def until(condition: Any) -> None:
    """Wait for `condition()` (the caller bounds the wait with fail_after)."""
    for _ in range(100_000):
        if condition():
            return
        await anyio.sleep(0.01)


async def keep_writing_while_the_repository_fails(store: Store, repo: Repository, monkeypatch: pytest.MonkeyPatch,
                                                  options: ArchiveOptions) -> int:
    real_publish = repo.storage.publish

    async def failing(name: str, data: bytes) -> None:
        raise StorageError(f"{repo.url}: cannot publish {name}: service unavailable")

    async with archiving(store, repo, options=options) as archiver:
        monkeypatch.setattr(repo.storage, "publish", failing)
        for n in range(30):
            await store.put(b"k-%d" % n, b"v")
            await anyio.sleep(0.01)
        await until(lambda: bool(archiver.failing))
        assert "service unavailable" in archiver.failing[repo.url]
        monkeypatch.setattr(repo.storage, "publish", real_publish)
        await until(lambda: not archiver.failing)
        return store.last_lsn


async def test_in_process_archiving_never_stops_the_applications_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = ArchiveOptions(interval=0.02, retry_initial=0.02, retry_max=0.1)
    with anyio.fail_after(60):
        async with open_repository(str(tmp_path / "repo"), create=True) as repo, \
                Store(str(tmp_path / "data")) as store:
            last = await keep_writing_while_the_repository_fails(store, repo, monkeypatch, options)
            assert last == 30
            segments = repo.catalog.segments()
            assert (segments[0].first_lsn, segments[-1].last_lsn) == (1, 30), "everything arrived in the end"


def set_checkpoint(data_dir: Path, lsn: int) -> None:
    """Pretend the writer crashed having applied only through `lsn` (what recovery would see)."""
    state = StateDB(str(data_dir / "state"))
    try:
        state.set_checkpoint(lsn, state.checkpoint()[1])
    finally:
        state.close()


async def test_a_sidecar_never_promises_completeness_over_a_wal_it_cannot_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    clock = FakeClock()
    async with Store(str(data), clock=clock) as store:
        for n in range(10):
            clock.advance(1000)
            await store.put(b"k-%d" % n, b"value")
    set_checkpoint(data, 5)
    clock.advance(10**12)
    source = DirectorySource(str(data), clock=clock)
    try:
        lsn, complete = await source.durable()
        assert lsn == 5
        assert complete < clock.now - 10**11, "commits 6..10 are in the WAL, unapplied: not complete through now"
    finally:
        source.close()
    wal = sorted((data / "wal").glob("*.wal"))[0]
    span = next(s for s in scan_wal(str(wal)).spans if s.lsn == 7)
    raw = bytearray(wal.read_bytes())
    raw[(span.start + span.end) // 2] ^= 0xFF  # damage before the end: not a torn tail
    wal.write_bytes(bytes(raw))
    source = DirectorySource(str(data), clock=clock)
    try:
        with pytest.raises(CorruptData) as info:
            await source.durable()
        assert str(wal) in str(info.value)
    finally:
        source.close()


def test_disk_full_is_a_transient_error() -> None:
    from pitr.archiver.retry import is_transient

    assert is_transient(DiskFull("full"))
    assert not is_transient(CorruptData("damaged"))


async def test_a_failing_scheduled_snapshot_backs_off_and_does_not_end_the_run(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mono = Clock()
    calls: list[float] = []

    async def snapshot_on_a_full_disk() -> None:
        calls.append(mono.now)
        raise DiskFull("/cache/.snapshot-x: cannot write the snapshot: No space left on device")

    caplog.set_level(logging.WARNING, logger="pitr.archiver")
    options = ArchiveOptions(interval=0.01, retry_initial=1.0, retry_max=60.0)
    with anyio.fail_after(60):
        async with open_repository(str(tmp_path / "repo"), create=True) as repo, \
                Store(str(tmp_path / "data")) as store:
            archiver = Archiver(StoreSource(store), [repo], options, monotonic=mono)
            await archiver.start()
            cycles = [0]
            real_cycle = archiver.cycle

            async def counted_cycle(**kwargs: Any) -> int:
                cycles[0] += 1
                return await real_cycle(**kwargs)

            archiver.cycle = counted_cycle  # type: ignore[method-assign]
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: archiver.run(stop=stop, after_cycle=snapshot_on_a_full_disk))
                seen = []
                for now in (0.0, 0.5, 1.0, 2.9, 3.0):  # due at 0, then 1 s later, then 2 s after that
                    mono.now = now
                    target = cycles[0] + 3
                    await until(lambda target=target: cycles[0] >= target)  # a few cycles at this time
                    seen.append(len(calls))
                await store.put(b"k", b"v")
                await until(lambda: archiver.progress[0].last_lsn == 1)
                stop.set()
            assert seen == [1, 1, 2, 2, 3]
            assert archiver.progress[0].last_lsn == 1, "archiving went on between the attempts"
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("scheduled snapshot failed:")
    assert "No space left" in lines[0]
