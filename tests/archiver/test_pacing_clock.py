"""The archiver's and the snapshot schedule's time is the event loop's clock (issue #12, Deliver 5).

Every test here runs under trio's `MockClock(autojump_threshold=0)`: time
passes only when every task sleeps, and jumps straight to the next deadline.
None of these tests sets another deadline (no `fail_after`, no open `Store`
with its apply timer) while the archiver waits on a worker thread, so the
clock stands still during real work and each figure below is exact.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio.testing

from pitr.archiver import ArchiveOptions, Archiver, DirectorySource
from pitr.catalog.entries import SnapshotEntry
from pitr.errors import file_error
from pitr.repo import layout
from pitr.repo.identity import Watermark
from pitr.repo.repository import Repository, open_repository
from pitr.snapshots.schedule import SnapshotSchedule, Snapshotter
from pitr.store import Store
from tests.store.support import START_NS

pytestmark = pytest.mark.anyio


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.fixture
def anyio_backend(mock_clock: trio.testing.MockClock) -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": mock_clock}


def wall_ns(clock: trio.testing.MockClock) -> Callable[[], int]:
    """Wall-clock nanoseconds that follow the mock clock (commit and completeness times; also
    read from worker threads, so it reads the clock object rather than the running loop)."""
    return lambda: START_NS + int(clock.current_time() * 1e9)


async def make_store(path: Path, commits: int, clock: trio.testing.MockClock) -> str:
    """A closed store holding `commits` commits; a sidecar archives it with no timers running."""
    data = str(path / "data")
    async with Store(data, clock=wall_ns(clock)) as store:
        for n in range(commits):
            await store.put(b"k-%d" % n, b"value")
    return data


class ScriptedCycles(Archiver):
    """An archiver whose cycles take `cycle_seconds` of loop time and report `publish_seconds` of
    publish latency, recording when each starts; the run stops after `cycles` cycles."""

    def __init__(self, source: DirectorySource, repo: Repository, options: ArchiveOptions,
                 cycle_seconds: float, publish_seconds: float, cycles: int) -> None:
        super().__init__(source, [repo], options)
        self.cycle_seconds = cycle_seconds
        self.publish_seconds = publish_seconds
        self.cycles = cycles
        self.starts: list[float] = []
        self.stop = anyio.Event()

    async def cycle(self, *, respect_backoff: bool = False) -> int:
        self.starts.append(anyio.current_time())
        await anyio.sleep(self.cycle_seconds)
        self.last_publish_seconds = self.publish_seconds
        if len(self.starts) == self.cycles:
            self.stop.set()
        return 0


@pytest.mark.parametrize(("cycle_seconds", "publish_seconds", "period"), [
    (0.3, 0.2, 0.8),  # pause = 1.0 - 0.3 (the cycle) - 0.2 (its publish latency) = 0.5
    (0.0, 0.0, 1.0),  # an idle cycle: one per interval
    (0.7, 0.6, 0.7),  # the interval is used up: the next cycle starts at once
])
async def test_cycles_are_paced_at_the_interval_less_the_cycle_and_its_publish_latency(
        tmp_path: Path, mock_clock: trio.testing.MockClock, cycle_seconds: float, publish_seconds: float,
        period: float) -> None:
    source = DirectorySource(await make_store(tmp_path, 1, mock_clock))
    try:
        async with open_repository(str(tmp_path / "repo"), create=True) as repo:
            archiver = ScriptedCycles(source, repo, ArchiveOptions(interval=1.0), cycle_seconds,
                                      publish_seconds, cycles=6)
            await archiver.run(stop=archiver.stop)
    finally:
        source.close()
    gaps = [b - a for a, b in zip(archiver.starts, archiver.starts[1:], strict=False)]
    assert gaps == pytest.approx([period] * 5), archiver.starts


async def test_the_watermark_is_rewritten_no_more_often_than_its_interval(
        tmp_path: Path, mock_clock: trio.testing.MockClock) -> None:
    """Nothing new arrives, but the log stays complete through a later time at every cycle: the
    watermark (one storage write and one fsynced catalog transaction) follows at most every
    `watermark_interval` (4.5 s: every fifth cycle), not at every 1 s cycle."""
    source = DirectorySource(await make_store(tmp_path, 3, mock_clock), clock=wall_ns(mock_clock))
    try:
        async with open_repository(str(tmp_path / "repo"), create=True) as repo:
            archiver = Archiver(source, [repo], ArchiveOptions(interval=1.0, watermark_interval=4.5),
                                clock=wall_ns(mock_clock))
            await archiver.start()
            written: list[float] = []
            real_write = repo.write_watermark

            async def write_watermark(mark: Watermark) -> None:
                written.append(anyio.current_time())
                await real_write(mark)

            repo.write_watermark = write_watermark  # type: ignore[method-assign]
            begin = anyio.current_time()
            assert await archiver.cycle() == 3
            for _ in range(21):
                await anyio.sleep(1.0)
                assert await archiver.cycle() == 0
            mark = await repo.read_watermark()
    finally:
        source.close()
    assert [t - begin for t in written] == pytest.approx([0.0, 5.0, 10.0, 15.0, 20.0])
    assert mark is not None
    assert mark.lsn == 3
    assert mark.complete_through_ns == pytest.approx(START_NS + (begin + 20.0) * 1e9, rel=0, abs=1e3), \
        "the newest promise is there"


async def test_a_failing_repository_is_retried_on_the_backoff_schedule_in_loop_time(
        tmp_path: Path, mock_clock: trio.testing.MockClock) -> None:
    """`Archiver.run` (default clock): 1, 2, 4, then 8 s (the maximum) between attempts while the
    only repository fails, whatever the interval; the attempt after the cause clears publishes."""
    source = DirectorySource(await make_store(tmp_path, 2, mock_clock))
    try:
        async with open_repository(str(tmp_path / "repo"), create=True) as repo:
            options = ArchiveOptions(interval=0.25, retry_initial=1.0, retry_max=8.0)
            archiver = Archiver(source, [repo], options)
            await archiver.start()
            attempts: list[float] = []
            stop = anyio.Event()
            real_publish = repo.storage.publish

            async def publish(name: str, data: bytes) -> None:
                if not name.startswith(layout.SEGMENTS):  # the watermark after the segment is published too
                    await real_publish(name, data)
                    return
                attempts.append(anyio.current_time())
                if len(attempts) < 7:
                    raise file_error(OSError(errno.ENOSPC, "No space left on device"), f"/repo/{name}", "publish")
                await real_publish(name, data)
                if name.startswith(layout.SEGMENTS):
                    stop.set()

            repo.storage.publish = publish  # type: ignore[method-assign]
            begin = anyio.current_time()
            await archiver.run(stop=stop)
            last_lsn = archiver.progress[0].last_lsn
    finally:
        source.close()
    assert [t - begin for t in attempts] == pytest.approx([0.0, 1.0, 3.0, 7.0, 15.0, 23.0, 31.0])
    assert last_lsn == 2, "the seventh attempt published"


class NoArchiver:
    """What a `Snapshotter` reads from its archiver between snapshots: nothing archived."""

    progress: list[Any] = []


async def test_scheduled_snapshots_follow_every_seconds_in_loop_time(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[float] = []

    async def take_snapshot(archiver: object, *, prepare: object = None) -> SnapshotEntry:
        taken.append(anyio.current_time())
        await anyio.sleep(2.0)  # a snapshot takes time: the next is due every_seconds after it ends
        return SnapshotEntry(f"snap-{len(taken)}", 0, 0, 0, 0, 0, 0, b"", b"", {})

    monkeypatch.setattr("pitr.snapshots.schedule.take_snapshot", take_snapshot)
    begin = anyio.current_time()
    snapshotter = Snapshotter(NoArchiver(), SnapshotSchedule(every_seconds=10.0))  # type: ignore[arg-type]
    for _ in range(40):
        await snapshotter.maybe_snapshot()
        await anyio.sleep(1.0)
    assert [t - begin for t in taken] == pytest.approx([10.0, 22.0, 34.0])
    assert len(snapshotter.taken) == 3
