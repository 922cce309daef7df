"""Lengths read from a file never drive an allocation past what the file's bytes can hold.

A zstd frame can claim any content size in its header; a re-sealed index can
agree with it. A block of a few dozen bytes declaring 60 MiB must be refused
before a decompressor allocates it (no frame decompresses to more than
32768 times its size: docs/format.md).
"""

from __future__ import annotations

import io
import struct
import tracemalloc
from collections.abc import Callable

import pytest
import zstandard
from blake3 import blake3
from crc32c import crc32c

from segments import BytesSource, CorruptFile, SegmentReader, SnapshotReader
from segments import segment_format as fmt
from segments import snapshot as snap
from tests.fuzz.reseal import reseal_snapshot
from tests.segments.strategies import plain_records, seal
from tests.segments.test_snapshot import HEADER

CLAIM = 60 << 20  # under every format maximum


def claiming(frame: bytes, size: int) -> bytes:
    """The zstd frame with its header rewritten to declare `size` bytes of content (single segment)."""
    fhd = frame[4]
    fcs_flag, single, did = fhd >> 6, (fhd >> 5) & 1, fhd & 3
    header = 5 + (0 if single else 1) + [0, 1, 2, 4][did] + {0: int(single), 1: 2, 2: 4, 3: 8}[fcs_flag]
    return frame[:4] + bytes([0xE0]) + struct.pack("<Q", size) + frame[header:]


def refused_within(call: Callable[[], object], limit: int) -> str:
    """Run `call`, which must raise CorruptFile, allocating less than `limit` bytes; the error message."""
    tracemalloc.start()
    try:
        with pytest.raises(CorruptFile) as caught:
            call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < limit, f"allocated {peak} bytes refusing a {CLAIM}-byte claim"
    return str(caught.value)


def forged_segment() -> bytes:
    """A one-block segment whose block and index both claim CLAIM bytes, every checksum recomputed."""
    data, sealed = seal(plain_records(1, 3), block_size=1 << 20)
    (entry,) = sealed.blocks
    frame = claiming(data[entry.offset:entry.offset + entry.compressed_size], CLAIM)
    out = bytearray(data[:entry.offset]) + frame
    index = [fmt.BlockEntry(entry.first_lsn, entry.first_ts_ns, entry.offset, len(frame), CLAIM,
                            entry.record_count, crc32c(frame))]
    meta_reader = SegmentReader(BytesSource(data))
    t = meta_reader.meta.trailer
    fields = (len(out), 1, len(meta_reader.meta.pieces), t.last_lsn, t.last_ts_ns, t.record_count,
              t.complete_through_ns, CLAIM)
    out += fmt.encode_tail(index, meta_reader.meta.pieces, fields, t.chain_digest)
    out += blake3(bytes(out)).digest() + fmt.END_MAGIC
    return bytes(out)


def test_a_segment_block_claiming_more_than_zstd_can_hold_is_refused_before_allocating() -> None:
    data = forged_segment()
    assert zstandard.frame_content_size(data[fmt.HEADER_SIZE:]) == CLAIM
    message = refused_within(lambda: SegmentReader(BytesSource(data, "forged.seg")).read_block(0), 8 << 20)
    assert "forged.seg" in message


def test_a_snapshot_block_claiming_more_than_zstd_can_hold_is_refused_before_allocating() -> None:
    out = io.BytesIO()
    writer = snap.SnapshotWriter(out, HEADER, block_size=1 << 20)
    writer.add_many([(b"k%03d" % i, b"v" * 20, None) for i in range(10)])
    writer.finish()
    data = bytearray(out.getvalue())
    reader = SnapshotReader(BytesSource(bytes(data)))
    (block,) = reader.blocks
    frame = claiming(bytes(data[block.offset:block.offset + block.compressed_size]), CLAIM)
    grown = len(frame) - block.compressed_size
    index_offset = reader.footer.index_offset + grown
    entry = snap.INDEX_ENTRY.pack(block.offset, len(frame), CLAIM, block.entry_count, crc32c(frame),
                                  len(block.first_key)) + block.first_key
    footer_fields = snap.FOOTER_FIELDS.pack(index_offset, 1, len(entry), reader.footer.entry_count,
                                            reader.footer.logical_bytes, reader.footer.state_digest)
    forged = bytes(data[:block.offset]) + frame + entry + footer_fields + bytes(8) + bytes(32) + snap.END_MAGIC
    forged = reseal_snapshot(forged)
    message = refused_within(lambda: SnapshotReader(BytesSource(forged, "forged.snap")).read_block(0), 8 << 20)
    assert "forged.snap" in message
