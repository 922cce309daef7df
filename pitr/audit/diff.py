"""What changed between two moments: keys added, removed and changed, without restoring either.

A key can differ between t1 and t2 (t1 <= t2, both inclusive moments) for two
reasons, and `diff` finds both:

* a commit in (t1, t2] touched it: the log between the moments is read once
  (`commit_log`), which also gives each such key's state at t2;
* a put visible at t1 expired in (t1, t2] with no commit touching the key.
  These keys are found by folding the base of t1 (the snapshot a restore to t1
  would load, if any) and the log from that base to t1, keeping keys whose last
  put carries an expiry in (t1, t2]. This costs a read of the base snapshot's
  entries under the prefix plus the log from the base to t1, the reading a
  restore to t1 would do (without building any state); pass
  `include_expiry=False` to skip it when TTLs do not matter.

Each candidate key's state at t1 is then one `value_at` lookup (O(log n) plus
one block read). Both moments must lie in the same recoverable window: across a
gap in the archive, the commits in the gap are unknown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal

import anyio

from pitr.audit.at import ValueReader, open_value_reader
from pitr.audit.history import KeyChange
from pitr.audit.holes import Hole, history_gap
from pitr.audit.log import commit_log
from pitr.audit.window import Moment
from pitr.errors import InvalidArgument, OutsideWindow, to_corrupt
from pitr.repo.repository import Repository
from pitr.restore.plan import describe_windows
from pitr.timefmt import format_time
from pitr.timeline import Timeline
from segments import SegmentsError
from segments.snapshot import SnapshotReader

DiffKind = Literal["added", "removed", "changed"]


@dataclass(frozen=True, slots=True)
class KeyDiff:
    """How one key differs between two moments; `before`/`after` are None where it is absent."""

    key: bytes
    kind: DiffKind
    before: KeyChange | None
    after: KeyChange | None


def _same_value(a: KeyChange, b: KeyChange) -> bool:
    return a.value == b.value and a.expires_at_ns == b.expires_at_ns


def classify(key: bytes, before: KeyChange | None, after: KeyChange | None) -> KeyDiff | None:
    """The difference between two states of a key (None when equal in value and expiry)."""
    if before is None and after is None:
        return None
    if before is None:
        return KeyDiff(key, "added", None, after)
    if after is None:
        return KeyDiff(key, "removed", before, None)
    if _same_value(before, after):
        return None
    return KeyDiff(key, "changed", before, after)


async def diff(repo: Repository, t1_ns: int, t2_ns: int, *, prefix: bytes | None = None,
               include_expiry: bool = True, timeline: Timeline | None = None,
               holes: Sequence[Hole] | None = None) -> AsyncIterator[KeyDiff]:
    """Keys whose value or expiry differs between the states at t1 and at t2, in key order.

    Both moments are inclusive (commits with ts <= t) and TTL is judged at each.
    A key re-put with the same value and expiry is not a difference. Raises
    InvalidArgument when t1 > t2, HistoryGap (naming the holes) when commits
    between or before the moments are missing from the archive, and
    OutsideWindow when the moments are not in one recoverable window.
    """
    if t1_ns > t2_ns:
        raise InvalidArgument(f"diff from {format_time(t1_ns)} to the earlier {format_time(t2_ns)}; "
                              "give the earlier moment first")
    async with open_value_reader(repo, timeline, holes) as reader:
        m1, m2 = reader.moment(t1_ns), reader.moment(t2_ns)
        if m1.window != m2.window:
            between = [h for h in reader.holes if h.meets_times(t1_ns, t2_ns)]
            if between:
                raise history_gap(f"the difference between {format_time(t1_ns)} and {format_time(t2_ns)}",
                                  between, can_allow=False)
            windows = reader.timeline.windows
            raise OutsideWindow(f"{format_time(t1_ns)} and {format_time(t2_ns)} are in different "
                                f"recoverable windows, with commits missing between them; "
                                f"{describe_windows(windows)}", windows)
        touched: dict[bytes, KeyChange] = {}
        async for commit in commit_log(repo, since_ns=t1_ns + 1, until_ns=t2_ns, prefix=prefix,
                                        holes=reader.holes):
            for op in commit.ops:
                touched[op.key] = KeyChange(commit.lsn, commit.ts_ns, op.op, op.value, op.expires_at_ns)
        candidates = set(touched)
        if include_expiry and t2_ns > t1_ns:
            candidates |= await expiring_keys(repo, reader, m1, t2_ns, prefix)
        for key in sorted(candidates):
            before = await reader.value_at(key, m1)
            last = touched.get(key, before)
            after = last if last is not None and last.live_at(t2_ns) else None
            found = classify(key, before, after)
            if found is not None:
                yield found


async def expiring_keys(repo: Repository, reader: ValueReader, at: Moment, until_ns: int,
                        prefix: bytes | None) -> set[bytes]:
    """Keys whose state at `at` is a put expiring in (at, until_ns]: the base, then the log to `at`."""
    t1 = at.ts_ns
    found: set[bytes] = set()
    if at.base.snapshot is not None:
        snapshot = await reader.snapshot(at.base.snapshot)
        try:
            found = await anyio.to_thread.run_sync(_snapshot_expiring, snapshot, prefix or b"", t1, until_ns)
        except SegmentsError as exc:
            raise to_corrupt(exc) from exc
    async for commit in commit_log(repo, since_lsn=at.base.lsn + 1, until_ns=t1, prefix=prefix,
                                    holes=reader.holes):
        for op in commit.ops:
            if op.op == "put" and op.expires_at_ns is not None and t1 < op.expires_at_ns <= until_ns:
                found.add(op.key)
            else:
                found.discard(op.key)
    return found


def _snapshot_expiring(snapshot: SnapshotReader, prefix: bytes, after_ns: int, until_ns: int) -> set[bytes]:
    found = set()
    for key, _value, expires_at_ns in snapshot.iter_entries(prefix or None):
        if not key.startswith(prefix):
            break
        if expires_at_ns is not None and after_ns < expires_at_ns <= until_ns:
            found.add(bytes(key))
    return found
