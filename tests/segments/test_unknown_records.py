"""What a restore cannot apply is refused, never passed over: a record of an unknown type, a commit
without operations (by the replay fold, and an unknown type by full verification too)."""

from __future__ import annotations

import io
import struct

import pytest
from crc32c import crc32c

from segments import BytesSource, CorruptFile, SegmentReader, chain
from segments import record as rec
from segments.block_replay import ReplayBlock, replay_block, replay_block_reference
from segments.fold import Change
from segments.segment_writer import seal_segment
from tests.segments.strategies import STORE_ID, encode_all, plain_records


def with_header_field(record: bytes, offset: int, fmt: str, value: int) -> bytes:
    """The record with one header field changed and its CRC recomputed (valid CRC, invalid body)."""
    data = bytearray(record)
    struct.pack_into(fmt, data, offset, value)
    struct.pack_into("<I", data, 0, crc32c(bytes(data[4:])))
    return bytes(data)


@pytest.mark.parametrize("replay", [replay_block_reference, replay_block])
def test_an_unknown_record_type_is_refused_not_passed_over(replay: ReplayBlock) -> None:
    first, second, third = (encode_all([r]) for r in plain_records(5, 3))
    data = first + with_header_field(second, 8, "<B", 9) + third  # type 9: a future kind of record
    changes: dict[bytes, Change] = {}
    with pytest.raises(CorruptFile, match="unknown record type 9") as caught:
        replay(data, changes, 5, 0, 0, rec.MAX_LSN, False)
    assert caught.value.lsn == 6


@pytest.mark.parametrize("replay", [replay_block_reference, replay_block])
def test_a_commit_without_operations_is_refused(replay: ReplayBlock) -> None:
    bare = rec.HEADER.pack(0, rec.PAYLOAD_FIXED, rec.TYPE_COMMIT, 0, 0, 0, 5, 1_795_961_387_000_000_000)
    data = with_header_field(bare, 12, "<I", 0)  # a well-framed record of no operations
    with pytest.raises(CorruptFile, match="operation count 0 does not fit"):
        replay(data, {}, 5, 0, 0, rec.MAX_LSN, False)


def test_full_verification_refuses_a_record_type_a_restore_cannot_replay() -> None:
    records = plain_records(5, 4)
    encoded = [encode_all([r]) for r in records]
    encoded[2] = with_header_field(encoded[2], 8, "<B", 9)
    buf = b"".join(encoded)
    out = io.BytesIO()
    seal_segment(out, STORE_ID, chain.genesis(STORE_ID), buf, list(rec.scan_spans(buf)), 0)
    reader = SegmentReader(BytesSource(out.getvalue(), "future.seg"))
    with pytest.raises(CorruptFile, match="unknown record type 9") as caught:
        reader.verify()  # every digest matches: only the type tells this pitr it cannot restore it
    assert (caught.value.path, caught.value.lsn) == ("future.seg", 7)
