"""The restore engine's hot loops over changes agree with their references, which judge one entry
at a time through `pitr.datadir.overlay.visible` (a delete is absent; a put whose expiry is at or
before the cutoff is expired)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pitr.restore.engine import drop_expiring, drop_expiring_reference, split_live, split_live_reference
from segments import record as rec
from segments.fold import Change

CUTOFFS = st.sampled_from([rec.MIN_I64, -1, 0, 1, 1_000, rec.MAX_I64]) | st.integers(rec.MIN_I64, rec.MAX_I64)
# Expiries near the cutoffs above, so that "at", "just before" and "just after" all occur.
EXPIRIES = st.sampled_from([rec.MIN_I64, -2, -1, 0, 1, 2, 999, 1_000, 1_001, rec.MAX_I64]) | \
    st.integers(rec.MIN_I64, rec.MAX_I64)
puts = st.binary(max_size=8)
changes = st.none() | puts | st.tuples(puts, EXPIRIES)


@given(chunk=st.dictionaries(st.binary(max_size=6), changes, max_size=30), cutoff=CUTOFFS)
def test_split_live_equals_its_reference(chunk: dict[bytes, Change], cutoff: int) -> None:
    items = sorted(chunk.items())
    assert split_live(items, cutoff) == split_live_reference(items, cutoff)


@given(new_keys=st.dictionaries(st.binary(max_size=6), puts | st.tuples(puts, EXPIRIES), max_size=30),
       cutoff=CUTOFFS)
def test_drop_expiring_equals_its_reference(new_keys: dict[bytes, bytes | tuple[bytes, int]], cutoff: int) -> None:
    fast, reference = dict(new_keys), dict(new_keys)
    assert drop_expiring(fast, cutoff) == drop_expiring_reference(reference, cutoff)
    assert fast == reference
