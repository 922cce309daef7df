"""Archive segments: sealing, seeking by LSN and time, and detection of any damage."""

from __future__ import annotations

import dataclasses
import io
import struct

import pytest
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from segments import (
    BytesSource,
    CorruptFile,
    SegmentBuilder,
    SegmentReader,
    SegmentsError,
    UnsupportedVersion,
    chain,
    read_meta,
)
from segments import record as rec
from segments import segment_format as fmt
from tests.segments.strategies import STORE_ID, encode_all, flip, plain_records, record_runs, seal

block_sizes = st.integers(32, 1024)


def read_all(data: bytes) -> list[rec.Record]:
    """Everything a reader would accept from `data`: full verification, then every record."""
    reader = SegmentReader(BytesSource(data, "test.seg"))
    reader.verify()
    return list(reader.iter_records())


@settings(deadline=None)
@given(records=record_runs(min_size=1, max_size=30), block_size=block_sizes)
def test_seal_and_read_back(records: list[rec.Record], block_size: int) -> None:
    data, sealed = seal(records, block_size=block_size, complete_through_ns=records[-1].ts_ns + 5)
    assert read_all(data) == records
    meta = read_meta(BytesSource(data))
    raw = encode_all(records)
    piece = chain.Piece(records[0].lsn, records[-1].lsn, chain.records_digest(raw))
    assert meta.pieces == [piece]
    assert meta.chain_digest == sealed.chain_digest == chain.link(chain.genesis(STORE_ID), piece)
    assert (meta.first_lsn, meta.last_lsn) == (sealed.first_lsn, sealed.last_lsn) == (records[0].lsn, records[-1].lsn)
    assert meta.trailer.complete_through_ns == records[-1].ts_ns + 5
    assert (meta.trailer.record_count, meta.trailer.raw_bytes, meta.size) == (len(records), len(raw), len(data))
    assert sealed.size == len(data)
    assert [e.first_lsn for e in meta.index] == [b.first_lsn for b in sealed.blocks]


def test_complete_through_is_never_before_the_last_commit() -> None:
    records = plain_records(1, 3)
    _, sealed = seal(records, complete_through_ns=0)
    assert sealed.complete_through_ns == records[-1].ts_ns


@settings(deadline=None)
@given(records=record_runs(min_size=1, max_size=30), block_size=block_sizes, data=st.data())
def test_iter_records_ranges(records: list[rec.Record], block_size: int, data: st.DataObject) -> None:
    blob, _ = seal(records, block_size=block_size)
    reader = SegmentReader(BytesSource(blob))
    first, last = records[0].lsn, records[-1].lsn
    lo = data.draw(st.none() | st.integers(first - 3, last + 3), label="from_lsn")
    hi = data.draw(st.none() | st.integers(first - 3, last + 3), label="to_lsn")
    expected = [r for r in records if (lo is None or r.lsn >= lo) and (hi is None or r.lsn <= hi)]
    assert list(reader.iter_records(lo, hi)) == expected


@settings(deadline=None)
@given(records=record_runs(min_size=1, max_size=40), block_size=block_sizes, data=st.data())
def test_seek_by_lsn_and_time_lands_in_the_right_block(
    records: list[rec.Record], block_size: int, data: st.DataObject
) -> None:
    blob, _ = seal(records, block_size=block_size)
    reader = SegmentReader(BytesSource(blob))
    blocks = [[s.lsn for s in reader.block_spans(i, reader.read_block(i))] for i in range(len(reader.meta.index))]
    for r in records:
        assert r.lsn in blocks[reader.block_for_lsn(r.lsn)]
    with pytest.raises(ValueError, match="not in"):
        reader.block_for_lsn(records[-1].lsn + 1)
    anchor = data.draw(st.sampled_from(records), label="anchor").ts_ns
    for ts in (anchor - 1, anchor, anchor + 1, records[0].ts_ns - 1, records[-1].ts_ns + 1):
        at_or_before = [r for r in records if r.ts_ns <= ts]
        i = reader.block_for_ts(ts)
        if not at_or_before:
            assert i == -1
        else:
            assert at_or_before[-1].lsn in blocks[i]


