"""Moments outside the archive, gaps in the log, a base snapshot standing in for deleted segments."""

from __future__ import annotations

from pathlib import Path

import pytest

from pitr.archiver import ArchiveOptions
from pitr.audit import commit_log, diff, history, history_entries, log_entries, value_at
from pitr.errors import Gap, HistoryGap, InvalidArgument, NotARepository, OutsideWindow
from pitr.repo.repository import open_repository
from pitr.timeline import build_timeline
from tests.audit.model import Step, write_history

pytestmark = pytest.mark.anyio

NO_MERGE = ArchiveOptions(interval=3600.0, merge_count=1000)


async def test_a_gap_splits_the_windows_and_the_snapshot_answers_after_it(tmp_path: Path) -> None:
    steps: list[Step] = [
        ("put", b"k1", b"x1", None), ("tick", 10), ("put", b"k2", b"y1", None), ("cycle",),  # LSN 1-2
        ("tick", 10), ("put", b"k1", b"x2", None), ("cycle",),  # LSN 3: its segment will be lost
        ("tick", 10), ("put", b"k3", b"z1", None), ("snapshot",),  # LSN 4, snapshot there
        ("tick", 10), ("put", b"k2", b"y2", None), ("cycle",),  # LSN 5
    ]
    written = await write_history(str(tmp_path), steps, options=NO_MERGE)
    c1, c2, c3, c4, c5 = written.commits
    (gone,) = [p for p in (tmp_path / "repo" / "segments").iterdir() if p.name.startswith("00000000000000000003-")]
    gone.unlink()
    async with open_repository(str(tmp_path / "repo")) as repo:
        await repo.sync()
        timeline = build_timeline(repo.catalog, await repo.require_identity())
        first, second = timeline.windows
        assert (first.end_lsn, second.start_lsn) == (2, 4)

        async def value(key: bytes, ts: int, exclusive: bool = False) -> tuple[bytes | None, int, str | None]:
            got = await value_at(repo, key, ts, exclusive=exclusive)
            assert got is not None
            return got.value, got.lsn, got.snapshot

        snap = timeline.bases[-1].snapshot
        assert await value(b"k1", c2.ts_ns) == (b"x1", 1, None)
        # c3 is in the hole: what k1 held then is unknown, and the refusal names the hole
        with pytest.raises(HistoryGap, match="LSN 3..3") as gap:
            await value_at(repo, b"k1", c3.ts_ns)
        assert gap.value.gaps == [Gap(3, 3)]
        # the key index still names LSN 3, but its segment is gone: the snapshot holds the value
        assert await value(b"k1", c4.ts_ns) == (b"x2", 4, snap)
        # k2's last version (LSN 2) is archived, but the log breaks before the snapshot
        assert await value(b"k2", c4.ts_ns) == (b"y1", 4, snap)
        assert await value(b"k2", c5.ts_ns) == (b"y2", 5, None)
        assert await value(b"k3", c5.ts_ns) == (b"z1", 4, None)
        with pytest.raises(HistoryGap):
            await value_at(repo, b"k1", c4.ts_ns, exclusive=True)  # the state before c4 holds c3, in the hole
        assert await value(b"k1", c4.ts_ns + 1, exclusive=True) == (b"x2", 4, snap)

        # an answer over the hole refuses, naming it; with allow_gaps it is named in place
        for answer in (history(repo, b"k1"), commit_log(repo), commit_log(repo, since_lsn=3),
                       diff(repo, c1.ts_ns, c5.ts_ns)):
            with pytest.raises(HistoryGap, match="LSN 3..3") as gap:
                _ = [c async for c in answer]  # type: ignore[attr-defined]
            assert gap.value.gaps == [Gap(3, 3)]
        assert [c.lsn async for c in history(repo, b"k1", allow_gaps=True)] == [1]
        assert [c.lsn async for c in history(repo, b"k2", since_ns=c4.ts_ns)] == [5]  # after the hole
        assert [c.lsn async for c in history(repo, b"k2", until_ns=c2.ts_ns)] == [2]  # before it
        assert [c.lsn async for c in commit_log(repo, allow_gaps=True)] == [1, 2, 4, 5]
        assert [c.lsn async for c in commit_log(repo, since_lsn=4)] == [4, 5]  # after the hole: no refusal
        assert [c.lsn async for c in commit_log(repo, until_lsn=2)] == [1, 2]
        entries = [e async for e in log_entries(repo)]
        assert [getattr(e, "lsn", e) for e in entries] == [1, 2, Gap(3, 3), 4, 5]
        entries = [e async for e in history_entries(repo, b"k1")]
        assert [getattr(e, "lsn", e) for e in entries] == [1, Gap(3, 3)]
        found = [(d.key, d.kind) async for d in diff(repo, c4.ts_ns, c5.ts_ns)]
        assert found == [(b"k2", "changed")]
        with pytest.raises(InvalidArgument):
            _ = [d async for d in diff(repo, c5.ts_ns, c4.ts_ns)]


async def test_moments_before_and_after_the_archive(tmp_path: Path) -> None:
    steps: list[Step] = [("tick", 100), ("put", b"k", b"v", None), ("tick", 5), ("put", b"k", b"w", None)]
    written = await write_history(str(tmp_path), steps, options=NO_MERGE)
    async with open_repository(str(tmp_path / "repo")) as repo:
        await repo.sync()
        (window,) = build_timeline(repo.catalog, await repo.require_identity()).windows
        assert window.start_ns == written.created_ns
        assert await value_at(repo, b"k", window.start_ns) is None
        for ts, exclusive in ((window.start_ns - 1, False), (window.end_ns + 1, False),
                              (window.start_ns, True), (window.end_ns + 2, True)):
            with pytest.raises(OutsideWindow) as caught:
                await value_at(repo, b"k", ts, exclusive=exclusive)
            assert caught.value.windows == [window]
        latest = await value_at(repo, b"k", window.end_ns)
        assert latest is not None
        assert latest.value == b"w"
        latest = await value_at(repo, b"k", window.end_ns + 1, exclusive=True)
        assert latest is not None
        assert latest.value == b"w"


async def test_a_repository_without_commits(tmp_path: Path) -> None:
    await write_history(str(tmp_path), [("tick", 1)], options=NO_MERGE)
    async with open_repository(str(tmp_path / "repo")) as repo:
        await repo.sync()
        with pytest.raises(OutsideWindow, match="no recoverable window") as caught:
            await value_at(repo, b"k", 1)
        assert caught.value.windows == []
        assert [c async for c in commit_log(repo)] == []
        assert [c async for c in history(repo, b"k")] == []
        with pytest.raises(OutsideWindow):
            _ = [d async for d in diff(repo, 1, 1)]


async def test_not_a_repository(tmp_path: Path) -> None:
    async with open_repository(str(tmp_path / "empty"), create=True) as repo:
        await repo.sync()
        with pytest.raises(NotARepository, match="not a pitr repository"):
            await value_at(repo, b"k", 1)
