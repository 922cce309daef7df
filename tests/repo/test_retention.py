"""Retention: keep_count OR keep_days, never the newest, and only the log kept snapshots need."""

from __future__ import annotations

from pathlib import Path

import trio
from hypothesis import given
from hypothesis import strategies as st

from pitr import backup
from pitr.catalog.entries import SegmentEntry, SnapshotEntry
from pitr.repo.repository import open_repository
from pitr.restore import RestoreOptions, RestoreTarget, restore
from pitr.retention import DAY_NS, choose, plan_cleanup
from pitr.store import Store
from tests.repo.history import build_history

NOW = 1_800_000_000_000_000_000


def snap(lsn: int, age_days: float) -> SnapshotEntry:
    return SnapshotEntry(f"{lsn:020d}.snap", lsn, NOW - int(age_days * DAY_NS), 1, 0, 0, 0, b"", b"")


def seg(first: int, last: int) -> SegmentEntry:
    return SegmentEntry(f"{first}-{last}.seg", first, last, 0, 0, 0, 1, 0, 0, 1, b"", b"")


@given(ages=st.lists(st.floats(min_value=-1, max_value=100), min_size=1, max_size=12),  # < 0: clock stepped back
       keep_count=st.integers(0, 6), keep_days=st.floats(min_value=0, max_value=60))
def test_keep_rule(ages: list[float], keep_count: int, keep_days: float) -> None:
    ages = sorted(ages, reverse=True)  # higher LSN = younger
    snaps = [snap(100 * (i + 1), age) for i, age in enumerate(ages)]
    segs = [seg(100 * i + 1, 100 * (i + 1)) for i in range(len(ages) + 1)]
    keep, drop, doomed = choose(snaps, segs, keep_count, keep_days, NOW)
    assert keep + drop == snaps or sorted(keep + drop, key=lambda s: s.lsn) == snaps
    assert snaps[-1] in keep
    for i, s in enumerate(snaps):
        young = keep_days > 0 and s.ts_ns > NOW - int(keep_days * DAY_NS)  # keep_days=0: no age rule
        wanted = i >= len(snaps) - keep_count or young or i == len(snaps) - 1
        assert (s in keep) == wanted
    oldest = min(s.lsn for s in keep)
    assert doomed == [g for g in segs if g.last_lsn < oldest]


def test_no_snapshot_deletes_nothing() -> None:
    assert choose([], [seg(1, 10)], 0, 0, NOW) == ([], [], [])


def test_cleanup_keeps_every_kept_snapshot_restorable(tmp_path: Path) -> None:
    hist = build_history(str(tmp_path / "h"), commits=300, snapshot_every=100, merge_count=1000)

    async def main() -> None:
        async with open_repository(hist.repo) as repo:
            plan = await plan_cleanup(repo, 2, 0, NOW * 2)
            assert [s.lsn for s in plan.keep_snapshots] == hist.snapshot_lsns[-2:]
            assert plan.windows_after[0].start_lsn == hist.snapshot_lsns[-2]
        deleted = await backup.cleanup(hist.repo, keep_count=2, keep_days=0, now_ns=NOW * 2)
        assert deleted > 1
        async with open_repository(hist.repo) as repo:
            await repo.sync()
            assert [s.lsn for s in repo.catalog.snapshots()] == hist.snapshot_lsns[-2:]
            assert repo.catalog.segments()[0].last_lsn >= hist.snapshot_lsns[-2]
            lsn = hist.snapshot_lsns[-2] + 7
            await restore(repo, RestoreOptions(target=RestoreTarget(lsn=lsn), dest=str(tmp_path / "r")))
        async with Store(str(tmp_path / "r")) as store:
            assert dict(await store.scan()) == hist.commits[lsn - 1][2]

    trio.run(main)


def flip_middle_byte(path: str) -> None:
    data = bytearray(Path(path).read_bytes())
    data[len(data) // 2] ^= 0x10
    Path(path).write_bytes(bytes(data))


def test_backup_api_mirrors_the_seed(tmp_path: Path) -> None:
    async def main() -> None:
        path = str(tmp_path / "backups")
        async with Store(str(tmp_path / "data")) as store:
            for i in range(50):
                await store.put(b"k%02d" % i, b"v" * i)
            first = await backup.create(path, data=store)
            await store.delete(b"k00")
            plain = await backup.create(path, data=store, compress=False, include_metadata=False)
        assert (first.lsn, first.entry_count) == (50, 50)
        assert (plain.lsn, plain.entry_count) == (51, 49)
        assert "host" in first.metadata
        assert "host" not in plain.metadata
        assert plain.size_bytes > first.size_bytes  # uncompressed
        listed = await backup.list(path)
        assert [(b.lsn, b.entry_count, b.size_bytes) for b in listed] == [
            (first.lsn, 50, first.size_bytes), (plain.lsn, 49, plain.size_bytes)]
        for b in listed:
            assert (await backup.verify(b.path)).valid
        result = await backup.restore(plain.path, dest=str(tmp_path / "r"))
        assert result.keys == 49
        async with Store(str(tmp_path / "r")) as store:
            assert await store.get(b"k00") is None
            assert await store.get(b"k07") == b"v" * 7
        flip_middle_byte(first.path)
        bad = await backup.verify(first.path)
        assert not bad.valid
        assert bad.findings[0].file == first.path
        assert await backup.cleanup(path, keep_count=1, keep_days=0, dry_run=True) >= 1

    trio.run(main)
