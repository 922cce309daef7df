"""A source that lost history (etcd compaction): the timeline shows the gap and restore refuses it."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from pitr.archiver import ArchiveOptions
from pitr.archiving import archiving
from pitr.errors import OutsideWindow
from pitr.repo.repository import open_repository
from pitr.restore import RestoreOptions, RestoreTarget, restore
from pitr.snapshots.take import take_snapshot
from pitr.store import Store
from pitr.timeline import build_timeline
from segments.record import PUT, Op
from tests.repo.history import FakeClock


def test_gap_splits_windows_and_refuses_targets_inside(tmp_path: Path) -> None:
    data, repo_dir = str(tmp_path / "data"), str(tmp_path / "repo")
    clock = FakeClock()

    async def main() -> None:
        async with Store(data, clock=clock) as store:
            async with archiving(store, repo_dir, options=ArchiveOptions(interval=0.01)) as arc:
                before = [await store.put(b"k%d" % i, b"old") for i in range(5)]
                clock.now += 10_000_000_000  # ten seconds of lost source history
                resync = await store.commit([Op(PUT, b"k0", b"new", None)], gap=True)
                await take_snapshot(arc, prepare=store.flush)
                after = await store.put(b"k9", b"later")
        async with open_repository(repo_dir) as repo:
            await repo.sync()
            tl = build_timeline(repo.catalog, await repo.require_identity())
            assert [(w.start_lsn, w.end_lsn) for w in tl.windows] == [(0, 5), (6, 7)]
            assert tl.windows[0].end_ns == before[-1].ts_ns
            inside = before[-1].ts_ns + 5_000_000_000
            with pytest.raises(OutsideWindow):
                await restore(repo, RestoreOptions(target=RestoreTarget(time_ns=inside), dest=str(tmp_path / "x")))
            assert not (tmp_path / "x").exists()
            await restore(repo, RestoreOptions(target=RestoreTarget(lsn=5), dest=str(tmp_path / "a")))
            await restore(repo, RestoreOptions(target=RestoreTarget(time_ns=after.ts_ns), dest=str(tmp_path / "b")))
        assert resync.lsn == 6
        async with Store(str(tmp_path / "a")) as s:
            assert await s.get(b"k0") == b"old"
        async with Store(str(tmp_path / "b")) as s:
            assert await s.get(b"k0") == b"new"
            assert await s.get(b"k9") == b"later"

    trio.run(main)
