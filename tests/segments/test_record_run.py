"""`encode_run` (the bulk encoder of imports) against `encode_record`, commit by commit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segments import record as rec

ops = st.lists(st.one_of(
    st.builds(rec.put, st.binary(max_size=12), st.binary(max_size=40)),
    st.builds(rec.put, st.binary(max_size=12), st.binary(max_size=8), st.integers(rec.MIN_I64, rec.MAX_I64)),
    st.builds(rec.delete, st.binary(max_size=12)),
), min_size=1, max_size=3)


@given(st.integers(0, rec.MAX_LSN), st.lists(st.tuples(st.integers(rec.MIN_I64, rec.MAX_I64), ops), max_size=20))
def test_a_run_encodes_to_the_records_of_its_commits(first_lsn: int, commits: list[tuple[int, list[rec.Op]]]) -> None:
    times, run = [ts for ts, _ in commits], [tuple(o) for _, o in commits]
    if first_lsn + len(run) - 1 > rec.MAX_LSN:
        with pytest.raises(ValueError, match="out of range"):
            rec.encode_run(first_lsn, times, run)
        return
    expected = b"".join(rec.encode_record(first_lsn + i, ts, o) for i, (ts, o) in enumerate(zip(times, run, strict=True)))
    assert b"".join(rec.encode_run(first_lsn, times, run)) == expected


def test_bounds_are_refused_as_encode_record_refuses_them() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        rec.encode_run(1, [rec.MAX_I64 + 1], [(rec.put(b"k", b"v"),)])
    with pytest.raises(ValueError, match="exceeds"):
        rec.encode_run(1, [1], [(rec.put(b"k" * (rec.MAX_KEY + 1), b"v"),)])
