"""The replay fold: the same result as decoding records one by one, and clean failures on garbage."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from segments import SegmentsError
from segments import record as rec
from segments.fold import Change, fold_records
from tests.segments.strategies import encode_all, record_runs
from tests.segments.test_record import checksummed_garbage


@given(records=record_runs(max_size=10), data=st.data())
def test_fold_matches_decoding_record_by_record(records: list[rec.Record], data: st.DataObject) -> None:
    first, last = records[0].lsn, records[-1].lsn
    expected = data.draw(st.integers(first, last + 1), label="expected_lsn")
    max_lsn = data.draw(st.integers(expected - 1, last + 1), label="max_lsn")
    max_ts = data.draw(st.sampled_from([r.ts_ns for r in records] + [records[-1].ts_ns + 1]), label="max_ts")
    model: dict[bytes, Change] = {}
    next_lsn, last_ts, stopped = expected, None, False
    for r in records:
        if r.lsn > max_lsn or r.ts_ns > max_ts:
            stopped = True
            break
        if r.lsn < expected:
            continue
        for op in r.ops:
            model[op.key] = None if op.kind != rec.PUT else \
                op.value if op.expires_at_ns is None else (op.value, op.expires_at_ns)
        next_lsn, last_ts = r.lsn + 1, r.ts_ns
    changes: dict[bytes, Change] = {}
    assert fold_records(encode_all(records), changes, expected, max_lsn, max_ts) == (next_lsn, last_ts, stopped)
    assert changes == model


@given(checksummed_garbage())
def test_fold_raises_only_corrupt_file_on_checksummed_garbage(data: bytes) -> None:
    (lsn,) = rec.U64.unpack_from(data, rec.LSN_OFFSET)
    try:
        fold_records(data, {}, lsn, rec.MAX_LSN, rec.MAX_I64)
    except SegmentsError:
        pass
