"""The archiver's observer interface (issue 15, items 2 and 3): what it is told, and that no observer can
stop it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pitr.archiver import ArchiveOptions, Archiver
from pitr.archiver.observe import ArchiveObserver, PublishedSegment
from pitr.archiving import StoreSource
from pitr.repo.repository import open_repository
from pitr.store import Store
from tests.store.support import FakeClock

pytestmark = pytest.mark.anyio

MANUAL = ArchiveOptions(interval=3600.0, merge_count=1000, watermark_interval=0.0)


class Recording(ArchiveObserver):
    def __init__(self) -> None:
        self.segments: list[PublishedSegment] = []
        self.watermarks: list[tuple[str, int, int]] = []
        self.archived: list[tuple[str, int]] = []
        self.failed: list[str] = []

    def segment_published(self, segment: PublishedSegment) -> None:
        self.segments.append(segment)

    def watermark_written(self, repo: str, lsn: int, complete_through_ns: int) -> None:
        self.watermarks.append((repo, lsn, complete_through_ns))

    def repository_archived(self, repo: str, lsn: int, now_ns: int) -> None:
        self.archived.append((repo, lsn))

    def repository_failed(self, repo: str, error: str, now_ns: int) -> None:
        self.failed.append(error)


class Exploding(ArchiveObserver):
    def segment_published(self, segment: PublishedSegment) -> None:
        raise RuntimeError("observer bug")

    def watermark_written(self, repo: str, lsn: int, complete_through_ns: int) -> None:
        raise RuntimeError("observer bug")


async def test_segments_and_watermarks_are_reported_and_the_watermark_only_when_it_advances(tmp_path: Path) -> None:
    clock = FakeClock()
    seen = Recording()
    async with Store(str(tmp_path / "data"), clock=clock) as store, \
            open_repository(str(tmp_path / "repo"), create=True) as repo:
        archiver = Archiver(StoreSource(store), [repo], MANUAL, clock=clock, observer=seen)
        await archiver.start()
        for n in range(3):
            clock.advance(1000)
            await store.put(b"k%d" % n, b"v")
        assert await archiver.cycle() == 3
        assert [(s.repo, s.first_lsn, s.last_lsn, s.commits) for s in seen.segments] == [(repo.url, 1, 3, 3)]
        assert seen.segments[0].size == (tmp_path / "repo" / "segments" / seen.segments[0].name).stat().st_size
        assert seen.archived == [(repo.url, 3)]
        assert len(seen.watermarks) == 1
        assert seen.watermarks[0][:2] == (repo.url, 3)
        first_complete = seen.watermarks[0][2]
        # nothing new and the known-complete time the same: no watermark notification (the heartbeat's trigger)
        await archiver.cycle()
        assert len(seen.watermarks) == 1, seen.watermarks
        clock.advance(10**9)  # an idle store: the known-complete time moves on with the clock
        await archiver.cycle()
        assert len(seen.watermarks) == 2
        assert seen.watermarks[1][1] == 3
        assert seen.watermarks[1][2] > first_complete
        assert seen.archived == [(repo.url, 3)] * 3


async def test_an_observer_that_raises_never_stops_archiving(tmp_path: Path) -> None:
    clock = FakeClock()
    seen = Recording()
    from pitr.archiver.observe import Observers

    async with Store(str(tmp_path / "data"), clock=clock) as store, \
            open_repository(str(tmp_path / "repo"), create=True) as repo:
        archiver = Archiver(StoreSource(store), [repo], MANUAL, clock=clock, observer=Observers([Exploding(), seen]))
        await archiver.start()
        clock.advance(1000)
        await store.put(b"a", b"1")
        assert await archiver.cycle() == 1
        clock.advance(1000)
        await store.put(b"b", b"2")
        assert await archiver.cycle() == 1
        assert [s.last_lsn for s in seen.segments] == [1, 2], "the observer after the failing one is still told"
        assert archiver.progress[0].last_lsn == 2
        assert archiver.progress[0].last_error is None


async def test_a_bare_observer_is_guarded_too(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Store(str(tmp_path / "data"), clock=clock) as store, \
            open_repository(str(tmp_path / "repo"), create=True) as repo:
        archiver = Archiver(StoreSource(store), [repo], MANUAL, clock=clock, observer=Exploding())
        await archiver.start()
        clock.advance(1000)
        await store.put(b"a", b"1")
        assert await archiver.cycle() == 1
