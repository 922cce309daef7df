"""The archiver: restarts and sidecars without gap or duplicate, reindex, foreign repositories,
and when the store may delete its WAL files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pitr.archiver import ArchiveOptions, Archiver, DirectorySource
from pitr.archiving import StoreSource, archiving
from pitr.errors import ForeignRepository
from pitr.repo.repository import Repository, open_repository
from pitr.restore import RestoreOptions, RestoreResult, RestoreTarget, restore
from pitr.snapshots.take import take_snapshot
from pitr.store import Store, StoreOptions
from pitr.timeline import build_timeline
from tests.helpers.server_client import StoreServer
from tests.store.support import SECOND, FakeClock, archived_records, assert_contiguous_chain

pytestmark = pytest.mark.anyio

MANUAL = ArchiveOptions(interval=3600.0)  # one cycle at start, then only when the test asks


async def write(store: Store, clock: FakeClock, log: dict[int, tuple[bytes, bytes]], count: int,
                prefix: bytes = b"key") -> None:
    for _ in range(count):
        clock.advance(1000)
        n = len(log) + 1
        key, value = b"%s-%05d" % (prefix, n), b"value-%d" % n
        commit = await store.put(key, value)
        assert commit.lsn not in log
        log[commit.lsn] = (key, value)


def assert_archive_holds(repo: Repository, start_digest: bytes, log: dict[int, tuple[bytes, bytes]]) -> None:
    assert_contiguous_chain(repo, start_digest)
    records = archived_records(repo)
    assert [r.lsn for r in records] == list(range(1, len(log) + 1)), "each LSN exactly once"
    assert [(r.ops[0].key, r.ops[0].value) for r in records] == [log[r.lsn] for r in records]


async def test_restarts_and_a_sidecar_leave_no_gap_and_no_duplicate(tmp_path: Path) -> None:
    data, repo_dir = str(tmp_path / "data"), str(tmp_path / "repo")
    clock = FakeClock()
    log: dict[int, tuple[bytes, bytes]] = {}
    async with open_repository(repo_dir, create=True) as repo:
        async with Store(data, StoreOptions(wal_file_size=4096), clock=clock) as store:
            assert store.identity is not None
            start = store.identity.start_chain_digest
            async with archiving(store, repo, options=MANUAL) as archiver:
                await write(store, clock, log, 50)
                await archiver.cycle()
                await write(store, clock, log, 10)
            # archiver stopped; the store goes on
            await write(store, clock, log, 30)
            async with archiving(store, repo, options=MANUAL):
                await write(store, clock, log, 20)
            await write(store, clock, log, 25)
        # sidecar while the store is closed: ships the rest, and knows nothing can follow
        clock.advance(10 * SECOND)
        source = DirectorySource(data, clock=clock)
        try:
            sidecar = Archiver(source, [repo], MANUAL, clock=clock)
            await sidecar.start()
            assert await sidecar.cycle() == 25
            assert await sidecar.cycle() == 0, "a second cycle ships nothing twice"
        finally:
            source.close()
        assert repo.watermark() == (135, clock.now - 1)
        # the writer again, in another process (LMDB allows one environment handle per process), with
        # a sidecar beside it: with a writer running, the sidecar vouches only for applied commits
        server = StoreServer(data, "-", clock.now)
        try:
            commits = [server.request("put", key=(b"live-%d" % n).hex(), value=b"v".hex())
                       for n in range(len(log) + 1, len(log) + 16)]
            for n, commit in enumerate(commits, start=len(log) + 1):
                log[commit["lsn"]] = (b"live-%d" % n, b"v")
            server.request("flush")  # applied through 150
            for n in range(151, 156):
                log[server.request("put", key=(b"live-%d" % n).hex(), value=b"v".hex())["lsn"]] = \
                    (b"live-%d" % n, b"v")
            source = DirectorySource(data, clock=clock)
            try:
                sidecar = Archiver(source, [repo], MANUAL, clock=clock)
                await sidecar.start()
                assert await sidecar.cycle() == 15
                assert repo.watermark() == (150, commits[-1]["ts"])
            finally:
                source.close()
        finally:
            server.close()
        clock.now = max(clock.now, commits[-1]["ts"] + 10)
        async with Store(data, clock=clock) as store:
            async with archiving(store, repo, options=MANUAL):
                await write(store, clock, log, 5)
        assert_archive_holds(repo, start, log)
        timeline = build_timeline(repo.catalog, await repo.require_identity())
        assert len(timeline.windows) == 1
        assert timeline.gaps == []
        assert (timeline.windows[0].start_lsn, timeline.windows[0].end_lsn) == (0, 160)
        result = await restore(repo, RestoreOptions(target=RestoreTarget(latest=True),
                                                    dest=str(tmp_path / "restored")))
        assert isinstance(result, RestoreResult)
    async with Store(str(tmp_path / "restored")) as restored:
        assert await restored.scan() == sorted(log.values())


def log_ts(clock: FakeClock, commits_ago: int) -> int:
    """The commit time `commits_ago` commits back, for `write`'s 1000 ns steps."""
    return clock.now - 1000 * commits_ago


