"""What `pitr cleanup` deletes beside the retention rule's snapshots and log, and what it may not yet.

A write-once repository leaves two kinds of files for cleanup alone to remove:

- superseded segments: the inputs of a merge, covered by the merged segment
  (deleted only once the covering segment is indexed, so a merge whose output
  is unreadable keeps its inputs), and the older generations of a segment
  `pitr repair` republished (deleted once the newest generation is indexed);
- superseded snapshots: the older generations of a snapshot `pitr repair`
  republished (deleted once the newest is indexed);
- watermark objects: all but the newest `KEEP_WATERMARKS` (and never the one
  readers use);
- signed checkpoints (`checkpoints/<LSN>.ckpt`) of LSNs before the oldest
  restorable point, all but the newest `KEEP_CHECKPOINTS` (never the newest):
  they vouch for history the repository no longer holds. A witness's copies
  are never touched.

A file under retention (S3 Object Lock) cannot be deleted before its date: it
is reported with the time remaining and left, and cleanup does not fail on it.
The files that move the start of the history go together (`history_group`):
while one is retained, none of them is deleted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pitr.catalog.entries import SegmentEntry, SnapshotEntry
from pitr.repo import layout, watermarks
from pitr.repo.checkpoints import PREFIX as CHECKPOINTS
from pitr.repo.checkpoints import parse_checkpoint_name
from pitr.repo.live import live_segments, live_snapshots
from pitr.repo.repository import Repository
from pitr.storage.base import ObjectInfo
from segments import parse_segment_name, parse_snapshot_name
from segments.naming import base_name

KEEP_CHECKPOINTS = 16


@dataclass(frozen=True, slots=True)
class Locked:
    """An object cleanup would delete that is retained (Object Lock) until `until_ns`."""

    name: str
    until_ns: int

    def remaining_s(self, now_ns: int) -> float:
        return max(0.0, (self.until_ns - now_ns) / 1e9)


async def superseded_segments(repo: Repository) -> list[ObjectInfo]:
    """Segment objects covered by another segment the catalog indexed: a merged one, or a newer repair
    generation of the same range (call after `repo.sync()`)."""
    listed = {i.name[len(layout.SEGMENTS):]: i for i in await repo.storage.list(layout.SEGMENTS)}
    _keep, superseded = live_segments(listed)
    indexed = [(s.first_lsn, s.last_lsn, s.name) for s in repo.catalog.segments()]
    out = []
    for name in superseded:
        first, last = parse_segment_name(name) or (0, -1)
        if any(f <= first and last <= lst and other != name for f, lst, other in indexed):
            out.append(listed[name])
    return sorted(out, key=lambda i: i.name)


async def superseded_snapshots(repo: Repository) -> list[ObjectInfo]:
    """Snapshot objects a newer repair generation of the same snapshot supersedes, once that one is
    indexed (call after `repo.sync()`)."""
    listed = {i.name[len(layout.SNAPSHOTS):]: i for i in await repo.storage.list(layout.SNAPSHOTS)}
    _keep, superseded = live_snapshots(listed)
    indexed = {base_name(s.name) for s in repo.catalog.snapshots()}
    return sorted((listed[n] for n in superseded if base_name(n) in indexed), key=lambda i: i.name)


async def old_watermarks(repo: Repository) -> list[ObjectInfo]:
    """Watermark objects beyond the newest `KEEP_WATERMARKS`, never the one readers use now."""
    listed = {i.name: i for i in await repo.storage.list(watermarks.PREFIX)}
    current = await repo.read_watermark()
    used = None if current is None else watermarks.object_name(current.lsn, current.complete_through_ns)
    return [listed[n] for n in watermarks.cleanup_victims(list(listed)) if n != used]


async def old_checkpoints(repo: Repository, floor: int | None, keep: int = KEEP_CHECKPOINTS) -> list[ObjectInfo]:
    """The repository's checkpoints of LSNs before `floor` (the oldest restorable LSN after cleanup; None:
    nothing is restorable, so none), beyond the newest `keep` (at least 1: never the newest)."""
    if floor is None:
        return []
    named = sorted((lsn, i.name, i) for i in await repo.storage.list(CHECKPOINTS)
                   if (lsn := parse_checkpoint_name(i.name)) is not None)
    spared = max(1, keep)
    return [info for lsn, _name, info in named[:-spared] if lsn < floor]


async def retention_of(repo: Repository, names: list[str], now_ns: int | None = None) -> dict[str, Locked]:
    """The objects among `names` still under retention at `now_ns` (the wall clock by default)."""
    now = time.time_ns() if now_ns is None else now_ns
    locked = {}
    for name in names:
        until = await repo.storage.retained_until(name)
        if until is not None and until > now:
            locked[name] = Locked(name, until)
    return locked


def history_group(drop: list[SnapshotEntry], doomed: list[SegmentEntry], superseded: list[ObjectInfo],
                  floor: int | None) -> list[str]:
    """The objects whose deletion moves the start of the history (the rule's snapshots and log, and the
    superseded segments before the oldest kept snapshot `floor`): deleted all together or not at all.

    Deleting part of them would leave the log starting at no snapshot (a hole at its start), or bring a
    merge's input back to life without the segments after it; so while one of them is retained, none goes.
    """
    names = [layout.snapshot_object(s.name) for s in drop] + [layout.segment_object(s.name) for s in doomed]
    if floor is not None:
        for info in superseded:  # a repair's older generation goes with the newest: never left to come back
            segment = info.name.startswith(layout.SEGMENTS)
            parsed = parse_segment_name(info.name[len(layout.SEGMENTS):]) if segment else None
            lsn = None if segment else parse_snapshot_name(info.name[len(layout.SNAPSHOTS):])
            if (parsed is not None and parsed[1] < floor) or (lsn is not None and lsn < floor):
                names.append(info.name)
    return names
