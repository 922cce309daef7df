"""Retention: which snapshots and segments `cleanup` keeps.

Rule (DESIGN.md): a snapshot is kept if it is among the `keep_count` newest OR
younger than `keep_days` days (by its commit time; `keep_days=0` turns the age
rule off, so a snapshot timed after a clock that stepped back is not "young");
the newest snapshot is always kept. Every segment that a kept snapshot's restores need is kept: all
segments from the one that ends at the oldest kept snapshot's LSN (so its
chain binding stays verifiable) onwards. With no snapshot at all nothing is
deleted, because the start of history is then the only base.

Cleanup is the only thing in pitr that deletes (a write-once repository): it
also removes the segments merges superseded, all but the newest watermark
objects, and the signed checkpoints before the oldest restorable point (all but
the newest 16; `pitr.retention_objects`); what S3 Object Lock still retains is
reported with the time left and kept (`CleanupPlan.locked`), never an error.
The snapshots and log that move the start of the history are deleted together
or, while one of them is retained, not at all (`CleanupPlan.held_back`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from pitr.catalog.entries import SegmentEntry, SnapshotEntry
from pitr.errors import CorruptData, InvalidArgument, Window
from pitr.repo import layout
from pitr.repo.indexing import index_segment
from pitr.repo.repository import Repository
from pitr.retention_objects import (
    Locked,
    history_group,
    old_checkpoints,
    old_watermarks,
    retention_of,
    superseded_segments,
    superseded_snapshots,
)
from pitr.storage.base import ObjectInfo
from pitr.timeline import build_timeline
from pitr.verify.checks import check_snapshot

DAY_NS = 86_400 * 1_000_000_000


@dataclass(frozen=True, slots=True)
class CleanupPlan:
    keep_snapshots: list[SnapshotEntry]
    delete_snapshots: list[SnapshotEntry]
    delete_segments: list[SegmentEntry]
    windows_before: list[Window]
    windows_after: list[Window]
    delete_superseded: list[ObjectInfo] = field(default_factory=list)  # merge inputs; a repair's older copies
    delete_watermarks: list[ObjectInfo] = field(default_factory=list)  # all but the newest 16
    locked: list[Locked] = field(default_factory=list)  # what the rule would delete, retained until later
    held_back: list[str] = field(default_factory=list)  # not retained, but kept with retained ones (see below)
    delete_checkpoints: list[ObjectInfo] = field(default_factory=list)  # before the oldest restorable point

    @property
    def history_count(self) -> int:
        """Snapshots and log segments the plan deletes (what narrows the restorable windows)."""
        return len(self.delete_snapshots) + len(self.delete_segments)

    @property
    def deleted_count(self) -> int:
        return (self.history_count + len(self.delete_superseded) + len(self.delete_watermarks)
                + len(self.delete_checkpoints))

    @property
    def bytes_freed(self) -> int:
        return (sum(s.size for s in self.delete_snapshots) + sum(s.size for s in self.delete_segments)
                + sum(i.size for i in self.delete_superseded) + sum(i.size for i in self.delete_watermarks)
                + sum(i.size for i in self.delete_checkpoints))


def choose(snapshots: list[SnapshotEntry], segments: list[SegmentEntry], keep_count: int, keep_days: float,
           now_ns: int) -> tuple[list[SnapshotEntry], list[SnapshotEntry], list[SegmentEntry]]:
    """(kept snapshots, deleted snapshots, deleted segments) under the retention rule."""
    if keep_count < 0 or keep_days < 0:
        raise InvalidArgument("keep_count and keep_days must not be negative")
    if not snapshots:
        return [], [], []
    ordered = sorted(snapshots, key=lambda s: s.lsn)
    newest = ordered[-keep_count:] if keep_count else []
    cutoff = now_ns - int(keep_days * DAY_NS)
    by_age = keep_days > 0  # keep_days=0 keeps nothing for its age, even a snapshot timed after `now`
    keep = [s for s in ordered if s in newest or (by_age and s.ts_ns > cutoff) or s is ordered[-1]]
    drop = [s for s in ordered if s not in keep]
    oldest = keep[0].lsn
    doomed = [seg for seg in segments if seg.last_lsn < oldest]
    return keep, drop, doomed


async def plan_cleanup(repo: Repository, keep_count: int, keep_days: float, now_ns: int) -> CleanupPlan:
    ident = await repo.require_identity()
    await repo.sync()
    keep, drop, doomed = choose(repo.catalog.snapshots(), repo.catalog.segments(), keep_count, keep_days,
                                now_ns)
    superseded = await superseded_segments(repo) + await superseded_snapshots(repo)
    marks = await old_watermarks(repo)
    group = history_group(drop, doomed, superseded, min((s.lsn for s in keep), default=None))
    names = group + [i.name for i in superseded + marks if i.name not in group]
    locked = await retention_of(repo, names)  # Object Lock: not deletable yet, reported, left
    held_back: list[str] = []
    if any(n in locked for n in group):  # the start of the history moves all at once, or not yet
        held_back = [n for n in group if n not in locked]
        drop, doomed = [], []
    gone = set(locked) | set(held_back)
    before = build_timeline(repo.catalog, ident).windows
    excluded = frozenset([s.name for s in drop] + [s.name for s in doomed])
    after = build_timeline(repo.catalog, ident, excluded).windows
    checkpoints = await old_checkpoints(repo, min((w.start_lsn for w in after), default=None))
    locked |= await retention_of(repo, [i.name for i in checkpoints])
    return CleanupPlan(keep, drop, doomed, before, after, [i for i in superseded if i.name not in gone],
                       [i for i in marks if i.name not in gone], sorted(locked.values(), key=lambda x: x.name),
                       held_back, [i for i in checkpoints if i.name not in locked])


async def check_oldest_kept(repo: Repository, plan: CleanupPlan) -> None:
    """Refuse a cleanup that would leave a damaged snapshot as the oldest base.

    Everything older than the oldest kept snapshot goes; if that snapshot does
    not verify, the history it replaces is the only way to restore that far
    back (and perhaps at all), so nothing is deleted.
    """
    if not plan.history_count or not plan.keep_snapshots:
        return
    oldest = min(plan.keep_snapshots, key=lambda s: s.lsn)
    name = layout.snapshot_object(oldest.name)
    source = await repo.open_source(name, fresh=True)
    try:
        finding = await anyio.to_thread.run_sync(lambda: check_snapshot(oldest.name, source, full=True))
    finally:
        source.close()
    if finding is not None:
        raise CorruptData(f"{repo.url}: cleanup would make the damaged snapshot {oldest.name} the oldest base "
                          f"({finding.message}); nothing was deleted", path=name, offset=finding.offset,
                          hint="run pitr verify; take a new snapshot (pitr snapshot), then clean up again")
    if plan.windows_before and (not plan.windows_after or
                                plan.windows_after[-1].end_lsn < plan.windows_before[-1].end_lsn):
        raise CorruptData(f"{repo.url}: cleanup would leave the newest point (LSN "
                          f"{plan.windows_before[-1].end_lsn}) unrestorable; nothing was deleted", path=name,
                          hint="run pitr verify; take a new snapshot (pitr snapshot), then clean up again")


async def run_cleanup(repo: Repository, plan: CleanupPlan,
                      progress: Callable[[str, int, int], None] | None = None) -> int:
    """Delete what the plan names: superseded files first, then snapshots, then segments oldest first, then
    old watermarks and old checkpoints; returns the count.

    Nothing is deleted unless the oldest snapshot kept verifies in full and the
    newest restorable point stays restorable (`check_oldest_kept`).
    """
    await check_oldest_kept(repo, plan)
    total = plan.deleted_count
    done = 0
    # superseded files first: each has its live successor now, so an interrupted cleanup never leaves one
    # without it (an older repair generation would become the live copy again)
    for info in plan.delete_superseded:  # not in the catalog
        await repo.delete(info.name)
        done += 1
        if progress:
            progress("cleanup", done, total)
    for snap in plan.delete_snapshots:
        await repo.delete(layout.snapshot_object(snap.name))
        repo.catalog.remove_snapshot(snap.lsn)
        done += 1
        if progress:
            progress("cleanup", done, total)
    for seg in plan.delete_segments:
        source = await repo.open_source(layout.segment_object(seg.name))
        try:
            _entry, _blocks, rows = await anyio.to_thread.run_sync(index_segment, seg.name, source)
        finally:
            source.close()
        await anyio.to_thread.run_sync(repo.catalog.remove_segment, seg.first_lsn, rows)
        await repo.delete(layout.segment_object(seg.name))
        done += 1
        if progress:
            progress("cleanup", done, total)
    for info in plan.delete_watermarks + plan.delete_checkpoints:  # not in the catalog
        await repo.delete(info.name)
        done += 1
        if progress:
            progress("cleanup", done, total)
    return done
