"""WAL format version 2: commit-group frames, torn last groups, invalid bodies, version 1 files."""

from __future__ import annotations

import os
import struct
import uuid
from pathlib import Path

import pytest
from crc32c import crc32c

from segments import MidLogCorruption, SegmentsError, WalWriter, scan_wal, wal
from segments import record as rec
from segments.wal_follow import read_wal_from
from tests.segments.strategies import STORE_ID, plain_records

TS = 1_795_961_387_250_000_000


def write_groups(path: str, groups: list[list[rec.Record]], *, sync_last: bool = True) -> list[int]:
    """A WAL file with one frame per group; returns each frame's offset."""
    writer = WalWriter.create(path, STORE_ID, groups[0][0].lsn, 0, preallocate=1 << 16)
    offsets = []
    for i, group in enumerate(groups):
        offsets.append(writer.size)
        writer.append(b"".join(rec.encode_record(r.lsn, r.ts_ns, r.ops) for r in group), group[-1].lsn)
        if sync_last or i < len(groups) - 1:
            writer.sync()
    writer.close()
    return offsets


def test_the_issue_reproduction_a_torn_last_group_is_repaired_not_refused(tmp_path: Path) -> None:
    """Zero bytes 512..1024 of a file whose one group write of LSNs 2..9 was not fsynced (issue #11, item 12)."""
    records = plain_records(1, 9, value_size=100)
    path = str(tmp_path / wal.wal_name(1))
    offsets = write_groups(path, [records[:1], records[1:]], sync_last=False)
    assert offsets[1] < 512
    assert os.path.getsize(path) > 1024
    end = scan_wal(path).end
    assert end > 1024, "the zeroed range lies inside the last group"
    data = bytearray(Path(path).read_bytes())
    data[512:1024] = bytes(512)
    Path(path).write_bytes(data)
    scan = scan_wal(path, repair=True)
    assert [s.lsn for s in scan.spans] == [1]
    assert scan.torn is not None
    assert scan.torn.offset == offsets[1]
    assert Path(scan.torn.broken_path).read_bytes() == bytes(data[offsets[1] :]).rstrip(b"\0")
    assert os.path.getsize(path) == offsets[1]
    assert scan_wal(path).torn is None


def test_damage_before_the_last_group_is_still_refused(tmp_path: Path) -> None:
    records = plain_records(1, 9, value_size=100)
    path = str(tmp_path / wal.wal_name(1))
    offsets = write_groups(path, [records[:4], records[4:8], records[8:]])
    data = bytearray(Path(path).read_bytes())
    data[offsets[1] + 200] ^= 0x10  # inside the second of three groups
    Path(path).write_bytes(data)
    with pytest.raises(MidLogCorruption) as info:
        scan_wal(path, repair=True)
    assert (info.value.path, info.value.offset, info.value.lsn) == (path, offsets[1], 5)
    assert Path(path).read_bytes() == bytes(data), "a refused file is left untouched"


@pytest.mark.parametrize("where", ["last group", "middle group"])
def test_a_record_with_a_valid_crc_but_an_invalid_body_names_the_file_and_its_offset(
        tmp_path: Path, where: str) -> None:
    """Item 13: never a chunk-relative offset 0 without a path, and never mistaken for a torn tail."""
    records = plain_records(1, 6)
    encoded = [bytearray(rec.encode_record(r.lsn, r.ts_ns, r.ops)) for r in records]
    victim = 4 if where == "last group" else 1
    encoded[victim][rec.HEADER_SIZE] = 9  # operation kind 9 does not exist
    struct.pack_into("<I", encoded[victim], 0, crc32c(bytes(encoded[victim][4:])))
    path = str(tmp_path / wal.wal_name(1))
    writer = WalWriter.create(path, STORE_ID, 1, 0, preallocate=4096)
    groups = [encoded[:3], encoded[3:]]
    for group in groups:
        writer.append(b"".join(group))
        writer.sync()
    writer.close()
    group_start = wal.HEADER_SIZE if victim < 3 else wal.HEADER_SIZE + wal.FRAME_SIZE + sum(map(len, encoded[:3]))
    first_in_group = 0 if victim < 3 else 3
    offset = group_start + wal.FRAME_SIZE + sum(map(len, encoded[first_in_group:victim]))
    with pytest.raises(MidLogCorruption) as info:
        scan_wal(path, repair=True)
    assert (info.value.path, info.value.offset, info.value.lsn) == (path, offset, victim + 1)
    assert "unknown operation kind 9" in str(info.value)
    assert path in str(info.value)
    assert not os.path.exists(path + ".broken")


