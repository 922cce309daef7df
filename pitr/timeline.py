"""The recoverable windows of a repository: from each usable base to where the log is known complete.

A base is a snapshot whose chain digest matches the log at its LSN, or the
start of the history (empty state) when the log starts at the history's first
LSN. From a base, the window extends through consecutive, linked segments; it
ends at a gap, and the last window ends where the archive is known complete
(the watermark, or the last segment's completeness time).

Files the catalog could not index, and files `pitr verify` found damaged
(both recorded in the catalog), are left out: their LSNs are `holes` naming the
file, so no window spans a range known to be damaged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pitr.catalog.catalog import Catalog
from pitr.catalog.entries import FileCheck, SegmentEntry
from pitr.errors import Gap, Window
from pitr.repo.identity import RepoIdentity


@dataclass(frozen=True, slots=True)
class Base:
    """Where a restore can start: a snapshot, or the empty state before the first LSN."""

    lsn: int
    ts_ns: int
    snapshot: str | None  # snapshot name, None for the start of history


@dataclass(frozen=True, slots=True)
class Timeline:
    """What the catalog says can be restored, and what it knows cannot."""

    windows: list[Window]
    bases: list[Base]
    gaps: list[tuple[int, int]]  # LSN ranges no readable segment holds, inclusive (the ranges of `holes`)
    source_gaps: list[tuple[int, int]]  # (LSN, time before) of commits after a loss of source history
    unbound_snapshots: list[str]  # snapshots whose chain digest does not match the log
    holes: list[Gap] = field(default_factory=list)  # the same ranges, each saying why (naming the files)
    damaged: list[FileCheck] = field(default_factory=list)  # files not indexed or found damaged by verify
    unverified: list[tuple[int, int]] = field(default_factory=list)  # LSN ranges of segments never verified

    @property
    def ok(self) -> bool:
        """Nothing known to be missing or damaged, and something restorable."""
        return bool(self.windows) and not self.holes and not self.damaged and not self.unbound_snapshots


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def _holes(runs: list[list[SegmentEntry]], bad: list[FileCheck]) -> list[Gap]:
    """LSN ranges between runs, or held only by bad files, each with the files that should hold them."""
    candidates = [(a[-1].last_lsn + 1, b[0].first_lsn - 1) for a, b in zip(runs, runs[1:], strict=False)
                  if b[0].first_lsn > a[-1].last_lsn + 1]
    candidates += [(c.first_lsn, c.last_lsn) for c in bad if c.kind == "segment"]
    covered = _merge([(r[0].first_lsn, r[-1].last_lsn) for r in runs])
    holes: list[Gap] = []
    for first, last in _merge(candidates):
        pieces = [(first, last)]
        for c_first, c_last in covered:
            pieces = [p for a, b in pieces for p in ((a, min(b, c_first - 1)), (max(a, c_last + 1), b)) if p[0] <= p[1]]
        for a, b in pieces:
            files = [c for c in bad if c.kind == "segment" and c.first_lsn <= b and a <= c.last_lsn]
            if files:
                reason = "; ".join(f"{c.name} {'cannot be indexed' if c.status == 'unindexed' else 'is damaged'}: "
                                   f"{c.detail}" for c in files)
            else:
                reason = "missing: no segment in the repository holds these LSNs"
            holes.append(Gap(a, b, reason))
    return holes


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
    """Compute the windows from the catalog; `excluded` names more files known to be broken."""
    checks = catalog.file_checks()
    bad = [c for c in checks if c.status != "ok"]
    known_bad = {c.name for c in bad}
    all_segments = catalog.segments()
    bad += [FileCheck(s.name, "segment", s.first_lsn, s.last_lsn, "damaged", "found damaged", 0, "")
            for s in all_segments if s.name in excluded and s.name not in known_bad]
    excluded = excluded | known_bad
    segments = [s for s in all_segments if s.name not in excluded]
    runs = _runs(segments)
    holes = _holes(runs, bad)
    gaps = [(h.first_lsn, h.last_lsn) for h in holes]
    verified = {c.name for c in checks if c.status == "ok"}
    unverified = _merge([(s.first_lsn, s.last_lsn) for s in segments if s.name not in verified])
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
        if ident.keyed_chain and catalog.link_key is None:
            # a keyed chain's digest inside a segment needs the key: without it (verify --quick) the
            # binding is not checked here; every read of the snapshot's blocks needs the key anyway
            bases.append(Base(snap.lsn, snap.ts_ns, snap.name))
            continue
        digest = catalog.chain_digest_at(snap.lsn, ident.start_chain_digest, ident.first_lsn)
        if digest != snap.chain_digest:
            unbound.append(snap.name)
            continue
        bases.append(Base(snap.lsn, snap.ts_ns, snap.name))
    bases.sort(key=lambda b: b.lsn)
    mark = catalog.watermark()
    held = max([ident.first_lsn - 1, *(s.last_lsn for s in all_segments), *(b.lsn for b in bases)])
    if mark is not None and int(mark[0]) > held:
        # The watermark is the archiver's word that it published commits through mark[0]: the newest
        # segments holding them are gone (or not yet readable), a hole at the end of the history.
        holes.append(Gap(held + 1, int(mark[0]), f"missing: the watermark says the archive held commits "
                         f"through LSN {int(mark[0])}, but no segment holds LSNs {held + 1}..{int(mark[0])}"))
        gaps.append((held + 1, int(mark[0])))
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
    damaged = sorted(bad, key=lambda c: (c.first_lsn, c.name))
    return Timeline(windows, bases, gaps, source_gaps, unbound, holes, damaged, unverified)