def test_many_blocks_and_reading_only_the_needed_ones() -> None:
    records = plain_records(1, 500)
    blob, sealed = seal(records, block_size=1024)
    assert len(sealed.blocks) > 40

    class CountingSource(BytesSource):
        reads: list[int] = []

        def read(self, offset: int, length: int) -> bytes:
            self.reads.append(offset)
            return super().read(offset, length)

    source = CountingSource(blob)
    reader = SegmentReader(source)
    source.reads.clear()
    assert [r.lsn for r in reader.iter_records(250, 252)] == [250, 251, 252]
    i = reader.block_for_lsn(250)
    assert set(source.reads) <= {reader.meta.index[j].offset for j in (i, i + 1)}


def segment_damage_is_detected(data: bytes, records: list[rec.Record], offset: int, xor: int) -> None:
    try:
        found = read_all(flip(data, offset, xor))
    except SegmentsError:
        return
    raise AssertionError(f"change at offset {offset} went unnoticed (read {len(found)} records)")


@settings(deadline=None)
@given(records=record_runs(min_size=1, max_size=10), block_size=block_sizes, data=st.data())
def test_any_single_byte_change_is_detected(records: list[rec.Record], block_size: int, data: st.DataObject) -> None:
    blob, _ = seal(records, block_size=block_size)
    offset = data.draw(st.integers(0, len(blob) - 1), label="offset")
    segment_damage_is_detected(blob, records, offset, data.draw(st.integers(1, 255), label="xor"))


def test_every_byte_of_a_small_segment_is_covered() -> None:
    records = plain_records(1, 6, value_size=5)
    blob, sealed = seal(records, block_size=64)
    assert len(sealed.blocks) >= 3
    for offset in range(len(blob)):
        segment_damage_is_detected(blob, records, offset, 0x04)


def test_quick_check_covers_header_tables_and_trailer() -> None:
    blob, _ = seal(plain_records(1, 6), block_size=64)
    meta = read_meta(BytesSource(blob))
    covered = [*range(fmt.HEADER_SIZE), *range(meta.trailer.index_offset, len(blob) - fmt.TRAILER_SIZE + 92)]
    for offset in covered:
        with pytest.raises(SegmentsError):
            read_meta(BytesSource(flip(blob, offset, 0x10)))


def test_unsupported_version() -> None:
    blob = bytearray(seal(plain_records(1, 2))[0])
    struct.pack_into("<H", blob, 8, fmt.VERSION + 1)
    with pytest.raises(CorruptFile, match="header CRC"):
        read_meta(BytesSource(bytes(blob)))
    struct.pack_into("<I", blob, fmt.HEADER_SIZE - 4, crc32c(bytes(blob[: fmt.HEADER_SIZE - 4])))
    with pytest.raises(UnsupportedVersion):
        read_meta(BytesSource(bytes(blob)))


def test_unknown_record_types_are_skipped_on_request() -> None:
    records = plain_records(1, 3)
    parts = [bytearray(rec.encode_record(r.lsn, r.ts_ns, r.ops)) for r in records]
    parts[1][8] = 77
    struct.pack_into("<I", parts[1], 0, crc32c(bytes(parts[1][4:])))
    buf = b"".join(parts)
    out = io.BytesIO()
    builder = SegmentBuilder(out, STORE_ID, chain.genesis(STORE_ID))
    builder.add_piece(buf, list(rec.scan_spans(buf)))
    builder.finish(0)
    reader = SegmentReader(BytesSource(out.getvalue()))
    with pytest.raises(CorruptFile, match="unknown record type 77"):
        reader.verify()  # a restore cannot replay it, so full verification does not pass it
    assert list(reader.iter_records(skip_unknown=True)) == [records[0], records[2]]
    with pytest.raises(CorruptFile, match="unknown record type 77"):
        list(reader.iter_records())


def test_builder_rejects_pieces_that_do_not_continue() -> None:
    buf = encode_all(plain_records(1, 6))
    spans = list(rec.scan_spans(buf))
    builder = SegmentBuilder(io.BytesIO(), STORE_ID, chain.genesis(STORE_ID))
    builder.add_piece(buf, spans[:2])
    with pytest.raises(ValueError, match="does not follow"):
        builder.add_piece(buf, spans[3:])
    with pytest.raises(ValueError, match="at least one"):
        builder.add_piece(buf, [])
    with pytest.raises(ValueError, match="at least one record"):
        SegmentBuilder(io.BytesIO(), STORE_ID, chain.genesis(STORE_ID)).finish(0)


