"""Local WAL files: appends, recovery of torn tails, refusal on mid-log damage, fsync failure."""

from __future__ import annotations

import errno
import os
import struct
import tempfile
import uuid
from pathlib import Path
from typing import NoReturn

import pytest
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from segments import (
    CorruptFile,
    MidLogCorruption,
    SegmentsError,
    UnsupportedVersion,
    WalWriter,
    WriterPoisoned,
    scan_wal,
    wal,
)
from segments import record as rec
from tests.segments.strategies import STORE_ID, encode_all, flip, plain_records, record_runs, write_wal


def read_records(path: str, scan: wal.WalScan, *, skip_unknown: bool = False) -> list[rec.Record]:
    data = Path(path).read_bytes()
    decoded = [rec.decode_payload(data, span, skip_unknown=skip_unknown) for span in scan.spans]
    return [r for r in decoded if r is not None]


def test_append_sync_and_scan(tmp_path: Path) -> None:
    records = plain_records(1, 50)
    path, encoded = write_wal(str(tmp_path), records, preallocate=1 << 16)
    assert os.path.getsize(path) == 1 << 16
    scan = scan_wal(path)
    assert scan.torn is None
    assert scan.header == wal.WalHeader(STORE_ID, 1, 0)
    assert scan.end == wal.HEADER_SIZE + sum(wal.FRAME_SIZE + len(piece) for piece in encoded)
    assert (scan.last_lsn, scan.last_ts_ns) == (50, records[-1].ts_ns)
    assert read_records(path, scan) == records


def test_empty_log_ends_at_the_header(tmp_path: Path) -> None:
    path = str(tmp_path / wal.wal_name(7))
    WalWriter.create(path, STORE_ID, 7, 0, preallocate=4096).close()
    scan = scan_wal(path)
    assert (scan.spans, scan.end, scan.torn, scan.last_lsn, scan.last_ts_ns) == ([], wal.HEADER_SIZE, None, 6, None)


def test_create_never_overwrites(tmp_path: Path) -> None:
    path, _ = write_wal(str(tmp_path), plain_records(1, 1))
    with pytest.raises(FileExistsError):
        WalWriter.create(path, STORE_ID, 1, 0)


def test_growth_beyond_the_preallocation_keeps_the_step(tmp_path: Path) -> None:
    path = str(tmp_path / wal.wal_name(1))
    writer = WalWriter.create(path, STORE_ID, 1, 0, preallocate=4096)
    for r in plain_records(1, 100):
        writer.append(rec.encode_record(r.lsn, r.ts_ns, r.ops))
    writer.sync()
    writer.close()
    assert writer.size < os.path.getsize(path) <= writer.size + 4096
    assert scan_wal(path).last_lsn == 100


def test_reopen_appends_after_the_last_record(tmp_path: Path) -> None:
    records = plain_records(1, 30)
    path, _ = write_wal(str(tmp_path), records[:10], preallocate=4096)
    writer = WalWriter.reopen(scan_wal(path), preallocate=4096)
    for r in records[10:]:
        writer.append(rec.encode_record(r.lsn, r.ts_ns, r.ops))
    writer.sync()
    writer.close()
    scan = scan_wal(path)
    assert read_records(path, scan) == records


def test_reopen_refuses_an_unrepaired_torn_tail(tmp_path: Path) -> None:
    path, _ = write_wal(str(tmp_path), plain_records(1, 3))
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) - 1)
    with pytest.raises(SegmentsError, match="repair"):
        WalWriter.reopen(scan_wal(path))
    WalWriter.reopen(scan_wal(path, repair=True)).close()


