"""Property: an undo of (T1, T2] leaves the live store where the model says, conflicts named exactly.

Random histories through a real Store and archiver (batches, TTLs, snapshots, merged segments,
long keys), a random range (T1, T2] inside the archive, then random writes after T2 that the
archive does not hold (the conflicts). The model: every key a commit in (T1, T2] left in another
state than at T1 is reverted to its T1 state; a key whose current state is neither its T2 state
nor its T1 state is a conflict. Without a flag a conflict refuses the whole undo (the store is
unchanged); with `skip_conflicts` the others are reverted; with `force` all are.
"""

from __future__ import annotations

import os
import tempfile

import pytest
import trio
from hypothesis import event, given
from hypothesis import strategies as st

from pitr.errors import UndoConflict
from pitr.repo.repository import open_repository
from pitr.store import Store
from pitr.undo import StoreTarget, UndoOptions, apply_undo, plan_undo
from segments import record as rec
from tests.audit.model import Commit, FakeClock, Written, keys_of, state_at, write_history
from tests.audit.test_model_agreement import KEYS, histories, interesting_times

State = dict[bytes, tuple[bytes, int | None]]


def live(state: State, now_ns: int) -> State:
    return {k: (v, e) for k, (v, e) in state.items() if e is None or e > now_ns}


@given(steps=histories(), data=st.data())
def test_an_undo_reverts_the_range_and_names_exactly_the_conflicts(steps: list[tuple[object, ...]],
                                                                    data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as root:
        written: Written = trio.run(write_history, root, steps)
        commits = written.commits
        times = sorted({t for t in interesting_times(written) if commits[0].ts_ns - 1 <= t <= commits[-1].ts_ns})
        half = max(1, len(times) // 2)  # wide ranges mostly: more keys to revert, more conflicts
        t1 = data.draw(st.sampled_from(times[:half]), label="T1")
        t2 = data.draw(st.sampled_from([t for t in times[half - 1:] if t > t1] or [t1 + 1]), label="T2")
        touched = sorted({op.key for c in commits if t1 < c.ts_ns <= t2 for op in c.ops})
        # writes after T2, mostly to keys the range touched (conflicts), some back to the T1 value
        values = st.none() | st.binary(max_size=1) | st.sampled_from([op.value for c in commits for op in c.ops
                                                                       if op.value is not None])
        after = data.draw(st.lists(st.tuples(st.sampled_from(touched or KEYS) | st.sampled_from(KEYS), values),
                                   max_size=4), label="writes after T2")
        mode = data.draw(st.sampled_from(["plain", "force", "skip_conflicts"]), label="mode")
        clock = FakeClock(written.final_ns + 100)
        keys = keys_of(commits) | {k for k, _v in after}

        # the model
        extra: list[Commit] = []
        for i, (key, value) in enumerate(after):
            op = rec.Op(rec.DELETE, key) if value is None else rec.Op(rec.PUT, key, value, None)
            extra.append(Commit(commits[-1].lsn + 1 + i, clock.now + i, (op,)))
        now = clock.now + len(after)
        at_t1, at_t2 = state_at(commits, keys, t1), state_at(commits, keys, t2)
        current = live(state_at(commits + extra, keys, now), now)
        wanted, expected = live(at_t1, now), live(at_t2, now)
        reverting = sorted(k for k in touched if at_t1.get(k) != at_t2.get(k) and wanted.get(k) != expected.get(k))
        conflicts = [k for k in reverting if current.get(k) not in (expected.get(k), wanted.get(k))]
        final = dict(current)
        if not conflicts or mode != "plain":
            for key in reverting:
                if key in conflicts and mode == "skip_conflicts":
                    continue
                final.pop(key, None)
                if key in wanted:
                    final[key] = wanted[key]
        event(f"mode {mode}, {'conflicts' if conflicts else 'no conflict'}")
        event(f"keys to revert: {min(len(reverting), 3)}{'+' if len(reverting) >= 3 else ''}")

        async def undo() -> tuple[State, list[bytes] | None, int, int]:
            async with Store(os.path.join(root, "data"), clock=clock) as store:
                for key, value in after:
                    await (store.delete(key) if value is None else store.put(key, value))
                    clock.now += 1
                assert clock.now == now
                before_lsn = store.last_lsn
                async with open_repository(os.path.join(root, "repo")) as repo:
                    plan = await plan_undo(repo, t1, t2)
                refused = None
                options = UndoOptions(force=mode == "force", skip_conflicts=mode == "skip_conflicts")
                try:
                    await apply_undo(plan, StoreTarget(store), options)
                except UndoConflict as exc:
                    refused = exc.keys
                state = {}
                for key in sorted(keys):
                    found = await store.get_with_expiry(key)
                    if found is not None:
                        state[key] = found
                return state, refused, before_lsn, store.last_lsn

        state, refused, before_lsn, after_lsn = trio.run(undo)
        if conflicts and mode == "plain":
            assert refused == conflicts, (refused, conflicts)
            assert state == current, "a refused undo wrote something"
            assert after_lsn == before_lsn
            return
        assert refused is None, refused
        assert state == final, (t1, t2, reverting, conflicts)
        assert after_lsn - before_lsn == (1 if state != current else 0), "the undo is one commit"


def test_undo_refuses_an_empty_range(tmp_path: object) -> None:
    from pitr.errors import InvalidArgument

    async def main() -> None:
        root = str(tmp_path)
        await write_history(root, [("put", b"a/1", b"x", None), ("cycle",)])
        async with open_repository(os.path.join(root, "repo")) as repo:
            with pytest.raises(InvalidArgument, match="empty"):
                await plan_undo(repo, 5, 5)

    trio.run(main)
