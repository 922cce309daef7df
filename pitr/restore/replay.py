"""Replaying the log after the base: each block read, decompressed and checked once, then folded.

A read-ahead thread (`prefetched`) reads runs of blocks and, when the restore verifies, hashes
every byte of each segment file and each piece's records as they pass (`checked_runs`); the
replay loop checks every record of every block it is handed (`replay_block`: CRC-32C, dense
LSNs, increasing commit times, known types, well-formed operations) and folds the records
between the base and the target into a key -> change map. Verification is the reading itself:
a damaged byte anywhere in a planned segment raises CorruptData naming the file, the offset and
the LSN, and the caller publishes nothing.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator

from pitr.errors import CorruptData, to_corrupt
from pitr.restore.plan import RestorePlan
from pitr.restore.prefetch import prefetched
from segments import CorruptFile
from segments.block_replay import replay_block
from segments.block_seal import SegmentKeys
from segments.checked_runs import BlockRun, checked_runs
from segments.fold import Change
from segments.segment_format import BlockEntry
from segments.segment_reader import SegmentReader
from segments.source import RangeSource

Progress = Callable[[str, int, int], None]
Spill = Callable[[dict[bytes, Change], int, int], None]  # (changes, applied LSN, its commit time)


def replay_log(plan: RestorePlan, segments: list[RangeSource], *, verify: bool, max_changes: int,
               spill: Spill, progress: Progress | None = None, keys: SegmentKeys | None = None
               ) -> dict[bytes, Change]:
    """Fold the log from the base (exclusive) to the target LSN; returns the changes not yet spilled.

    With `verify`, every block of every planned segment is checked and every digest of its file,
    also the blocks before the base and past the target. When the map reaches `max_changes`
    it is handed to `spill` and a new one started.
    """
    start, target = plan.base.lsn + 1, plan.target_lsn
    changes: dict[bytes, Change] = {}
    next_lsn = start  # the first LSN not yet folded
    total = plan.commits_to_replay
    with prefetched(_runs(plan, segments, verify, keys), depth=2) as runs:
        prev_ts = 0
        for run in runs:
            seg = run.segment
            meta = seg.meta
            if run.opening:
                prev_ts = meta.index[run.first].first_ts_ns - 1
                if meta.first_lsn > next_lsn and next_lsn <= target:
                    raise CorruptData(f"the log to replay has a gap: LSN {next_lsn}..{meta.first_lsn - 1} is in "
                                      "no planned segment", path=meta.name, lsn=next_lsn,
                                      hint="run pitr verify; pitr timeline shows the holes")
            fold_from = next_lsn
            for k, raw in enumerate(run.blocks):
                i = run.first + k
                entry = meta.index[i]
                try:
                    count, first_ts, prev_ts, _ends = replay_block(raw, changes, entry.first_lsn, prev_ts,
                                                                   fold_from, target, False)
                except CorruptFile as exc:
                    raise CorruptData(f"{meta.name}: block {i} ({_lsns(entry)}): {exc.reason}",
                                      path=meta.name, offset=entry.offset,
                                      lsn=exc.lsn if exc.lsn is not None else entry.first_lsn,
                                      hint=exc.hint or "run pitr verify on the repository") from exc
                if count != entry.record_count or first_ts != entry.first_ts_ns:
                    raise CorruptData(f"{meta.name}: block {i} ({_lsns(entry)}): its records do not match the "
                                      "block index", path=meta.name,
                                      offset=entry.offset, lsn=entry.first_lsn,
                                      hint="run pitr verify on the repository")
                next_lsn = max(next_lsn, min(entry.first_lsn + count, target + 1))
            if verify and run.last and prev_ts != meta.trailer.last_ts_ns:
                raise CorruptData("last commit time does not match the trailer", path=meta.name,
                                  lsn=meta.trailer.last_lsn, hint="run pitr verify on the repository")
            if len(changes) >= max_changes:
                spill(changes, next_lsn - 1, prev_ts)  # an interim checkpoint: the build ends at the target
                changes = {}
            if progress is not None:
                progress("replay", next_lsn - start, total)
    if next_lsn - 1 != target:
        raise CorruptData(f"replay ended at LSN {next_lsn - 1}, before the target LSN {target}",
                          lsn=next_lsn, hint="run pitr verify on the repository")
    return changes


def _lsns(entry: BlockEntry) -> str:
    return f"LSN {entry.first_lsn}..{entry.first_lsn + entry.record_count - 1}"


def first_block(seg: SegmentReader, lsn: int) -> int:
    """The block of `seg` holding `lsn`, or its first block when `lsn` precedes the segment."""
    return seg.block_for_lsn(max(lsn, seg.meta.first_lsn))


def _runs(plan: RestorePlan, segments: list[RangeSource], verify: bool, keys: SegmentKeys | None
          ) -> Iterator[BlockRun]:
    """Every run of blocks the replay reads, in LSN order (produced in the read-ahead thread)."""
    start = plan.base.lsn + 1
    for source in segments:
        try:
            seg = SegmentReader(source, keys=keys)  # keys: an encrypted repository's
        except CorruptFile as exc:
            raise to_corrupt(exc, source.name) from exc
        if seg.meta.first_lsn > plan.target_lsn:
            return
        if seg.meta.last_lsn < start and not verify:
            continue
        first = first_block(seg, start) if seg.meta.last_lsn >= start else 0
        stop = bisect.bisect_right([e.first_lsn for e in seg.meta.index], plan.target_lsn, lo=first)
        try:
            yield from checked_runs(seg, first, stop, verify=verify)
        except CorruptFile as exc:
            raise _named_block(seg, exc) from exc


def _named_block(seg: SegmentReader, exc: CorruptFile) -> CorruptData:
    """A reading error with the block it is in and that block's LSN range named, when known."""
    meta = seg.meta
    at = next((i for i, e in enumerate(meta.index) if e.offset == exc.offset), None)
    if at is None:
        return to_corrupt(exc, meta.name)
    entry = meta.index[at]
    return CorruptData(f"{meta.name}: block {at} ({_lsns(entry)}): {exc.reason}", path=meta.name,
                       offset=exc.offset, lsn=exc.lsn, hint=exc.hint or "run pitr verify on the repository")