@settings(deadline=None)
@given(garbage=st.binary(max_size=600), cut=st.integers(0, 2000), with_magic=st.booleans())
def test_garbage_fails_cleanly(garbage: bytes, cut: int, with_magic: bool) -> None:
    blob, _ = seal(plain_records(1, 8), block_size=128)
    candidates = [garbage, blob[:cut] + garbage, (fmt.MAGIC + garbage) if with_magic else garbage + blob[-200:]]
    for data in candidates:
        try:
            read_all(data)
        except SegmentsError:
            continue
        assert data == blob


def test_records_out_of_lsn_order_are_refused() -> None:
    records = plain_records(1, 6)
    shuffled = [records[0], records[2]._replace(ts_ns=records[1].ts_ns), records[1]._replace(ts_ns=records[2].ts_ns),
                *records[3:]]
    buf = encode_all(shuffled)
    out = io.BytesIO()
    builder = SegmentBuilder(out, STORE_ID, chain.genesis(STORE_ID))
    builder.add_piece(buf, list(rec.scan_spans(buf)))  # the builder trusts its caller's spans
    builder.finish(0)
    reader = SegmentReader(BytesSource(out.getvalue()))
    with pytest.raises(CorruptFile, match="expected LSN 2, found 3"):
        reader.verify()
    with pytest.raises(CorruptFile, match="do not match the block index"):
        list(reader.iter_records())


def test_a_record_of_the_largest_value_fits_in_a_block() -> None:
    first, *small = plain_records(1, 3)
    big = first._replace(ops=(rec.put(b"k", b"v" * rec.MAX_VALUE),))
    blob, sealed = seal([big, *small], block_size=1024)
    assert sealed.blocks[0].raw_size > rec.MAX_VALUE
    reader = SegmentReader(BytesSource(blob))
    reader.verify()
    assert [r.lsn for r in reader.iter_records(2)] == [2, 3]


def test_block_size_is_bounded() -> None:
    with pytest.raises(ValueError, match="block size"):
        SegmentBuilder(io.BytesIO(), STORE_ID, chain.genesis(STORE_ID), block_size=fmt.MAX_BLOCK_SIZE + 1)
    with pytest.raises(ValueError, match="block size"):
        SegmentBuilder(io.BytesIO(), STORE_ID, chain.genesis(STORE_ID), block_size=0)


@settings(deadline=None)
@given(records=record_runs(min_size=1, max_size=40), block_size=block_sizes, data=st.data())
def test_reading_a_run_of_blocks_at_once_gives_each_block(records: list[rec.Record], block_size: int,
                                                          data: st.DataObject) -> None:
    blob, _ = seal(records, block_size=block_size)
    reader = SegmentReader(BytesSource(blob, "test.seg"))
    count = len(reader.meta.index)
    first = data.draw(st.integers(0, count - 1), label="first")
    stop = data.draw(st.integers(first, count), label="stop")
    assert reader.read_blocks(first, stop) == [reader.read_block(i) for i in range(first, stop)]


@pytest.mark.parametrize("where", ["crc", "frame"])
def test_a_damaged_block_in_a_run_is_named(where: str) -> None:
    records = plain_records(1, 60)
    blob, _ = seal(records, block_size=200)
    meta = read_meta(BytesSource(blob, "damaged.seg"))
    assert len(meta.index) >= 4
    victim = meta.index[2]
    if where == "crc":  # a changed byte: the block CRC no longer matches
        damaged = flip(blob, victim.offset + victim.compressed_size // 2, 0x40)
    else:  # consistent CRC over a frame that does not decompress: only zstd notices
        frame = bytearray(blob[victim.offset: victim.offset + victim.compressed_size])
        frame[-3:] = b"\xff\xff\xff"
        damaged = blob[:victim.offset] + bytes(frame) + blob[victim.offset + len(frame):]
        meta.index[2] = dataclasses.replace(victim, crc=crc32c(bytes(frame)))  # as if the index agreed
    reader = SegmentReader(BytesSource(damaged, "damaged.seg"), meta)
    with pytest.raises(CorruptFile) as caught:
        reader.read_blocks(0, len(meta.index))
    assert caught.value.path == "damaged.seg"
    assert caught.value.offset == victim.offset
