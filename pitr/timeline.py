"""The recoverable windows of a repository: from each usable base to where the log is known complete.

A base is a snapshot whose chain digest matches the log at its LSN, or the
start of the history (empty state) when the log starts at the history's first
LSN. From a base, the window extends through consecutive, linked segments; it
ends at a gap, and the last window ends where the archive is known complete
(the watermark, or the last segment's completeness time).
"""

from __future__ import annotations

from dataclasses import dataclass

from pitr.catalog.catalog import Catalog
from pitr.catalog.entries import SegmentEntry
from pitr.errors import Window
from pitr.repo.identity import RepoIdentity


@dataclass(frozen=True, slots=True)
class Base:
    """Where a restore can start: a snapshot, or the empty state before the first LSN."""

    lsn: int
    ts_ns: int
    snapshot: str | None  # snapshot name, None for the start of history


@dataclass(frozen=True, slots=True)
class Timeline:
    windows: list[Window]
    bases: list[Base]
    gaps: list[tuple[int, int]]  # missing LSN ranges, inclusive
    source_gaps: list[tuple[int, int]]  # (LSN, time before) of commits after a loss of source history
    unbound_snapshots: list[str]  # snapshots whose chain digest does not match the log


def _runs(segments: list[SegmentEntry]) -> list[list[SegmentEntry]]:
    runs: list[list[SegmentEntry]] = []
    for seg in segments:
        if runs and seg.first_lsn == runs[-1][-1].last_lsn + 1 and \
                seg.prev_chain_digest == runs[-1][-1].chain_digest:
            runs[-1].append(seg)
        else:
            runs.append([seg])
    return runs


def build_timeline(catalog: Catalog, ident: RepoIdentity, excluded: frozenset[str] = frozenset()) -> Timeline:
    """Compute the windows from the catalog; `excluded` names files known to be broken."""
    segments = [s for s in catalog.segments() if s.name not in excluded]
    runs = _runs(segments)
    gaps = [(a[-1].last_lsn + 1, b[0].first_lsn - 1) for a, b in zip(runs, runs[1:], strict=False)
            if b[0].first_lsn > a[-1].last_lsn + 1]
    bases: list[Base] = []
    unbound: list[str] = []
    # The empty state before the first LSN is a base only for a history that began empty (LSN 1);
    # a restored store's history starts from its restored state, which only a snapshot holds.
    if ident.first_lsn == 1 and segments and segments[0].first_lsn == ident.first_lsn and \
            segments[0].prev_chain_digest == ident.start_chain_digest:
        bases.append(Base(ident.first_lsn - 1, min(ident.created_ns, segments[0].first_ts_ns - 1), None))
    for snap in catalog.snapshots():
        if snap.name in excluded:
            continue
        digest = catalog.chain_digest_at(snap.lsn, ident.start_chain_digest, ident.first_lsn)
        if digest != snap.chain_digest:
            unbound.append(snap.name)
            continue
        bases.append(Base(snap.lsn, snap.ts_ns, snap.name))
    bases.sort(key=lambda b: b.lsn)
    mark = catalog.get_meta("watermark")
    source_gaps = catalog.gaps()
    windows: list[Window] = []
    for base in bases:
        run = next((r for r in runs if r[0].first_lsn <= base.lsn + 1 <= r[-1].last_lsn + 1), None)
        cut = next(((lsn, before) for lsn, before in source_gaps if lsn > base.lsn), None)
        if cut is not None and run is not None and run[0].first_lsn <= cut[0] <= run[-1].last_lsn + 1:
            # The source lost history at cut: this base reaches only the commit before it.
            if cut[0] == base.lsn + 1 and base.snapshot is None:
                continue  # the empty state before a source's first load is no state at all
            end_lsn, end_ns = cut[0] - 1, max(cut[1], base.ts_ns) if cut[0] - 1 > base.lsn else base.ts_ns
            if windows and windows[-1].end_lsn == end_lsn and windows[-1].start_lsn <= base.lsn:
                continue
            windows.append(Window(base.ts_ns, end_ns, base.lsn, end_lsn))
            continue
        if run is None:
            end_lsn, end_ns = base.lsn, base.ts_ns
            last_lsn = segments[-1].last_lsn if segments else ident.first_lsn - 1
            if mark is not None and int(mark[0]) == base.lsn and base.lsn >= last_lsn:
                end_ns = max(end_ns, int(mark[1]))
        else:
            end_lsn = run[-1].last_lsn
            end_ns = max(run[-1].complete_through_ns, run[-1].last_ts_ns)
            if run is runs[-1] and mark is not None and int(mark[0]) == end_lsn:
                end_ns = max(end_ns, int(mark[1]))
        if windows and windows[-1].end_lsn == end_lsn and windows[-1].start_lsn <= base.lsn:
            continue  # already covered by an earlier base on the same run
        windows.append(Window(base.ts_ns, end_ns, base.lsn, end_lsn))
    return Timeline(windows, bases, gaps, source_gaps, unbound)

