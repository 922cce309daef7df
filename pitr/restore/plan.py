"""Planning a restore from the catalog: the base, the segments after it, the exact target LSN."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from pitr.catalog.entries import SegmentEntry, SnapshotEntry
from pitr.errors import HistoryGap, InvalidArgument, OutsideWindow, Window
from pitr.repo import layout
from pitr.repo.identity import RepoIdentity
from pitr.repo.repository import Repository
from pitr.restore.options import MAX_TS, RestoreTarget
from pitr.timefmt import format_time
from pitr.timeline import Base, Timeline, build_timeline
from segments import record as rec


@dataclass(frozen=True, slots=True)
class SkippedBase:
    """A base a restore could not use, and why."""

    snapshot: str
    lsn: int
    reason: str


@dataclass(frozen=True, slots=True)
class RestorePlan:
    """What a restore will read and where it will stop."""

    target: RestoreTarget
    window: Window
    base: Base
    snapshot: SnapshotEntry | None
    segments: list[SegmentEntry]
    target_lsn: int
    target_ts_ns: int  # commit time of target_lsn (the base's time if nothing is replayed)
    cutoff_ns: int  # TTL is judged at this moment: keys expiring at or before it are dropped
    identity: RepoIdentity
    alternatives: tuple[Base, ...] = ()  # older bases a restore may fall back to, newest first
    skipped: tuple[SkippedBase, ...] = ()  # bases tried and found unusable
    notes: tuple[str, ...] = ()  # what the plan had to decide that the user should know

    @property
    def commits_to_replay(self) -> int:
        return self.target_lsn - self.base.lsn

    @property
    def bytes_to_read(self) -> int:
        return sum(s.size for s in self.segments) + (self.snapshot.size if self.snapshot else 0)


def describe_windows(windows: list[Window]) -> str:
    if not windows:
        return "the repository has no recoverable window"
    return "recoverable: " + "; ".join(
        f"{format_time(w.start_ns)} .. {format_time(w.end_ns)} (LSN {w.start_lsn}..{w.end_lsn})"
        for w in windows)


async def lsn_at_time(repo: Repository, ts_ns: int, inclusive: bool) -> int | None:
    """The last LSN whose commit time is <= ts_ns (< when exclusive); reads at most one block."""
    bound = ts_ns if inclusive else ts_ns - 1
    block = repo.catalog.block_for_time(bound)
    if block is None:
        return None
    segment = repo.catalog.segment_containing(block.first_lsn)
    if segment is None:
        return None
    if bound >= segment.last_ts_ns:
        return segment.last_lsn
    raw = await repo.read_block(segment, block)
    last = None
    for span in rec.scan_spans(raw):
        if span.ts_ns > bound:
            break
        last = span.lsn
    return last if last is not None else block.first_lsn - 1


MAX_CLOCK_SKEW_NS = 60 * 1_000_000_000  # how far past the present an archive's completeness promise may reach


def _last_commit_ns(repo: Repository, w: Window) -> int:
    """Commit time of a window's last LSN (its start when the catalog cannot say)."""
    last = repo.catalog.segment_containing(w.end_lsn) if w.end_lsn > w.start_lsn else None
    return last.last_ts_ns if last is not None and last.last_lsn == w.end_lsn else w.start_ns


def _clamp_to_present(repo: Repository, windows: list[Window], now_ns: int) -> tuple[list[Window], list[str]]:
    """No archive knows the future: a window whose known-complete end lies more than
    MAX_CLOCK_SKEW_NS beyond the present ends at the present instead. The present is this host's
    clock, or the newest commit time in the archive when that is later (a writer whose clock runs
    ahead); a window never ends before its last commit."""
    lasts = [_last_commit_ns(repo, w) for w in windows]
    present = max([now_ns, *lasts])
    out, notes = [], []
    for w, last in zip(windows, lasts, strict=True):
        if w.end_ns <= present + MAX_CLOCK_SKEW_NS:
            out.append(w)
            continue
        end = max(last, present, w.start_ns)
        notes.append(f"the archive claims to be complete through {format_time(w.end_ns)} ({w.end_ns} ns), "
                     f"beyond the present ({format_time(present)}); taken as complete only through "
                     f"{format_time(end)}")
        out.append(Window(w.start_ns, end, w.start_lsn, w.end_lsn))
    return out, notes


