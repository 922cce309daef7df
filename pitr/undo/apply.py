"""Applying an undo to a live store: one atomic commit, guarded by each key's current state.

Every key the plan reverts is expected to hold now what it held at T2. One that holds anything
else was changed after the range (or while the undo ran) and is a conflict. The rule
(docs/decisions.md, "undo"): with a conflict, nothing is applied and `UndoConflict` names every
conflicting key, unless `force` (write T1's state over them too) or `skip_conflicts` (revert the
others, leave them alone, and name them in the result). The commit itself carries a condition on
every key it writes (`Store.commit_if`, an etcd transaction's compares), so a writer that changes
one of them between the check and the commit makes the whole undo refuse, never half-apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from pitr.errors import InvalidArgument, UndoConflict
from pitr.repo.identity import RepoIdentity
from pitr.store.conditional import Expected, Mismatch
from pitr.timefmt import format_time
from pitr.undo.plan import UndoPlan


class UndoTarget(Protocol):
    """A live store an undo writes to: the embedded `Store` (`StoreTarget`) or an etcd prefix."""

    def check_history(self, identity: RepoIdentity) -> None:
        """Raise ForeignRepository unless the archive is this store's own history."""

    def now(self) -> int:
        """The store's present (ns): what TTLs are judged against."""

    def comparable(self, state: Expected) -> Expected:
        """`state` as far as this store can tell states apart (etcd keeps no expiry to compare)."""

    async def read(self, keys: Sequence[bytes]) -> dict[bytes, Expected]:
        """The current state of each key."""

    async def commit_if(self, writes: Sequence[tuple[bytes, Expected]],
                        guards: Mapping[bytes, Expected]) -> int | list[Mismatch]:
        """Write every (key, state) in one atomic commit if every guard holds; returns the
        commit's position (LSN or etcd revision), or the guards that failed (nothing written)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class UndoOptions:
    """How to apply an undo: `dry_run` only reports; `force` overrides conflicts; `skip_conflicts`
    reverts the keys without one and leaves the others alone."""

    dry_run: bool = False
    force: bool = False
    skip_conflicts: bool = False

    def __post_init__(self) -> None:
        if self.force and self.skip_conflicts:
            raise InvalidArgument("give at most one of force and skip_conflicts")


@dataclass(frozen=True, slots=True)
class UndoChange:
    """One key of an undo: its state now, the state the undo writes, and what was expected.

    `conflict`: the key was changed after the range to something else than the undo writes (a
    key already back at its T1 state is no conflict: there is nothing to overwrite).
    """

    key: bytes
    current: Expected
    wanted: Expected
    expected: Expected  # the key's state at T2, as a read now sees it
    conflict: bool
    needs_write: bool  # the current state is not (comparably) the wanted one


@dataclass(frozen=True, slots=True)
class UndoResult:
    """What an undo did (or, in a dry run, would do)."""

    from_ns: int
    to_ns: int
    changes: list[UndoChange]  # every key to revert, conflicts included
    applied: list[bytes]  # keys written (empty in a dry run or when nothing needed writing)
    skipped: list[bytes]  # conflicts left alone (skip_conflicts)
    overridden: list[bytes]  # conflicts written over (force)
    position: int | None  # LSN (or etcd revision) of the undo commit; None when nothing was written
    dry_run: bool

    @property
    def conflicts(self) -> list[bytes]:
        return [c.key for c in self.changes if c.conflict]


def _shown(keys: Sequence[bytes], limit: int = 10) -> str:
    text = ", ".join(repr(k) for k in keys[:limit])
    return text + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


async def apply_undo(plan: UndoPlan, target: UndoTarget, options: UndoOptions) -> UndoResult:
    """Revert `plan`'s keys on `target` in one guarded commit (see the module docstring)."""
    target.check_history(plan.identity)
    now = target.now()
    same = target.comparable
    pending = [(r.key, r.wanted(now), r.expected(now)) for r in plan.reversals]
    pending = [(key, wanted, expected) for key, wanted, expected in pending if same(wanted) != same(expected)]
    current = await target.read([key for key, _wanted, _expected in pending])
    changes = []
    for key, wanted, expected in pending:
        now_state = same(current[key])
        changes.append(UndoChange(key, current[key], wanted, expected,
                                  conflict=now_state not in (same(expected), same(wanted)),
                                  needs_write=now_state != same(wanted)))
    conflicts = [c.key for c in changes if c.conflict]
    span = f"({format_time(plan.from_ns)}, {format_time(plan.to_ns)}]"
    if options.dry_run:
        return UndoResult(plan.from_ns, plan.to_ns, changes, [], [], [], None, True)
    if conflicts and not (options.force or options.skip_conflicts):
        raise UndoConflict(f"undo of {span}: {len(conflicts)} of {len(changes)} keys changed after the range "
                           f"and would be overwritten: {_shown(conflicts)}; nothing was applied", conflicts,
                           hint="review them (pitr history KEY); --skip-conflicts reverts the others, --force "
                                "overwrites them too; --dry-run shows every change")
    chosen = [c for c in changes if not (c.conflict and options.skip_conflicts)]
    writes = [(c.key, c.wanted) for c in chosen if c.needs_write]
    # each key is guarded by the state this undo saw (and showed): a write after that refuses
    guards = {c.key: c.current for c in chosen if c.needs_write}
    skipped = conflicts if options.skip_conflicts else []
    overridden = conflicts if options.force else []
    if not writes:
        return UndoResult(plan.from_ns, plan.to_ns, changes, [], skipped, overridden, None, False)
    outcome = await target.commit_if(writes, guards)
    if isinstance(outcome, list):
        raced = [m.key for m in outcome]
        raise UndoConflict(f"undo of {span}: {_shown(raced)} changed while the undo was being applied; "
                           "nothing was applied", raced, hint="run the undo again (--dry-run first)")
    return UndoResult(plan.from_ns, plan.to_ns, changes, [key for key, _state in writes], skipped, overridden,
                      outcome, False)
