"""Planning an undo of a time range from the archive: each key the range changed, and what it was before.

An undo of (T1, T2] brings every key whose state at T2 differs from its state at T1, because a
commit in (T1, T2] touched it, back to its state at T1. `pitr.audit.diff` answers exactly that
(the log of the range read once, each key's state at T1 one key-index lookup); keys that only
expired in the range are left out: no commit touched them, and an undo writes commits.
"""

from __future__ import annotations

from dataclasses import dataclass

from pitr.audit.diff import diff
from pitr.audit.history import KeyChange
from pitr.audit.holes import find_holes
from pitr.errors import InvalidArgument
from pitr.repo.identity import RepoIdentity
from pitr.repo.repository import Repository
from pitr.store.conditional import Expected
from pitr.timefmt import format_time


def state_at_now(change: KeyChange | None, now_ns: int) -> Expected:
    """What a read now sees of a state taken from the archive: (value, expiry), or None when it is
    absent or has expired by now."""
    if change is None or not change.live_at(now_ns):
        return None
    return change.value or b"", change.expires_at_ns


@dataclass(frozen=True, slots=True)
class Reversal:
    """One key the range changed: its state at T1 (to bring back) and at T2 (expected now)."""

    key: bytes
    at_from: KeyChange | None  # None: absent at T1
    at_to: KeyChange | None  # None: absent at T2

    def wanted(self, now_ns: int) -> Expected:
        """The state the undo writes: T1's, as it reads now (a T1 value whose expiry has passed is
        absent: writing it back would be a put already expired)."""
        return state_at_now(self.at_from, now_ns)

    def expected(self, now_ns: int) -> Expected:
        """The state the key holds now if nothing changed it after T2."""
        return state_at_now(self.at_to, now_ns)


@dataclass(frozen=True, slots=True)
class UndoPlan:
    """Every key an undo of (from_ns, to_ns] reverts, in key order."""

    from_ns: int
    to_ns: int
    prefix: bytes | None
    identity: RepoIdentity
    reversals: list[Reversal]


async def plan_undo(repo: Repository, from_ns: int, to_ns: int, *, prefix: bytes | None = None) -> UndoPlan:
    """The reversals of an undo of the commits with from_ns < ts <= to_ns (under `prefix`).

    Raises InvalidArgument for an empty or backwards range, OutsideWindow when either moment
    is outside one recoverable window (the archive must be complete through to_ns: a commit
    it does not hold yet would be missed), and HistoryGap when commits in the range are lost.
    """
    if from_ns >= to_ns:
        raise InvalidArgument(f"undo --from {format_time(from_ns)} --to {format_time(to_ns)}: the range is empty; "
                              "--from must be before --to")
    await repo.sync()
    ident = await repo.require_identity()
    holes = find_holes(repo.catalog, ident)
    reversals = [Reversal(d.key, d.before, d.after)
                 async for d in diff(repo, from_ns, to_ns, prefix=prefix, include_expiry=False, holes=holes)]
    return UndoPlan(from_ns, to_ns, prefix, ident, reversals)
