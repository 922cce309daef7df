"""The replay fold: the same result as decoding records one by one, and clean failures on garbage."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from segments import CorruptFile
from segments import record as rec
from segments.fold import Change, fold_records
from tests.segments.strategies import encode_all, record_runs
from tests.segments.test_record import checksummed_garbage


@st.composite
def single_put_runs(draw: st.DrawFn) -> list[rec.Record]:
    """Runs in which most commits take the fold's single-put fast path, with the odd delete or batch."""
    first, ts = draw(st.integers(0, 1 << 40)), draw(st.integers(0, 1 << 60))
    records = []
    for i in range(draw(st.integers(1, 30))):
        ts += draw(st.integers(1, 1000))
        key = draw(st.sampled_from([b"a", b"b", b"c", b"dd"]))
        shape = draw(st.sampled_from(["put"] * 6 + ["delete", "batch", "expiring"]))
        if shape == "put":
            ops: tuple[rec.Op, ...] = (rec.put(key, draw(st.binary(max_size=8))),)
        elif shape == "delete":
            ops = (rec.delete(key),)
        elif shape == "batch":
            ops = (rec.put(key, b"x"), rec.delete(b"a"))
        else:
            ops = (rec.put(key, b"e", ts + 5),)
        records.append(rec.Record(first + i, ts, ops, None))
    return records


@given(records=st.one_of(record_runs(max_size=10), single_put_runs()), data=st.data(), check_crc=st.booleans())
def test_fold_matches_decoding_record_by_record(records: list[rec.Record], data: st.DataObject,
                                                check_crc: bool) -> None:
    """With or without the per-record CRC (a restore trusts the block CRC), and so through the
    single-put fast path too, the fold gives what decoding every record gives."""
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
    got = fold_records(encode_all(records), changes, expected, max_lsn, max_ts, check_crc=check_crc)
    assert got == (next_lsn, last_ts, stopped)
    assert changes == model


def folded(records: list[rec.Record]) -> dict[bytes, Change]:
    """The model: each key's last change over the records, in order."""
    model: dict[bytes, Change] = {}
    for r in records:
        for op in r.ops:
            model[op.key] = None if op.kind != rec.PUT else \
                op.value if op.expires_at_ns is None else (op.value, op.expires_at_ns)
    return model


@given(checksummed_garbage(), st.booleans())
def test_fold_raises_only_corrupt_file_on_checksummed_garbage(data: bytes, check_crc: bool) -> None:
    """Garbage whose checksums are right is refused with CorruptFile (no other error), or it is
    records the decoder reads too and the fold gives exactly their changes."""
    (lsn,) = rec.U64.unpack_from(data, rec.LSN_OFFSET)
    changes: dict[bytes, Change] = {}
    try:
        fold_records(data, changes, lsn, rec.MAX_LSN, rec.MAX_I64, check_crc=check_crc)
    except CorruptFile:
        accepted = False
    else:
        accepted = True
    if accepted:
        assert changes == folded(list(rec.decode_records(data))), "the fold accepted bytes it misread"
