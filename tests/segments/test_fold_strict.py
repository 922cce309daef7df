"""The replay fold refuses what it cannot apply: a record of an unknown type, a commit without operations."""

from __future__ import annotations

import struct

import pytest
from crc32c import crc32c

from segments import CorruptFile
from segments import record as rec
from segments.fold import Change, fold_records
from tests.segments.strategies import encode_all, plain_records


def with_header_field(record: bytes, offset: int, fmt: str, value: int) -> bytes:
    """The record with one header field changed and its CRC recomputed (valid CRC, invalid body)."""
    data = bytearray(record)
    struct.pack_into(fmt, data, offset, value)
    struct.pack_into("<I", data, 0, crc32c(bytes(data[4:])))
    return bytes(data)


@pytest.mark.parametrize("check_crc", [True, False])
def test_an_unknown_record_type_is_refused_not_passed_over(check_crc: bool) -> None:
    first, second, third = (encode_all([r]) for r in plain_records(5, 3))
    data = first + with_header_field(second, 8, "<B", 9) + third  # type 9: a future kind of record
    changes: dict[bytes, Change] = {}
    with pytest.raises(CorruptFile, match="unknown record type 9") as caught:
        fold_records(data, changes, 5, rec.MAX_LSN, rec.MAX_I64, path="seg", check_crc=check_crc)
    assert caught.value.lsn == 6
    assert caught.value.path == "seg"


@pytest.mark.parametrize("check_crc", [True, False])
def test_a_commit_without_operations_is_refused(check_crc: bool) -> None:
    bare = rec.HEADER.pack(0, rec.PAYLOAD_FIXED, rec.TYPE_COMMIT, 0, 0, 0, 5, 1_795_961_387_000_000_000)
    data = with_header_field(bare, 12, "<I", 0)  # a well-framed record of no operations
    with pytest.raises(CorruptFile, match="without operations"):
        fold_records(data, {}, 5, rec.MAX_LSN, rec.MAX_I64, check_crc=check_crc)
