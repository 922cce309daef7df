"""The record codec: round trips, bounds, and garbage that must fail cleanly and cheaply."""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from crc32c import crc32c
from hypothesis import assume, given
from hypothesis import strategies as st

from segments import CorruptFile, SegmentsError
from segments import record as rec
from tests.segments.strategies import I64, encode_all, ops, record_runs, source_revs


def reframe(head_and_payload: bytes | bytearray) -> bytes:
    """Recompute the length and CRC of a record whose payload was edited."""
    data = bytearray(head_and_payload)
    struct.pack_into("<I", data, 4, len(data) - 8)
    struct.pack_into("<I", data, 0, crc32c(bytes(data[4:])))
    return bytes(data)


@given(lsn=st.integers(0, rec.MAX_LSN), ts=I64, batch=st.lists(ops, min_size=1, max_size=8), rev=source_revs,
       gap=st.booleans())
def test_record_round_trip(lsn: int, ts: int, batch: list[rec.Op], rev: int | None, gap: bool) -> None:
    data = rec.encode_record(lsn, ts, batch, rev, gap=gap)
    assert rec.decode_record(data) == rec.Record(lsn, ts, tuple(batch), rev, gap=gap)
    assert list(rec.scan_spans(data)) == [rec.Span(lsn, ts, 0, len(data))]


@given(record_runs(max_size=20))
def test_consecutive_records_decode_in_order(records: list[rec.Record]) -> None:
    assert list(rec.decode_records(encode_all(records))) == records


def test_empty_keys_and_values_round_trip() -> None:
    batch = [rec.put(b"", b""), rec.delete(b""), rec.put(b"k", b"", 0)]
    assert rec.decode_record(rec.encode_record(0, 0, batch)).ops == tuple(batch)


@pytest.mark.parametrize(
    ("lsn", "ts", "batch", "rev"),
    [
        (1, 0, [], None),
        (-1, 0, [rec.delete(b"k")], None),
        (rec.MAX_LSN + 1, 0, [rec.delete(b"k")], None),
        (1, 1 << 63, [rec.delete(b"k")], None),
        (1, 0, [rec.delete(b"k")], 1 << 64),
        (1, 0, [rec.put(b"k", b"v", 1 << 63)], None),
        (1, 0, [rec.Op(9, b"k")], None),
        (1, 0, [rec.put(b"k" * (rec.MAX_KEY + 1), b"")], None),
    ],
)
def test_encoder_rejects_out_of_bounds_input(lsn: int, ts: int, batch: list[rec.Op], rev: int | None) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        rec.encode_record(lsn, ts, batch, rev)


def test_delete_never_carries_a_value() -> None:
    data = rec.encode_record(1, 1, [rec.Op(rec.DELETE, b"k", b"ignored", 5)])
    assert rec.decode_record(data).ops == (rec.delete(b"k"),)


def test_delete_with_a_value_on_disk_is_corrupt() -> None:
    good = bytearray(rec.encode_record(1, 1, [rec.delete(b"k")]))
    struct.pack_into("<I", good, rec.HEADER_SIZE + 8, 1)  # value_len = 1
    with pytest.raises(CorruptFile, match="runs past"):
        rec.decode_record(reframe(good))
    with pytest.raises(CorruptFile, match="delete carries"):
        rec.decode_record(reframe(good + b"x"))


def test_unknown_record_type_is_skippable_only_on_request() -> None:
    data = bytearray(rec.encode_record(5, 9, [rec.put(b"k", b"v")]))
    data[8] = 42
    data = bytearray(reframe(data))
    span = rec.check_record_at(data, 0, len(data))
    assert rec.decode_payload(data, span, skip_unknown=True) is None
    with pytest.raises(CorruptFile, match="unknown record type 42") as info:
        rec.decode_payload(data, span)
    assert info.value.lsn == 5
    assert info.value.hint is not None
    assert list(rec.decode_records(bytes(data) + rec.encode_record(6, 10, [rec.delete(b"k")]),
                                   skip_unknown=True)) == [rec.Record(6, 10, (rec.delete(b"k"),))]


def test_length_is_checked_against_the_remaining_bytes() -> None:
    data = rec.encode_record(1, 1, [rec.put(b"k", b"v" * 100)])
    for cut in (0, 7, rec.HEADER_SIZE - 1, rec.HEADER_SIZE, len(data) - 1):
        with pytest.raises(CorruptFile):
            rec.decode_record(data[:cut])
    with pytest.raises(CorruptFile, match="bytes after the record"):
        rec.decode_record(data + b"\0")


