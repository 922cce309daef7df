"""Time travel: the value of one key at one moment, with restore semantics, without restoring.

The answer is what a restore to that moment would hold for the key: the newest
change with commit time <= T (< T when exclusive), absent if it is a delete or
a put that has expired by T (T - 1 when exclusive). It costs a few O(log n)
catalog lookups and one block read:

1. the timeline gives the window holding T and the newest base at or before
   it (a snapshot, or the empty state before the first LSN), exactly as a
   restore chooses them; a T outside every window raises OutsideWindow;
2. the key index gives the newest version at or before T; if it is after the
   base, the log holds it and one block read returns its value;
3. otherwise the key did not change between the base and T, so the base
   decides: the empty start of history (absent), or one block of the base
   snapshot. (A version at or before the base is still read from the log,
   for its exact LSN and time, when the log reaches the base unbroken.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio

from pitr.audit.history import KeyChange, change_of
from pitr.audit.holes import Hole, archive_end_ns, find_holes, history_gap, holes_at
from pitr.audit.records import RecordReader, last_op_on
from pitr.audit.window import Moment, describe_moment, locate
from pitr.errors import CorruptData, OutsideWindow, to_corrupt
from pitr.repo import layout
from pitr.repo.repository import Repository
from pitr.timeline import Timeline, build_timeline
from segments import SegmentsError
from segments.snapshot import SnapshotReader


class ValueReader:
    """Point lookups of keys at moments, sharing one timeline, block cache and open snapshots.

    Open it with `open_value_reader`; `value_at` opens one per call.
    """

    def __init__(self, repo: Repository, timeline: Timeline, holes: Sequence[Hole] = ()) -> None:
        self.repo = repo
        self.timeline = timeline
        self.holes = list(holes)
        self.records = RecordReader(repo)
        self._snapshots: dict[str, SnapshotReader] = {}

    def moment(self, ts_ns: int, *, exclusive: bool = False) -> Moment:
        """Resolve a time against the timeline.

        Raises HistoryGap, naming the hole, when the state at the moment
        depends on commits the archive lacks; OutsideWindow for any other
        moment no restore could reach.
        """
        try:
            return locate(self.timeline, ts_ns, exclusive=exclusive)
        except OutsideWindow as exc:
            holes = holes_at(self.holes, ts_ns - 1 if exclusive else ts_ns, archive_end_ns(self.repo.catalog))
            if holes:
                raise history_gap(f"the state {describe_moment(ts_ns, exclusive)}", holes, can_allow=False) from exc
            raise

    async def value_at(self, key: bytes, moment: Moment) -> KeyChange | None:
        """The change that gives `key` its value at `moment`, or None when absent there."""
        change = await self.newest_change(key, moment)
        return change if change is not None and change.live_at(moment.cutoff_ns) else None

    async def newest_change(self, key: bytes, moment: Moment) -> KeyChange | None:
        """The newest change to `key` included at `moment` (a delete or expired put included)."""
        catalog = self.repo.catalog
        base, window = moment.base, moment.window
        skip = 0
        while True:
            version = catalog.key_version_at(key, moment.ts_ns, inclusive=not moment.exclusive, skip=skip)
            if version is None:
                break
            if version.lsn > window.end_lsn:
                skip += 1  # not part of this window's history (cannot happen in a consistent catalog)
                continue
            if version.lsn <= base.lsn and not self._log_unbroken(version.lsn, base.lsn):
                break
            record = await self.records.record_at(version.lsn)
            if record is None:
                if version.lsn > base.lsn:
                    raise CorruptData(f"{self.repo.url}: LSN {version.lsn} is inside the recoverable window "
                                      "but no indexed segment holds it", lsn=version.lsn,
                                      hint="rebuild the catalog with `pitr reindex`")
                break  # the log before the base is gone: the base snapshot decides
            op = last_op_on(record, key)
            if op is not None:
                return change_of(record, op)
            skip += 1  # another key with the same digest
        return await self._from_base(key, moment)

    def _log_unbroken(self, from_lsn: int, to_lsn: int) -> bool:
        """Whether no gap in the archived log lies between two LSNs."""
        return not any(from_lsn < first <= to_lsn for first, _last in self.timeline.gaps)

    async def _from_base(self, key: bytes, moment: Moment) -> KeyChange | None:
        base = moment.base
        if base.snapshot is None:
            return None
        reader = await self.snapshot(base.snapshot)
        try:
            found = await anyio.to_thread.run_sync(reader.get, key)
        except SegmentsError as exc:
            raise to_corrupt(exc) from exc
        if found is None:
            return None
        value, expires_at_ns = found
        return KeyChange(base.lsn, base.ts_ns, "put", value, expires_at_ns, base.snapshot)

    async def snapshot(self, name: str) -> SnapshotReader:
        """An open reader of a published snapshot, kept until `close`."""
        reader = self._snapshots.get(name)
        if reader is None:
            source = await self.repo.open_source(layout.snapshot_object(name))
            try:
                reader = await anyio.to_thread.run_sync(
                    lambda: SnapshotReader(source, keys=self.repo.segment_keys))
            except SegmentsError as exc:
                source.close()
                raise to_corrupt(exc) from exc
            self._snapshots[name] = reader
        return reader

    def close(self) -> None:
        """Close the files this reader keeps open."""
        self.records.close()
        for reader in self._snapshots.values():
            reader.close()
        self._snapshots.clear()


@asynccontextmanager
async def open_value_reader(repo: Repository, timeline: Timeline | None = None,
                            holes: Sequence[Hole] | None = None) -> AsyncIterator[ValueReader]:
    """A ValueReader over the repository's current timeline and holes (or the ones given)."""
    ident = await repo.require_identity()
    if timeline is None:
        timeline = build_timeline(repo.catalog, ident)
    if holes is None:
        holes = find_holes(repo.catalog, ident)
    reader = ValueReader(repo, timeline, holes)
    try:
        yield reader
    finally:
        reader.close()


async def value_at(repo: Repository, key: bytes, ts_ns: int, *, exclusive: bool = False,
                   timeline: Timeline | None = None, holes: Sequence[Hole] | None = None) -> KeyChange | None:
    """The value `key` has at `ts_ns` in a restore to that moment, or None when absent.

    Inclusive (commits with ts <= ts_ns) by default, `exclusive` for ts < ts_ns;
    TTL is judged at the moment (ts_ns - 1 when exclusive). Raises
    OutsideWindow, with the windows, when no restore could reach the moment,
    and HistoryGap, with the holes, when the moment depends on commits the
    archive lacks (a hole before it with no snapshot between).
    Pass `timeline` (from `pitr.timeline.build_timeline`) to save rebuilding
    it when asking many questions of an unchanging catalog.
    """
    async with open_value_reader(repo, timeline, holes) as reader:
        return await reader.value_at(key, reader.moment(ts_ns, exclusive=exclusive))