async def test_reindex_rebuilds_the_live_catalog_exactly(tmp_path: Path) -> None:
    clock = FakeClock()
    options = ArchiveOptions(interval=3600.0, merge_count=3, merge_small_bytes=1 << 20)
    async with open_repository(str(tmp_path / "repo"), create=True) as repo, \
            Store(str(tmp_path / "data"), clock=clock) as store:
        async with archiving(store, repo, options=options) as archiver:
            for round_ in range(12):
                async with store.batch() as batch:
                    batch.put(b"plain-%d" % round_, b"v" * round_)
                    batch.put(b"long-" + b"x" * 490, b"%d" % round_)  # indexed by digest
                    batch.put(b"ttl-%d" % round_, b"t", ttl=5)
                clock.advance(SECOND)
                await store.delete(b"plain-%d" % (round_ - 1))
                clock.advance(SECOND)
                await archiver.cycle()  # one small segment per round: merged in threes
                if round_ in (4, 9):
                    await take_snapshot(archiver, prepare=store.flush)
        live = repo.catalog.dump()
        segments = repo.catalog.segments()
        assert len(segments) < 12, "small segments were merged"
        timeline = build_timeline(repo.catalog, await repo.require_identity())
        assert timeline.unbound_snapshots == [], "merging kept the snapshots bound to the chain"
        report = await repo.reindex()
        assert report.broken == []
        assert repo.catalog.dump() == live


async def test_repository_of_another_store_is_refused(tmp_path: Path) -> None:
    repo_dir = str(tmp_path / "repo")
    async with open_repository(repo_dir, create=True) as repo:
        async with Store(str(tmp_path / "a")) as first:
            async with archiving(first, repo):
                await first.put(b"k", b"from a")
        assert first.identity is not None
        files = sorted(os.listdir(os.path.join(repo_dir, "segments")))
        async with Store(str(tmp_path / "b")) as other:
            await other.put(b"k", b"from b")
            assert other.identity is not None
            with pytest.raises(ForeignRepository) as info:
                async with archiving(other, repo):
                    pass
            assert str(first.identity.store_id) in str(info.value)
            assert str(other.identity.store_id) in str(info.value)
        # a store restored from this repository is a new history: it may not archive here either
        await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=str(tmp_path / "restored")))
        async with Store(str(tmp_path / "restored")) as restored:
            await restored.put(b"k", b"after restore")
            with pytest.raises(ForeignRepository):
                async with archiving(restored, repo):
                    pass
        assert sorted(os.listdir(os.path.join(repo_dir, "segments"))) == files
        assert [(s.first_lsn, s.last_lsn) for s in repo.catalog.segments()] == [(1, 1)]


def wal_coverage(store: Store) -> tuple[int, int]:
    """(first LSN, last LSN) the store's WAL files still hold."""
    files = store.wal_directory.files()
    return files[0][0], store.last_lsn


def archived_through(store: Store) -> int:
    marks = store.wal_directory.markers.archived_lsns()
    return min(marks.values()) if marks else 0


async def test_wal_files_go_only_once_archived_and_checkpointed(tmp_path: Path) -> None:
    clock = FakeClock()
    log: dict[int, tuple[bytes, bytes]] = {}
    async with open_repository(str(tmp_path / "repo"), create=True) as repo, \
            Store(str(tmp_path / "data"), StoreOptions(wal_file_size=4096, apply_interval=3600.0), clock=clock) as store:

        def check() -> None:
            applied, _ = store.state.checkpoint()
            first, last = wal_coverage(store)
            assert first <= min(applied, archived_through(store)) + 1, \
                "a WAL file went before it was both archived and checkpointed"
            assert last == store.last_lsn

        await write(store, clock, log, 300)
        assert len(store.wal_directory.files()) > 3, "small WAL files rolled"
        await store.flush()  # checkpointed, never archived: everything stays
        check()
        assert wal_coverage(store)[0] == 1
        archiver = Archiver(StoreSource(store), [repo], MANUAL, clock=clock)
        await archiver.start()
        await archiver.cycle()
        assert archived_through(store) == 300
        await write(store, clock, log, 300)  # archived through 300, checkpointed through 300
        check()
        await store.flush()  # checkpoint 600: files wholly <= 300 may go now
        check()
        first = wal_coverage(store)[0]
        assert 200 < first <= 301, "files archived and checkpointed were removed"
        await archiver.cycle()  # archived through 600, checkpointed through 600
        await write(store, clock, log, 100)
        await archiver.cycle()  # archived through 700, checkpoint still 600
        await store.flush()
        check()
        assert 550 < wal_coverage(store)[0] <= 701
    async with open_repository(str(tmp_path / "repo")) as repo:
        assert_archive_holds(repo, store.identity.start_chain_digest, log)  # type: ignore[union-attr]
