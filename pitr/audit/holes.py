"""Holes in an archived history: LSN ranges an audit answer cannot see.

A hole is a range of LSNs inside the history (from its start to the last LSN
the archive claims) that no indexed segment holds: a segment deleted, never
shipped, or present but damaged so that it could not be indexed. Every audit
answer (`history`, `commit_log`, `value_at`, `diff`) computes them here, in
one place, and refuses an answer that spans one unless the caller accepts gaps
(`allow_gaps=True`), in which case the hole is named in place.

The history starts at the identity's first LSN, or at the retention floor:
`cleanup` deletes the segments before the oldest kept snapshot, so when the
first segment holds (or starts right after) the oldest snapshot's LSN, the
LSNs before it were removed on purpose and are not a hole. The history ends
at the newest of the last segment and the watermark (the archiver's promise
that everything through its LSN was published): LSNs promised but not held
are a hole too.

Source gaps (etcd history compacted away between archiver runs) are not holes:
no LSN is missing there, the next commit loads the source's whole state, and
the timeline's windows already account for them.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pitr.catalog.catalog import Catalog
from pitr.errors import Gap, HistoryGap
from pitr.repo.identity import RepoIdentity
from pitr.timefmt import format_time

ALLOW_HINT = "the changes in a hole are unknown; restore the missing segments, or pass --allow-gaps " \
             "to get what the archive holds with each hole named"


@dataclass(frozen=True, slots=True)
class Hole:
    """A Gap with the commit times around it: every commit inside has after_ns < ts < before_ns.

    `after_ns` is None when no archived commit precedes the hole, `before_ns`
    None when none follows it.
    """

    gap: Gap
    after_ns: int | None
    before_ns: int | None

    def meets_times(self, since_ns: int | None, until_ns: int | None) -> bool:
        """Whether a commit inside the hole could have a time in [since_ns, until_ns]."""
        if until_ns is not None and self.after_ns is not None and self.after_ns >= until_ns:
            return False
        return not (since_ns is not None and self.before_ns is not None and self.before_ns <= since_ns)

    def meets_lsns(self, first_lsn: int | None, last_lsn: int | None) -> bool:
        """Whether the hole overlaps [first_lsn, last_lsn]."""
        if first_lsn is not None and self.gap.last_lsn < first_lsn:
            return False
        return not (last_lsn is not None and self.gap.first_lsn > last_lsn)

    def holds_time(self, ts_ns: int) -> bool:
        """Whether a commit at `ts_ns` could be inside the hole."""
        return (self.after_ns is None or self.after_ns < ts_ns) and \
            (self.before_ns is None or ts_ns < self.before_ns)


def history_start(catalog: Catalog, ident: RepoIdentity) -> int:
    """The first LSN of the history the archive still means to hold (see the module docstring)."""
    first = catalog.first_segment()
    if first is None or first.first_lsn <= ident.first_lsn:
        return ident.first_lsn
    if any(first.first_lsn - 1 <= snap.lsn <= first.last_lsn for snap in catalog.snapshots()):
        return first.first_lsn  # the retention floor
    return ident.first_lsn


def find_holes(catalog: Catalog, ident: RepoIdentity,
               damaged: Iterable[tuple[int, int, str]] = ()) -> list[Hole]:
    """Every hole of the history, in LSN order.

    Segments the catalog records as unindexable or damaged (by `pitr verify`)
    are holes naming the file; `damaged` adds more LSN ranges (first, last,
    reason) known to be unreadable, and each reason is given to the part of a
    hole it covers.
    """
    # Segments that could not be indexed, or that verify found damaged, hold nothing an answer can use:
    # their LSNs are holes naming the file, as in the timeline's windows.
    bad = [c for c in catalog.file_checks() if c.kind == "segment" and c.status != "ok"]
    bad_names = {c.name for c in bad}
    reasons = sorted([*damaged, *((c.first_lsn, c.last_lsn, f"segment {c.name} "
                                   f"{'cannot be indexed' if c.status == 'unindexed' else 'is damaged'}: {c.detail}")
                                  for c in bad)])
    segments = [s for s in catalog.segments() if s.name not in bad_names]
    start = history_start(catalog, ident)
    end = segments[-1].last_lsn if segments else start - 1
    mark = catalog.watermark()
    end_before_ns = None
    if mark is not None and mark[0] > end:
        end, end_before_ns = mark[0], mark[1] + 1  # promised complete through mark[1]
    holes: list[Hole] = []
    expected, after_ns = start, None
    for seg in segments:
        if seg.last_lsn < expected:
            continue
        if seg.first_lsn > expected:
            holes.extend(_split(expected, seg.first_lsn - 1, after_ns, seg.first_ts_ns, reasons))
        # the segment promises no commit after its last one until complete_through_ns
        expected, after_ns = seg.last_lsn + 1, max(seg.last_ts_ns, seg.complete_through_ns)
    if expected <= end:
        holes.extend(_split(expected, end, after_ns, end_before_ns, reasons))
    return holes


def _split(first: int, last: int, after_ns: int | None, before_ns: int | None,
           reasons: Sequence[tuple[int, int, str]]) -> list[Hole]:
    """The hole first..last, cut where known damaged files begin and end so each part has its reason."""
    parts: list[Hole] = []
    lsn = first
    for r_first, r_last, why in reasons:
        if r_last < lsn or r_first > last:
            continue
        if r_first > lsn:
            parts.append(Hole(Gap(lsn, r_first - 1), after_ns, before_ns))
        parts.append(Hole(Gap(max(lsn, r_first), min(last, r_last), why), after_ns, before_ns))
        lsn = min(last, r_last) + 1
        if lsn > last:
            break
    if lsn <= last:
        parts.append(Hole(Gap(lsn, last), after_ns, before_ns))
    return parts


def archive_end_ns(catalog: Catalog) -> int | None:
    """The latest moment the archive speaks for: its last commit, or the completeness promised after it."""
    last = catalog.last_segment()
    end = None if last is None else max(last.last_ts_ns, last.complete_through_ns)
    mark = catalog.watermark()
    if mark is not None:
        end = mark[1] if end is None else max(end, mark[1])
    return end


def holes_at(holes: Sequence[Hole], ts_ns: int, end_ns: int | None) -> list[Hole]:
    """The holes that keep the state at `ts_ns` from being known, when no window holds `ts_ns`.

    A moment inside a hole's time span depends on the commits in it; so does
    a moment after a hole and within the archive (at or before `end_ns`),
    which no base after the hole reaches. A moment beyond the archive's end
    is outside it, holes or not.
    """
    inside = [h for h in holes if h.holds_time(ts_ns)]
    if inside:
        return inside
    if end_ns is None or ts_ns > end_ns:
        return []
    return [h for h in holes if h.after_ns is not None and h.after_ns < ts_ns][-1:]


def gap_json(gap: Gap) -> dict[str, object]:
    """The JSON-lines record of a hole: {"gap": {"first_lsn", "last_lsn", "reason"}}."""
    return {"gap": {"first_lsn": gap.first_lsn, "last_lsn": gap.last_lsn, "reason": gap.reason}}


def describe_hole(hole: Hole) -> str:
    """One line naming the hole: its LSNs, the times around it, why it is there."""
    around = []
    if hole.after_ns is not None:
        around.append(f"after {format_time(hole.after_ns)}")
    if hole.before_ns is not None:
        around.append(f"before {format_time(hole.before_ns)}")
    when = f" ({', '.join(around)})" if around else ""
    why = "no archived segment holds them" if hole.gap.reason == "missing" else hole.gap.reason
    return f"LSN {hole.gap.first_lsn}..{hole.gap.last_lsn}{when}: {why}"


def history_gap(what: str, holes: Sequence[Hole], *, can_allow: bool = True) -> HistoryGap:
    """The refusal of an answer about `what` that depends on the commits in `holes`."""
    count = "a hole" if len(holes) == 1 else f"{len(holes)} holes"
    named = "; ".join(describe_hole(h) for h in holes)
    hint = ALLOW_HINT if can_allow else \
        "the changes in a hole are unknown; restore the missing or damaged segments, then ask again"
    return HistoryGap(f"{what} depends on {count} in the archived history: {named}",
                      [h.gap for h in holes], hint=hint)


def key_text(key: bytes) -> str:
    """A key for a message: quoted text when printable UTF-8, else base64 (and cut to 64 bytes)."""
    shown = key[:64]
    more = "..." if len(key) > 64 else ""
    try:
        text = shown.decode()
        if text.isprintable():
            return f"'{text}{more}'"
    except UnicodeDecodeError:
        pass
    return f"base64 {base64.b64encode(shown).decode()}{more}"
