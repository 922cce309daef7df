"""The live store's apply of plain puts a batch at a time (`StateDB._apply_plain_columns`, the row
codec's compiled twin when built) against the row-at-a-time form it replaced (`_apply_plain_rows`):
the same rows, expiry index, digest and count after any history, and the same refusal of a damaged
old row."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pitr.datadir.state import StateDB
from pitr.errors import CorruptData
from segments.fold import Change

keys = st.sampled_from([b"a", b"b", b"c", b"d", b"k" * 40, bytes(range(1, 9))])
before = st.dictionaries(keys, st.none() | st.binary(max_size=6) | st.tuples(st.binary(max_size=6),
                                                                             st.integers(-3, 1 << 62)), max_size=6)
puts = st.dictionaries(keys, st.binary(max_size=6), max_size=6)


def contents(db: StateDB) -> tuple[object, ...]:
    with db.env.begin() as txn:
        data = list(txn.cursor(db.data))
        expiry = list(txn.cursor(db.expiry))
    cp = db.stored_checkpoint()
    return data, expiry, cp


def apply_plain(db: StateDB, round_: dict[bytes, bytes], lsn: int, rows: bool) -> None:
    keys_ = sorted(round_)
    values = [round_[key] for key in keys_]
    apply = db._apply_plain_rows if rows else db._apply_plain_columns
    apply(keys_, values, lsn, lsn * 10, (0, 0))


@given(history=st.lists(before, max_size=3), rounds=st.lists(puts, min_size=1, max_size=3))
def test_a_batch_of_puts_applies_as_the_row_at_a_time_form_applies_it(
        tmp_path_factory: pytest.TempPathFactory, history: list[dict[bytes, Change]],
        rounds: list[dict[bytes, bytes]]) -> None:
    states = [StateDB(str(tmp_path_factory.mktemp("state"))) for _ in range(2)]
    try:
        for db, rows in zip(states, (False, True), strict=True):
            for n, round_ in enumerate(history, start=1):
                db.apply(round_, n, n * 10)
            for n, plain in enumerate(rounds, start=len(history) + 1):
                apply_plain(db, plain, n, rows)
        columns, reference = (contents(db) for db in states)
        assert columns == reference
        cp = states[0].stored_checkpoint()
        assert (cp.digest, cp.count) == states[0].state_digest(None)
    finally:
        for db in states:
            db.close()


def test_a_damaged_old_row_is_refused_as_the_row_at_a_time_form_refuses_it(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    refusals = []
    for rows in (False, True):
        db = StateDB(str(tmp_path_factory.mktemp("state")))
        try:
            db.apply({b"a": b"1", b"b": (b"2", 5), b"c": b"3"}, 1, 10)
            with db.env.begin(write=True) as txn:
                raw = bytearray(txn.get(b"b", db=db.data))
                raw[-1] ^= 1
                txn.put(b"b", bytes(raw), db=db.data)
            with pytest.raises(CorruptData) as caught:
                apply_plain(db, {b"a": b"x", b"b": b"y"}, 2, rows)
            refusals.append(str(caught.value).replace(db.path, "STATE"))
            assert db.stored_checkpoint().applied_lsn == 1, "nothing of the refused batch was applied"
        finally:
            db.close()
    assert refusals[0] == refusals[1]
    assert "b" in refusals[0]
