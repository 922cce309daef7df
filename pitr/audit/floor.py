"""Where an archived history begins when retention has removed its oldest commits.

`cleanup` deletes the segments before the oldest snapshot it keeps. The
history then begins at the retention floor (`holes.history_start`): the
commits before it are gone on purpose, which is not a hole, but an answer
about them cannot be given either. So an audit answer over a range that
reaches before the floor is refused, naming the floor and the moment to ask
from; an answer with no lower bound lists what the archive holds and says
where it begins, with each key's value at the floor read from the snapshot
there.
"""

from __future__ import annotations

from dataclasses import dataclass

from pitr.audit.holes import history_start
from pitr.catalog.catalog import Catalog
from pitr.catalog.entries import SnapshotEntry
from pitr.errors import OutsideWindow
from pitr.repo.identity import RepoIdentity
from pitr.timefmt import format_time
from pitr.timeline import build_timeline


@dataclass(frozen=True, slots=True)
class Floor:
    """The first LSN the archive still holds after retention, and what is known about the ones before.

    `gone_through_ns` is the newest commit time a removed commit can have: every
    commit with a later time is in the archive. `snapshot` is the base at the
    floor (the state just before `lsn`, or a little after it), whose values give
    each key's state where the log begins.
    """

    lsn: int
    gone_through_ns: int
    snapshot: SnapshotEntry | None

    def describe(self) -> str:
        text = (f"the archive's history begins at LSN {self.lsn}: the commits before it (through "
                f"{format_time(self.gone_through_ns)}) were removed by retention")
        if self.snapshot is not None:
            text += f"; the state at LSN {self.snapshot.lsn} is in snapshot {self.snapshot.name}"
        return text

    def reaches_before(self, since_ns: int | None, since_lsn: int | None = None) -> bool:
        """Whether a range starting at these bounds could hold a removed commit (None: unbounded)."""
        return (since_lsn is None or since_lsn < self.lsn) and \
            (since_ns is None or since_ns <= self.gone_through_ns)


def retention_floor(catalog: Catalog, ident: RepoIdentity) -> Floor | None:
    """The floor when retention removed the history's oldest commits, else None."""
    start = history_start(catalog, ident)
    if start <= ident.first_lsn:
        return None
    snapshots = [s for s in catalog.snapshots() if start - 1 <= s.lsn]
    snapshot = min(snapshots, key=lambda s: s.lsn) if snapshots else None
    if snapshot is not None and snapshot.lsn == start - 1:
        gone_ns = snapshot.ts_ns  # the snapshot is of the last removed commit
    else:
        block = catalog.block_for_lsn(start)
        # commit times strictly increase with LSN: a removed commit is earlier than the first one kept
        gone_ns = block.first_ts_ns - 1 if block is not None and block.first_lsn == start else 2**63 - 1
    return Floor(start, gone_ns, snapshot)


def refuse_before_floor(catalog: Catalog, ident: RepoIdentity, what: str, since_ns: int | None,
                        since_lsn: int | None = None) -> Floor | None:
    """The floor (None without one), after refusing a range with an explicit start before it.

    Raises OutsideWindow, with the recoverable windows, when `since_ns` or
    `since_lsn` is given and a commit retention removed could lie in the range.
    """
    floor = retention_floor(catalog, ident)
    if floor is None or (since_ns is None and since_lsn is None) or not floor.reaches_before(since_ns, since_lsn):
        return floor
    start = f"LSN {since_lsn}" if since_ns is None else format_time(since_ns)
    raise OutsideWindow(f"{what} from {start} reaches before the archive's history: {floor.describe()}; "
                        f"ask from {format_time(floor.gone_through_ns + 1)} (LSN {floor.lsn}) or later", build_timeline(catalog, ident).windows)