def test_frame_bytes_are_the_documented_ones() -> None:
    first = rec.encode_record(1, TS, [rec.put(b"k", b"v"), rec.delete(b"old")])
    frame = wal.encode_frame(1, 1, first)
    assert len(frame) == wal.FRAME_SIZE
    crc, count, length, first_lsn, records_crc, reserved = struct.unpack("<IIQQII", frame)
    assert (count, length, first_lsn, records_crc, reserved) == (1, len(first), 1, crc32c(first), 0)
    assert crc == crc32c(frame[4:])


def write_version_1(path: str, records: list[rec.Record], store_id: uuid.UUID = STORE_ID) -> bytes:
    header = wal.encode_header(wal.WalHeader(store_id, records[0].lsn, 0, version=1))
    body = b"".join(rec.encode_record(r.lsn, r.ts_ns, r.ops) for r in records)
    Path(path).write_bytes(header + body + bytes(4096))
    return body


def test_version_1_files_are_still_read_but_never_appended_to(tmp_path: Path) -> None:
    records = plain_records(1, 5)
    path = str(tmp_path / wal.wal_name(1))
    write_version_1(path, records)
    scan = scan_wal(path, repair=True)
    assert scan.header.version == 1
    assert [s.lsn for s in scan.spans] == [1, 2, 3, 4, 5]
    chunk = read_wal_from(path, 0, 2, 4)
    assert [s.lsn for s in chunk.spans] == [2, 3, 4]
    assert [r.lsn for r in rec.decode_records(chunk.data)] == [2, 3, 4]
    with pytest.raises(Exception, match="read only"):
        WalWriter.reopen(scan)


def test_follow_reads_records_without_frames_and_resumes_inside_a_group(tmp_path: Path) -> None:
    records = plain_records(1, 12)
    path = str(tmp_path / wal.wal_name(1))
    write_groups(path, [records[:5], records[5:9], records[9:]])
    chunk = read_wal_from(path, 0, 1, 7)
    assert [s.lsn for s in chunk.spans] == list(range(1, 8))
    assert [r for r in rec.decode_records(chunk.data)] == records[:7]
    rest = read_wal_from(path, chunk.next_offset, 8, 100)
    assert [r for r in rec.decode_records(rest.data)] == records[7:]
    small = read_wal_from(path, 0, 1, 100, max_bytes=1)
    assert [s.lsn for s in small.spans] == [1]
    again = read_wal_from(path, small.next_offset, 2, 100)
    assert [s.lsn for s in again.spans] == list(range(2, 13))


def test_a_newest_file_whose_creation_was_interrupted_is_moved_aside(tmp_path: Path) -> None:
    path = str(tmp_path / wal.wal_name(7))
    Path(path).write_bytes(wal.MAGIC + bytes(100))  # header never fully written; no commit inside
    torn = wal.abandon_unborn(path)
    assert torn is not None
    assert not os.path.exists(path)
    assert Path(torn.broken_path).read_bytes() == wal.MAGIC + bytes(100)
    records = plain_records(7, 2)
    real = str(tmp_path / wal.wal_name(8))
    write_groups(real, [records])
    data = bytearray(Path(real).read_bytes())
    data[20] ^= 1  # a damaged header over a file that holds commits: refused, kept
    Path(real).write_bytes(data)
    assert wal.abandon_unborn(real) is None
    assert os.path.exists(real)


def test_a_group_whose_count_the_lsns_contradict_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """The flake "group frame claims 62 records in 76 bytes": a frame's count once came from
    last_lsn - first_lsn + 1; a group holding fewer records than that must never reach the disk."""
    records = plain_records(5, 3, value_size=10)
    path = str(tmp_path / wal.wal_name(5))
    writer = WalWriter.create(path, STORE_ID, 5, 0, preallocate=1 << 16)
    one = rec.encode_record(records[0].lsn, records[0].ts_ns, records[0].ops)
    with pytest.raises(SegmentsError, match="1 records from LSN 5 cannot end at LSN 66"):
        writer.append(one, 66, count=1)
    with pytest.raises(SegmentsError, match="cannot end at LSN 66"):
        writer.append(one, 66)  # counted from the bytes when the caller does not say
    size = writer.size
    writer.append(b"".join(rec.encode_record(r.lsn, r.ts_ns, r.ops) for r in records), 7, count=3)
    writer.sync()
    writer.close()
    assert size == wal.HEADER_SIZE, "nothing was written by the refused appends"
    scan = scan_wal(path)
    assert [s.lsn for s in scan.spans] == [5, 6, 7]
