"""Which segment files a follower applies next: its own look at the repository's listing.

A follower does not catch the catalog up (`Repository.sync`) on every look: that indexes every new
file, reading each of its blocks and key rows, and a merged segment of 32 inputs cost it seconds
(docs/decisions.md "The standby's lag: where the p99 came from"). It lists the segment names and
the newest watermark, and takes the files that continue its history from the applied LSN. Among the
files that start right after it, the smallest: the archiver's merge leaves its inputs in place until
`pitr cleanup`, so a standby keeps applying the small files it has not applied yet instead of
entering the merged one mid-way (which, checked as a restore checks it, means reading all of it).
A merged file that covers the applied LSN is used once its inputs are gone. Each file chosen is
checked as before (`pitr.follow.apply.apply_segment`): tables, the chain from the anchor, every block.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from pitr.errors import Gap, HistoryGap
from pitr.repo import layout
from pitr.repo.live import live_segments
from pitr.repo.repository import Repository
from segments.naming import parse_segment_file, parse_segment_name

MAX_STEP_BYTES = 64 << 20  # segment bytes applied before the follower reports and looks again
RESTORE_HINT = ("the standby is consistent at the last LSN it applied; once the repository is repaired "
                "(pitr verify, pitr repair) rerun the follower, or restore a new standby with "
                "pitr restore --latest --follow --force --dest DIR")


@dataclass(frozen=True, slots=True)
class Listed:
    """A segment file as the listing names it; `live` is False for a merge's input (superseded)."""

    name: str
    first_lsn: int
    last_lsn: int
    size: int
    live: bool


@dataclass(frozen=True, slots=True)
class Step:
    """The file to apply next, and the live file to fall back on when it is a superseded input that cannot
    be read (deleted by cleanup since the listing, or damaged): the live one covers the same LSNs."""

    chosen: Listed
    fallback: Listed | None


def parse_listing(names_sizes: list[tuple[str, int]]) -> list[Listed]:
    """The segment files among `names_sizes` (names relative to segments/), ordered by first LSN.

    A file a repair superseded (an older generation of the same range) is left out: it is never read,
    not even as a merge's input."""
    sizes = dict(names_sizes)
    newest: dict[tuple[int, int], tuple[int, str]] = {}
    for name in sizes:
        marked = parse_segment_file(name)
        if marked is None:
            continue
        held = newest.get((marked[0], marked[1]))
        if held is None or marked[2] > held[0]:
            newest[(marked[0], marked[1])] = (marked[2], name)
    sizes = {name: sizes[name] for _generation, name in newest.values()}
    live, _superseded = live_segments(sizes)
    out = []
    for name, size in sizes.items():
        parsed = parse_segment_name(name)
        if parsed is not None:
            out.append(Listed(name, parsed[0], parsed[1], size, name in live))
    return sorted(out, key=lambda s: (s.first_lsn, s.last_lsn))


def choose_steps(listed: list[Listed], after_lsn: int, url: str, max_bytes: int = MAX_STEP_BYTES) -> list[Step]:
    """The files holding the LSNs after `after_lsn`, contiguous, up to about `max_bytes` (at least one).

    At each LSN: the smallest file starting there (an input its merge has not replaced yet reads least),
    else the live file containing it (entered mid-way). A hole before or between them is `HistoryGap`."""
    steps: list[Step] = []
    starting: dict[int, Listed] = {}
    for s in listed:  # the smallest file starting at each LSN
        if s.first_lsn not in starting or s.last_lsn < starting[s.first_lsn].last_lsn:
            starting[s.first_lsn] = s
    # each live file starts after the one before and reaches further (live_segments): the last one
    # starting at or before an LSN is the one that can contain it
    live = sorted((s for s in listed if s.live), key=lambda s: s.first_lsn)
    live_starts = [s.first_lsn for s in live]
    expected, size = after_lsn + 1, 0
    while True:
        at = bisect.bisect_right(live_starts, expected) - 1
        covering = live[at] if at >= 0 and live[at].last_lsn >= expected else None
        chosen = starting.get(expected, covering)
        if chosen is None:
            later = [s for s in listed if s.first_lsn > expected]
            if later:
                nxt = min(later, key=lambda s: s.first_lsn)
                raise HistoryGap(f"{url}: LSN {expected}..{nxt.first_lsn - 1} are in no segment of the "
                                 f"repository (the next one is {nxt.name})", [Gap(expected, nxt.first_lsn - 1)],
                                 hint=RESTORE_HINT)
            return steps
        steps.append(Step(chosen, None if chosen.live or covering is None else covering))
        expected, size = chosen.last_lsn + 1, size + chosen.size
        if size >= max_bytes:
            return steps


async def list_segments(repo: Repository) -> list[Listed]:
    """The repository's segment files (one listing)."""
    infos = await repo.storage.list(layout.SEGMENTS)
    return parse_listing([(i.name[len(layout.SEGMENTS):], i.size) for i in infos])