async def plan_restore(repo: Repository, target: RestoreTarget, timeline: Timeline | None = None, *,
                       base: str | None = None, now_ns: int | None = None) -> RestorePlan:
    """Choose the newest base at or before the target (or the snapshot named `base`) and the segments
    to replay after it; older bases the restore may fall back to are kept in `alternatives`."""
    ident = await repo.require_identity()
    timeline = timeline or build_timeline(repo.catalog, ident)
    windows, notes = _clamp_to_present(repo, timeline.windows, time.time_ns() if now_ns is None else now_ns)
    if not windows:
        if timeline.holes:  # say what made the history unrestorable, not only that it is
            named = "; ".join(f"LSN {h.first_lsn}..{h.last_lsn}: {h.reason}" for h in timeline.holes)
            raise HistoryGap(f"{repo.url}: nothing to restore: no base reaches past the holes in the "
                             f"archived history ({named})", timeline.holes,
                             hint="bring back the missing or damaged segments (from another repository); "
                                  "`pitr verify` lists every damaged file")
        raise OutsideWindow(f"{repo.url}: nothing to restore; {describe_windows(windows)}", windows)
    if target.latest:
        window = windows[-1]
        target_lsn, cutoff = window.end_lsn, window.end_ns
        after = [h for h in timeline.holes if h.last_lsn > window.end_lsn]
        if after:  # the newest commits are unreadable: "latest" would silently be an older point
            named = "; ".join(f"LSN {h.first_lsn}..{h.last_lsn}: {h.reason}" for h in after)
            raise HistoryGap(
                f"{repo.url}: the newest history cannot be read ({named}); the latest restorable point is "
                f"LSN {window.end_lsn} at {format_time(window.end_ns)}", after,
                hint=f"to restore that point, pass --lsn {window.end_lsn}; or bring back the missing or "
                     "damaged segments (from another repository), then restore --latest")
    elif target.lsn is not None:
        lsn = target.lsn
        found_window = next((w for w in reversed(windows) if w.start_lsn <= lsn <= w.end_lsn), None)
        if found_window is None:
            inside = [h for h in timeline.holes if h.first_lsn <= lsn <= h.last_lsn]
            if inside:  # not "outside the archive": the archive had it, and lost or damaged it
                hole = inside[0]
                raise HistoryGap(f"LSN {lsn} is in a hole of the archived history (LSN {hole.first_lsn}.."
                                 f"{hole.last_lsn}: {hole.reason}); {describe_windows(windows)}", inside,
                                 hint="restore to a point inside a window above, or bring back the missing or "
                                      "damaged segments (from another repository)")
            raise OutsideWindow(f"LSN {lsn} is outside the archive; {describe_windows(windows)}", windows)
        window, target_lsn, cutoff = found_window, lsn, -1
    else:
        assert target.time_ns is not None
        t = target.time_ns
        found_window = next((w for w in reversed(windows) if _holds(w, t, target.exclusive)), None)
        if found_window is None:
            raise OutsideWindow(f"{target.describe()} is outside the archive; {describe_windows(windows)}",
                                windows)
        window = found_window
        cutoff = t - 1 if target.exclusive else t
        found = await lsn_at_time(repo, t, not target.exclusive)
        target_lsn = window.start_lsn if found is None else max(window.start_lsn, min(found, window.end_lsn))
    bases = [b for b in timeline.bases if window.start_lsn <= b.lsn <= target_lsn]
    if target.time_ns is not None:
        bases = [b for b in bases if (b.ts_ns < target.time_ns if target.exclusive
                                       else b.ts_ns <= target.time_ns)]
    if base is not None:
        bases = _named_base(base, bases, timeline, target)
    if not bases:
        raise OutsideWindow(f"no base at or before {target.describe()}; {describe_windows(windows)}", windows)
    plan = RestorePlan(target, window, bases[-1], None, [], target_lsn, bases[-1].ts_ns, cutoff, ident,
                       alternatives=tuple(reversed(bases[:-1])), notes=tuple(notes))
    return await with_base(repo, plan, bases[-1])


def _named_base(name: str, bases: list[Base], timeline: Timeline, target: RestoreTarget) -> list[Base]:
    """The one base `name` names, or InvalidArgument listing the snapshots that could serve."""
    wanted = name.removeprefix(layout.SNAPSHOTS)
    chosen = [b for b in bases if b.snapshot == wanted]
    if chosen:
        return chosen
    choices = ", ".join(b.snapshot for b in bases if b.snapshot is not None) or "none"
    known = any(b.snapshot == wanted for b in timeline.bases) or wanted in timeline.unbound_snapshots
    why = "cannot serve" if known else "is not a snapshot in the repository"
    raise InvalidArgument(f"--base {name} {why} for a restore to {target.describe()} (a base must be at or "
                          f"before the target, with the log from it to the target); choices: {choices}")


async def with_base(repo: Repository, plan: RestorePlan, base: Base) -> RestorePlan:
    """`plan` restoring from `base` instead: its snapshot and the segments from it to the target."""
    target_lsn = plan.target_lsn
    snapshot = next((s for s in repo.catalog.snapshots() if s.name == base.snapshot), None)
    segments = [s for s in repo.catalog.segments_from(base.lsn + 1)
                if s.first_lsn <= target_lsn and s.last_lsn > base.lsn] if target_lsn > base.lsn else []
    target_ts = base.ts_ns
    if segments:
        block = repo.catalog.block_for_lsn(target_lsn)
        last_seg = segments[-1]
        target_ts = last_seg.last_ts_ns if target_lsn == last_seg.last_lsn else \
            await _ts_of(repo, last_seg, block, target_lsn)
    cutoff = plan.cutoff_ns if plan.target.lsn is None else target_ts
    alternatives = plan.alternatives[plan.alternatives.index(base) + 1:] if base in plan.alternatives \
        else plan.alternatives
    return replace(plan, base=base, snapshot=snapshot, segments=segments, target_ts_ns=target_ts,
                   cutoff_ns=min(cutoff, MAX_TS), alternatives=alternatives)


def _holds(window: Window, t: int, exclusive: bool) -> bool:
    """Whether a time target falls inside a window (exclusive: the state just before t)."""
    if exclusive:
        return window.start_ns < t <= window.end_ns + 1
    return window.start_ns <= t <= window.end_ns


async def _ts_of(repo: Repository, segment: SegmentEntry, block: object, lsn: int) -> int:
    from pitr.catalog.entries import BlockRow

    assert isinstance(block, BlockRow)
    raw = await repo.read_block(segment, block)
    for span in rec.scan_spans(raw):
        if span.lsn == lsn:
            return span.ts_ns
    raise OutsideWindow(f"LSN {lsn} not found in {segment.name}", [])