@settings(deadline=None)
@given(records=record_runs(min_size=1, max_size=6), data=st.data())
def test_truncation_recovers_exactly_the_complete_records(records: list[rec.Record], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path, encoded = write_wal(directory, records)
        original = Path(path).read_bytes()
        cut = data.draw(st.integers(wal.HEADER_SIZE, len(original)), label="cut")
        with open(path, "r+b") as fh:
            fh.truncate(cut)
        ends = [wal.HEADER_SIZE]
        for piece in encoded:
            ends.append(ends[-1] + wal.FRAME_SIZE + len(piece))
        complete = sum(1 for end in ends[1:] if end <= cut)
        boundary = ends[complete]
        removed = original[boundary:cut].rstrip(b"\0")

        scan = scan_wal(path, repair=True)
        assert read_records(path, scan) == records[:complete]
        assert scan.end == boundary
        if removed:
            assert scan.torn is not None
            assert (scan.torn.offset, scan.torn.length) == (boundary, len(removed))
            assert Path(scan.torn.broken_path).read_bytes() == removed
            assert os.path.getsize(path) == boundary
        else:
            assert scan.torn is None
        again = scan_wal(path)
        assert again.torn is None
        assert read_records(path, again) == records[:complete]


def check_single_byte_change(path: str, original: bytes, records: list[rec.Record], offset: int, xor: int) -> None:
    """A changed byte is refused or reported as a torn tail, and never yields different records."""
    Path(path).write_bytes(flip(original, offset, xor))
    try:
        scan = scan_wal(path)
    except SegmentsError:
        return
    assert scan.torn is not None, f"change at offset {offset} went unnoticed"
    found = read_records(path, scan)
    assert found == records[: len(found)]


@settings(deadline=None)
@given(records=record_runs(min_size=1, max_size=5), data=st.data())
def test_any_single_byte_change_is_detected(records: list[rec.Record], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path, _ = write_wal(directory, records, preallocate=data.draw(st.sampled_from([0, 1024])))
        original = Path(path).read_bytes()
        offset = data.draw(st.integers(0, len(original) - 1), label="offset")
        check_single_byte_change(path, original, records, offset, data.draw(st.integers(1, 255), label="xor"))


def test_every_byte_of_a_small_wal_is_covered(tmp_path: Path) -> None:
    records = plain_records(1, 4, value_size=3)
    path, _ = write_wal(str(tmp_path), records, preallocate=512)
    original = Path(path).read_bytes()
    for offset in range(len(original)):
        check_single_byte_change(path, original, records, offset, 0x01)
        check_single_byte_change(path, original, records, offset, 0x80)


def test_unsupported_version_is_not_mistaken_for_damage(tmp_path: Path) -> None:
    path, _ = write_wal(str(tmp_path), plain_records(1, 2))
    data = bytearray(Path(path).read_bytes())
    struct.pack_into("<H", data, 8, wal.VERSION + 1)
    Path(path).write_bytes(data)
    with pytest.raises(CorruptFile, match="header CRC"):
        scan_wal(path)
    struct.pack_into("<I", data, wal.HEADER_SIZE - 4, crc32c(bytes(data[: wal.HEADER_SIZE - 4])))
    Path(path).write_bytes(data)
    with pytest.raises(UnsupportedVersion) as info:
        scan_wal(path)
    assert (info.value.found, info.value.supported) == (wal.VERSION + 1, wal.VERSION)


def record_offsets(encoded: list[bytes]) -> list[int]:
    """Where each record's frame starts in a file write_wal wrote (one commit group per record)."""
    offsets = [wal.HEADER_SIZE]
    for piece in encoded[:-1]:
        offsets.append(offsets[-1] + wal.FRAME_SIZE + len(piece))
    return offsets


@settings(deadline=None)
@given(records=record_runs(min_size=2, max_size=8), data=st.data())
def test_mid_log_damage_refuses_to_open(records: list[rec.Record], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path, encoded = write_wal(directory, records, preallocate=data.draw(st.sampled_from([0, 4096])))
        offsets = record_offsets(encoded)
        victim = data.draw(st.integers(0, len(records) - 2), label="victim")
        original = Path(path).read_bytes()
        damaged = bytearray(original)
        how = data.draw(st.sampled_from(["flip", "zero"]), label="how")
        if how == "flip":
            at = offsets[victim] + data.draw(st.integers(0, wal.FRAME_SIZE + len(encoded[victim]) - 1), label="at")
            damaged[at] ^= data.draw(st.integers(1, 255), label="xor")
        else:
            unit = wal.FRAME_SIZE + len(encoded[victim])
            damaged[offsets[victim] : offsets[victim] + unit] = bytes(unit)
        Path(path).write_bytes(damaged)
        with pytest.raises(MidLogCorruption) as info:
            scan_wal(path, repair=True)
        assert (info.value.path, info.value.offset, info.value.lsn) == (path, offsets[victim], records[victim].lsn)
        assert str(path) in str(info.value)
        assert Path(path).read_bytes() == bytes(damaged), "a refused file is left untouched"
        assert not os.path.exists(path + ".broken")


def test_zeroed_page_spanning_many_records_is_mid_log_damage(tmp_path: Path) -> None:
    records = plain_records(1, 400, value_size=8)
    path, encoded = write_wal(str(tmp_path), records, preallocate=1 << 16)
    data = bytearray(Path(path).read_bytes())
    data[4096:8192] = bytes(4096)
    Path(path).write_bytes(data)
    offsets = record_offsets(encoded)
    victim = max(i for i, off in enumerate(offsets) if off <= 4096)
    with pytest.raises(MidLogCorruption) as info:
        scan_wal(path, repair=True)
    assert (info.value.offset, info.value.lsn) == (offsets[victim], victim + 1)


def test_record_with_a_wrong_lsn_followed_by_valid_ones_is_mid_log_damage(tmp_path: Path) -> None:
    records = plain_records(1, 5)
    path = str(tmp_path / wal.wal_name(1))
    bad = plain_records(9, 1)[0]
    stream = encode_all(records[:2]) + encode_all([bad]) + encode_all(records[2:])
    writer = WalWriter.create(path, STORE_ID, 1, 0, preallocate=0)
    writer.append(stream)
    writer.sync()
    writer.close()
    with pytest.raises(MidLogCorruption, match="expected LSN 3 inside the commit group, found 9"):
        scan_wal(path)


def test_torn_tail_is_kept_aside_and_never_overwritten(tmp_path: Path) -> None:
    records = plain_records(1, 3)
    path, encoded = write_wal(str(tmp_path), records, preallocate=4096)
    data = bytearray(Path(path).read_bytes())
    last = record_offsets(encoded)[-1]
    data[last + 10] ^= 0xFF
    Path(path).write_bytes(data)
    Path(path + ".broken").write_bytes(b"earlier")
    scan = scan_wal(path, repair=True)
    assert scan.torn is not None
    assert scan.torn.broken_path == path + ".broken.1"
    assert Path(path + ".broken").read_bytes() == b"earlier"
    assert Path(scan.torn.broken_path).read_bytes() == bytes(data[last : last + wal.FRAME_SIZE + len(encoded[-1])])
    assert "CRC" in scan.torn.reason
    assert os.path.getsize(path) == last
    assert read_records(path, scan) == records[:2]


def test_unknown_record_types_are_skippable(tmp_path: Path) -> None:
    records = plain_records(1, 3)
    encoded = [bytearray(rec.encode_record(r.lsn, r.ts_ns, r.ops)) for r in records]
    encoded[1][8] = 200  # a future record type
    struct.pack_into("<I", encoded[1], 0, crc32c(bytes(encoded[1][4:])))
    path = str(tmp_path / wal.wal_name(1))
    writer = WalWriter.create(path, STORE_ID, 1, 0, preallocate=0)
    writer.append(b"".join(encoded))
    writer.sync()
    writer.close()
    scan = scan_wal(path)
    assert [s.lsn for s in scan.spans] == [1, 2, 3]
    assert read_records(path, scan, skip_unknown=True) == [records[0], records[2]]
    with pytest.raises(CorruptFile, match="unknown record type 200"):
        read_records(path, scan)


def test_fsync_failure_poisons_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = plain_records(1, 3)
    path = str(tmp_path / wal.wal_name(1))
    writer = WalWriter.create(path, STORE_ID, 1, 0, preallocate=4096)
    writer.append(rec.encode_record(records[0].lsn, records[0].ts_ns, records[0].ops))
    writer.sync()

    def failing_fdatasync(fd: int) -> NoReturn:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("segments.wal.os.fdatasync", failing_fdatasync)
    writer.append(rec.encode_record(records[1].lsn, records[1].ts_ns, records[1].ops))
    with pytest.raises(WriterPoisoned) as info:
        writer.sync()
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EIO
    monkeypatch.undo()  # the disk "recovers": the writer must still refuse
    with pytest.raises(WriterPoisoned):
        writer.append(rec.encode_record(records[2].lsn, records[2].ts_ns, records[2].ops))
    with pytest.raises(WriterPoisoned):
        writer.sync()
    writer.close()
    assert scan_wal(path).spans[0].lsn == 1  # reopening recovers from what is on disk


def test_write_failure_poisons_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / wal.wal_name(1))
    writer = WalWriter.create(path, STORE_ID, 1, 0, preallocate=4096)

    def failing_pwrite(fd: int, data: list[bytes], offset: int) -> NoReturn:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("segments.wal_writer.os.pwritev", failing_pwrite)
    with pytest.raises(OSError, match="No space"):
        writer.append(rec.encode_record(1, 1, [rec.delete(b"k")]))
    monkeypatch.undo()
    with pytest.raises(WriterPoisoned):
        writer.sync()
    writer.close()


def test_header_checks(tmp_path: Path) -> None:
    path = tmp_path / "x.wal"
    path.write_bytes(b"")
    with pytest.raises(CorruptFile, match="empty"):
        scan_wal(str(path))
    path.write_bytes(wal.MAGIC + b"\0" * 10)
    with pytest.raises(CorruptFile, match="shorter than a WAL header"):
        scan_wal(str(path))
    path.write_bytes(b"NOTAWAL!" + bytes(100))
    with pytest.raises(CorruptFile, match="bad magic"):
        scan_wal(str(path))


@settings(deadline=None)
@given(
    prefix_len=st.integers(0, 400),
    garbage=st.binary(max_size=300),
    records=record_runs(min_size=1, max_size=4),
)
def test_garbage_after_a_valid_prefix_fails_cleanly(prefix_len: int, garbage: bytes, records: list[rec.Record]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path, _ = write_wal(directory, records)
        original = Path(path).read_bytes()
        Path(path).write_bytes(original[:prefix_len] + garbage)
        try:
            scan = scan_wal(path, repair=True)
        except SegmentsError:
            return
        assert prefix_len >= wal.HEADER_SIZE, "random bytes passed for a WAL header"
        found = read_records(path, scan)
        assert found == records[: len(found)]


def test_store_id_round_trips(tmp_path: Path) -> None:
    store = uuid.uuid4()
    path = str(tmp_path / wal.wal_name(3))
    WalWriter.create(path, store, 3, 123, preallocate=0).close()
    assert scan_wal(path).header == wal.WalHeader(store, 3, 123)
