"""The moments a command is given (`--at`, `--to`, `--since`, `diff T1 T2`), read against one clock reading.

A command reads the clock once, when it starts (`Moments()`), so `-15m` and
`now` in one command line name instants exactly 15 minutes apart. `@LSN`
names one commit: where a time is needed it stands for that commit's own
time, which (commit times strictly increase with LSN) selects exactly the
commits up to and including it.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pitr.errors import OutsideWindow
from pitr.timefmt import Moment, describe_moment, format_time, parse_moment

if TYPE_CHECKING:
    from pitr.repo.repository import Repository

wall_clock: Callable[[], int] = time.time_ns  # the present, ns since the epoch (tests put a fixed clock here)

MOMENT_HELP = "RFC 3339 with offset, Unix seconds, now, -15m, now-2h or @LSN"
# what argparse takes for a value, not an option, when it starts with "-": its own negative numbers
# (-15, -1.5) and relative moments (-15m, -1d12h); no pitr option looks like either
_NEGATIVE_OR_RELATIVE = re.compile(r"^-\d*\.?\d+$|^-(\d{1,12}(\.\d{1,9})?(ms|s|m|h|d))+$", re.IGNORECASE)


def accept_relative_moments(parser: argparse.ArgumentParser) -> None:
    """Let `--at -15m` (and a positional `-2h`) be read as a moment, not as an unknown option.

    argparse decides whether a word starting with "-" is a value with the pattern it keeps in
    `_negative_number_matcher` (negative numbers only); this widens it to relative moments.
    """
    parser._negative_number_matcher = _NEGATIVE_OR_RELATIVE  # noqa: SLF001 - argparse's one hook for it


class Moments:
    """Parses one command's moments against the clock read when the command started."""

    def __init__(self) -> None:
        self.now_ns = wall_clock()

    def parse(self, text: str, what: str) -> Moment:
        return parse_moment(text, now_ns=self.now_ns, what=what)

    def optional(self, text: str | None, what: str) -> Moment | None:
        return None if text is None else self.parse(text, what)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A moment resolved against a repository: its time, and the last LSN at or before it."""

    ts_ns: int
    lsn: int | None  # None: the moment precedes every archived commit

    def describe(self) -> str:
        return describe_moment(self.ts_ns, self.lsn)

    def as_json(self, prefix: str) -> dict[str, object]:
        return {prefix: format_time(self.ts_ns), f"{prefix}_ns": self.ts_ns, f"{prefix}_lsn": self.lsn}


async def resolve_moment(repo: Repository, moment: Moment, what: str, *, exclusive: bool = False) -> Resolved:
    """The time `moment` stands for in `repo`, with the last LSN it includes: for `@N` the commit
    time of LSN N (refused when the repository holds no commit N), for a time the last commit at or
    before it (`exclusive`: strictly before it, so `@N` includes LSN N - 1)."""
    if moment.lsn is not None:
        return Resolved(await commit_time(repo, moment.lsn, what), moment.lsn - 1 if exclusive else moment.lsn)
    assert moment.ts_ns is not None
    from pitr.restore.plan import lsn_at_time  # reads at most one block

    bound = moment.ts_ns if not exclusive else moment.ts_ns - 1
    lsn = await lsn_at_time(repo, moment.ts_ns, inclusive=not exclusive)
    if lsn is None:  # no archived log that early: a snapshot may still hold the state (its log deleted)
        lsn = max((s.lsn for s in repo.catalog.snapshots() if s.ts_ns <= bound), default=None)
    return Resolved(moment.ts_ns, lsn)


async def commit_time(repo: Repository, lsn: int, what: str) -> int:
    """The commit time of LSN `lsn`, from the archived log or from a snapshot taken at it."""
    segment = repo.catalog.segment_containing(lsn)
    if segment is not None:
        if lsn == segment.last_lsn:
            return segment.last_ts_ns
        block = repo.catalog.block_for_lsn(lsn)
        if block is not None:
            from segments import record

            for span in record.scan_spans(await repo.read_block(segment, block)):
                if span.lsn == lsn:
                    return span.ts_ns
    for snapshot in repo.catalog.snapshots():
        if snapshot.lsn == lsn:
            return snapshot.ts_ns
    from pitr.timeline import build_timeline

    windows = build_timeline(repo.catalog, await repo.require_identity()).windows
    raise OutsideWindow(f"{what} @{lsn}: the repository {repo.url} holds no commit with LSN {lsn}, so it "
                        "cannot say when it was; name an LSN inside a recoverable window", windows)
