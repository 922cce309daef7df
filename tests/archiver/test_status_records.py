"""The status records (docs/format.md, "Status records"): the spec's test vectors, the checks a damaged or
forged record fails, and the 0600 files they are written as."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pitr.errors import CorruptData
from pitr.repo.documents import encode_document
from pitr.status.records import (
    ARCHIVER_MAGIC,
    MAX_ERRORS,
    ArchiverRecord,
    RecentError,
    UploadBacklog,
    VerifyRecord,
    archiver_record_path,
    read_archiver_record,
    read_verify_record,
    write_archiver_record,
    write_verify_record,
)

VERIFY_VECTOR = (
    b'PITRVFY 1\n{"files_checked": 12, "finished_ns": 1795961387250000001, "last_ok_ns": 1795961387250000001, '
    b'"mode": "full", "ok": true, "problems": 0, "repo": "/srv/repo", "summary": ""}\ncrc32c:6c3bdad8\n')
ARCHIVER_VECTOR = (
    b'PITRARS 1\n{"archived_lsn": 42, "errors": 1, "failing": false, "last_success_ns": 1795961387250000001, '
    b'"pid": 4242, "recent_errors": [{"at_ns": 1795961300000000000, "message": "storage error: 503 Slow Down"}], '
    b'"repo": "s3://bucket/prefix", "started_ns": 1795961000000000000, "updated_ns": 1795961387250000001}\n'
    b'crc32c:716b7970\n')
MEASURED_VECTOR = (
    b'PITRARS 1\n{"archived_lsn": 42, "backlog_bytes": 9830400, "backlog_commits": 120, "errors": 0, '
    b'"failing": false, "last_success_ns": 1795961387250000001, "pid": 4242, "recent_errors": [], '
    b'"repo": "s3://bucket/prefix", "started_ns": 1795961000000000000, "updated_ns": 1795961387250000001, '
    b'"upload_cap": 1048576, "upload_rate": 1040000}\ncrc32c:8911a206\n')
VERIFY = VerifyRecord("/srv/repo", "full", True, 1795961387250000001, 12, 0, "", 1795961387250000001)
ARCHIVER = ArchiverRecord("s3://bucket/prefix", 4242, 1795961000000000000, 1795961387250000001, 42,
                          1795961387250000001, 1, False,
                          (RecentError(1795961300000000000, "storage error: 503 Slow Down"),))


def test_the_format_specs_vectors() -> None:
    assert VERIFY.encode() == VERIFY_VECTOR
    assert len(VERIFY_VECTOR) == 198
    assert VerifyRecord.decode(VERIFY_VECTOR, "v") == VERIFY
    assert ARCHIVER.encode() == ARCHIVER_VECTOR
    assert len(ARCHIVER_VECTOR) == 325
    assert ArchiverRecord.decode(ARCHIVER_VECTOR, "a") == ARCHIVER


def test_the_format_specs_vector_of_a_measured_backlog() -> None:
    measured = ArchiverRecord("s3://bucket/prefix", 4242, 1795961000000000000, 1795961387250000001, 42,
                              1795961387250000001, 0, False, (), UploadBacklog(120, 9830400, 1048576, 1040000))
    assert measured.encode() == MEASURED_VECTOR
    assert len(MEASURED_VECTOR) == 349
    assert ArchiverRecord.decode(MEASURED_VECTOR, "a") == measured
    assert measured.backlog is not None
    assert measured.backlog.cap_cost_seconds == pytest.approx(9.375)  # 9,830,400 bytes at 1 MiB/s
    # a record without the fields (an archiver that did not measure) reads as no measurement
    assert ArchiverRecord.decode(ARCHIVER_VECTOR, "a").backlog is None


def test_written_private_and_read_back(tmp_path: Path) -> None:
    write_verify_record(str(tmp_path / "work"), VERIFY)
    write_archiver_record(str(tmp_path / "data"), ARCHIVER)
    assert read_verify_record(str(tmp_path / "work")) == VERIFY
    assert read_archiver_record(str(tmp_path / "data"), ARCHIVER.repo) == ARCHIVER
    path = Path(archiver_record_path(str(tmp_path / "data"), ARCHIVER.repo))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert read_archiver_record(str(tmp_path / "data"), "s3://another/repo") is None
    assert read_verify_record(str(tmp_path / "nowhere")) is None


@pytest.mark.parametrize("body", [
    {"recent_errors": "boom"},
    {"recent_errors": [{"at_ns": 1, "message": "x"}] * (MAX_ERRORS + 1)},
    {"recent_errors": [{"at_ns": -1, "message": "x"}]},
    {"failing": 1},
    {"pid": "4242"},
    {"last_success_ns": 1.5},
    {"backlog_commits": -1},
    {"backlog_commits": 1, "backlog_bytes": "10"},
    {"backlog_commits": 1, "upload_cap": 0},
    {"backlog_commits": 1, "upload_cap": None, "upload_rate": 5},
])
def test_a_forged_archiver_record_is_refused_naming_the_field(body: dict[str, object]) -> None:
    fields: dict[str, object] = {"repo": "r", "pid": 1, "started_ns": 1, "updated_ns": 1, "archived_lsn": 1,
                                 "last_success_ns": None, "errors": 0, "failing": False, "recent_errors": []}
    fields.update(body)
    with pytest.raises(CorruptData, match="archiver record field"):
        ArchiverRecord.decode(encode_document(ARCHIVER_MAGIC, 1, fields), "a")


def test_a_flipped_bit_and_a_newer_version_are_refused() -> None:
    damaged = bytearray(VERIFY_VECTOR)
    damaged[20] ^= 0x04
    with pytest.raises(CorruptData, match="CRC-32C"):
        VerifyRecord.decode(bytes(damaged), "v")
    newer = encode_document("PITRVFY", 2, {})
    with pytest.raises(CorruptData, match="newer than supported"):
        VerifyRecord.decode(newer, "v")
    forged = {"repo": "r", "mode": "fast", "ok": True, "finished_ns": 1, "files_checked": 1, "problems": 0,
              "summary": "", "last_ok_ns": None}
    with pytest.raises(CorruptData, match="field 'mode'"):
        VerifyRecord.decode(encode_document("PITRVFY", 1, forged), "v")
    with pytest.raises(CorruptData, match="field 'ok'"):
        VerifyRecord.decode(encode_document("PITRVFY", 1, {**forged, "mode": "full", "ok": 1}), "v")


def test_recent_errors_keep_the_newest_few() -> None:
    record = ARCHIVER
    for n in range(MAX_ERRORS + 3):
        record = record.failed(f"error {n}", 2_000_000_000_000_000_000 + n)
    assert record.failing
    assert record.errors == 1 + MAX_ERRORS + 3
    assert [e.message for e in record.recent_errors] == [f"error {n}" for n in range(3, MAX_ERRORS + 3)]
    assert ArchiverRecord.decode(record.encode(), "a") == record
    again = record.archived(50, 2_100_000_000_000_000_000)
    assert (again.failing, again.archived_lsn, again.last_success_ns) == (False, 50, 2_100_000_000_000_000_000)
    long = record.failed("x" * 5000, 1)
    assert ArchiverRecord.decode(long.encode(), "a").recent_errors[-1].message.endswith("...")