def test_lengths_above_the_limits_are_refused_before_reading() -> None:
    head = bytearray(rec.HEADER.pack(0, rec.MAX_PAYLOAD + 1, 1, 0, 0, 1, 1, 1))
    with pytest.raises(CorruptFile, match="out of bounds"):
        rec.check_record_at(bytes(head), 0, len(head))
    huge_key = rec.OP_HEADER.pack(rec.PUT, 0, 0, rec.MAX_KEY + 1, 0)
    data = reframe(rec.HEADER.pack(0, 0, 1, 0, 0, 1, 1, 1) + huge_key + b"k" * 16)
    with pytest.raises(CorruptFile, match="runs past"):
        rec.decode_record(data)


@given(st.binary(max_size=600))
def test_random_bytes_fail_cleanly(data: bytes) -> None:
    """Random bytes raise from the segments error tree, or are records that encode back to them."""
    try:
        records = list(rec.decode_records(data))
    except SegmentsError:
        records = None
    if records is not None:
        assert encode_all(records) == data, f"decoded {len(records)} records from bytes they do not encode to"


@st.composite
def checksummed_garbage(draw: st.DrawFn) -> bytes:
    """Records whose checksum is right but whose payload was mangled: only the parser stands guard."""
    records = draw(record_runs(max_size=1, max_ops=6))
    data = bytearray(encode_all(records))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["byte", "u32", "cut", "grow"]))
        if kind == "byte" and len(data) > 8:
            data[draw(st.integers(8, len(data) - 1))] = draw(st.integers(0, 255))
        elif kind == "u32" and len(data) >= 12:
            at = draw(st.integers(8, len(data) - 4))
            struct.pack_into("<I", data, at, draw(st.sampled_from([0, 1, 255, 1 << 20, (1 << 32) - 1])))
        elif kind == "cut" and len(data) > rec.HEADER_SIZE:
            del data[draw(st.integers(rec.HEADER_SIZE, len(data) - 1)):]
        else:
            data += draw(st.binary(min_size=1, max_size=40))
    assume(len(data) >= rec.HEADER_SIZE)
    return reframe(data)


@given(checksummed_garbage())
def test_checksummed_garbage_raises_only_corrupt_file_and_allocates_little(data: bytes) -> None:
    tracemalloc.start()
    try:
        try:
            rec.decode_record(data)
        except CorruptFile:
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # decoded objects cost a bounded multiple of the input; declared lengths never drive allocation
    assert peak < 16 * len(data) + 64 * 1024


@st.composite
def record_streams(draw: st.DrawFn) -> tuple[bytes, int, int]:
    """Encoded runs, sometimes damaged or out of order, with the LSN and time the run should follow."""
    records = draw(record_runs(max_size=8))
    if len(records) > 1 and draw(st.booleans()):
        i = draw(st.integers(0, len(records) - 2))
        change = draw(st.sampled_from(["swap", "same time", "skip"]))
        if change == "swap":
            records[i], records[i + 1] = records[i + 1], records[i]
        elif change == "same time":
            records[i + 1] = records[i + 1]._replace(ts_ns=records[i].ts_ns)
        else:
            records[i + 1] = records[i + 1]._replace(lsn=records[i + 1].lsn + 1)
    data = encode_all(records)
    if draw(st.booleans()):
        data = bytearray(data)
        data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        data = bytes(data)
    first_lsn = records[0].lsn + draw(st.sampled_from([0, 0, 1]))
    after_ts = records[0].ts_ns - draw(st.sampled_from([1, 1, 0]))
    return data, first_lsn, after_ts


@given(record_streams())
def test_check_run_agrees_with_scan_spans(stream: tuple[bytes, int, int]) -> None:
    data, first_lsn, after_ts = stream
    try:
        spans = list(rec.scan_spans(data))
        lsns_ok = [s.lsn for s in spans] == list(range(first_lsn, first_lsn + len(spans)))
        times = [after_ts] + [s.ts_ns for s in spans]
        expected_ok = lsns_ok and all(b > a for a, b in zip(times, times[1:], strict=False))
    except CorruptFile:
        expected_ok = False
    try:
        run = rec.check_run(data, first_lsn, after_ts)
    except CorruptFile:
        assert not expected_ok
        return
    assert expected_ok
    assert run == rec.Run([s.end for s in spans], spans[0].ts_ns, spans[-1].ts_ns)


@given(lsn=st.integers(0, (1 << 63) - 1), ts=st.integers(-(1 << 63), (1 << 63) - 1),
       kind=st.sampled_from([rec.PUT, rec.DELETE]), key=st.binary(max_size=64), value=st.binary(max_size=64))
def test_encode_single_matches_encode_record(lsn: int, ts: int, kind: int, key: bytes, value: bytes) -> None:
    op = rec.Op(kind, key, value if kind == rec.PUT else b"")
    assert rec.encode_single(lsn, ts, kind, key, value) == rec.encode_record(lsn, ts, [op])
