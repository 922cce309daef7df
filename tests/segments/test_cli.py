"""`python -m segments dump` and `verify`: output, JSON, and exit status 0 / 1 / 2."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from crc32c import crc32c

from segments import SnapshotHeader, SnapshotWriter, WalWriter, chain, segment_name, snapshot_name, wal
from segments import record as rec
from segments.__main__ import main
from tests.segments.strategies import STORE_ID, plain_records, seal_chain, write_wal

TS0 = 1_795_961_387_250_000_000  # 2026-11-29T14:09:47.25Z


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    return status, capsys.readouterr().out


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    status, out = run(capsys, *argv, "--json")
    return status, json.loads(out)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Any]:
    """A WAL file, three linked segments and a snapshot, with odd keys and values."""
    records = [
        rec.Record(1, TS0, (rec.put(b"user:123456:profile", b'{"name": "Ada"}', TS0 + 10**9),), 7),
        rec.Record(2, TS0 + 1, (rec.put(b"\x00\xffbin", b"\x01\x02"), rec.delete(b"gone"))),
        *[r._replace(ts_ns=TS0 + r.lsn) for r in plain_records(3, 28)],
    ]
    wal_path, _ = write_wal(str(tmp_path), records, preallocate=4096)
    segs = []
    for data, sealed in seal_chain(records, [10, 20], block_size=200):
        path = tmp_path / segment_name(sealed.first_lsn, sealed.last_lsn)
        path.write_bytes(data)
        segs.append(str(path))
    snap_path = tmp_path / snapshot_name(30, TS0 + 30)
    with open(snap_path, "w+b") as fh:
        writer = SnapshotWriter(fh, SnapshotHeader(STORE_ID, 30, TS0 + 30, chain.genesis(STORE_ID), 0, 0, TS0,
                                                   {"producer": "test"}))
        writer.add(b"a", b"text value", TS0)
        writer.add(b"b\x00", b"\xff\xfe")
        writer.finish()
    return {"records": records, "wal": wal_path, "segments": segs, "snapshot": str(snap_path), "dir": tmp_path}


def test_dump_wal_text(capsys: pytest.CaptureFixture[str], files: dict[str, Any]) -> None:
    status, out = run(capsys, "dump", files["wal"])
    assert status == 0
    assert f"lsn 1  time 2026-11-29T14:09:47.250000000Z  offset {wal.HEADER_SIZE + wal.FRAME_SIZE}" in out
    assert 'put     key "user:123456:profile" (19 B)  value "{\\"name\\": \\"Ada\\"}" (15 B)' in out
    assert "expires 2026-11-29T14:09:48.250000000Z" in out
    assert "source_rev 7" in out
    assert "key base64:AP9iaW4= (5 B)  value base64:AQI= (2 B)" in out
    assert 'delete  key "gone" (4 B)' in out
    assert "# 30 records shown" in out


def test_dump_wal_json(capsys: pytest.CaptureFixture[str], files: dict[str, Any]) -> None:
    status, doc = run_json(capsys, "dump", files["wal"])
    assert status == 0
    assert doc["valid"] is True
    assert doc["type"] == "wal"
    assert doc["header"]["store_id"] == str(STORE_ID)
    assert [r["lsn"] for r in doc["records"]] == list(range(1, 31))
    first, second = doc["records"][:2]
    assert first["ops"][0] == {"op": "put", "key": "user:123456:profile", "key_size": 19,
                               "value": '{"name": "Ada"}', "value_size": 15,
                               "expires": "2026-11-29T14:09:48.250000000Z", "expires_at_ns": TS0 + 10**9}
    assert first["time"] == "2026-11-29T14:09:47.250000000Z"
    assert base64.b64decode(second["ops"][0]["key_base64"]) == b"\x00\xffbin"
    assert second["ops"][1] == {"op": "delete", "key": "gone", "key_size": 4}


def test_dump_segment_with_an_lsn_range(capsys: pytest.CaptureFixture[str], files: dict[str, Any]) -> None:
    status, doc = run_json(capsys, "dump", files["segments"][1], "--from-lsn", "13", "--to-lsn", "15")
    assert status == 0
    assert [r["lsn"] for r in doc["records"]] == [13, 14, 15]
    assert doc["header"]["first_lsn"] == 11
    assert len(doc["header"]["blocks"]) == doc["header"]["block_count"] > 1
    status, out = run(capsys, "dump", files["segments"][1], "--value-bytes", "4")
    assert status == 0
    assert "# block 0 at offset 128" in out
    assert "… (40 B)" in out


def test_dump_snapshot(capsys: pytest.CaptureFixture[str], files: dict[str, Any]) -> None:
    status, out = run(capsys, "dump", files["snapshot"])
    assert status == 0
    assert 'key "a" (1 B)  value "text value" (10 B)  expires 2026-11-29T14:09:47.250000000Z' in out
    status, doc = run_json(capsys, "dump", files["snapshot"])
    assert doc["entries"][1] == {"key_base64": base64.b64encode(b"b\x00").decode(), "key_size": 2,
                                 "value_base64": base64.b64encode(b"\xff\xfe").decode(), "value_size": 2}
    assert doc["header"]["metadata"] == {"producer": "test"}


def test_dump_reports_damage_with_offset(capsys: pytest.CaptureFixture[str], files: dict[str, Any]) -> None:
    path = Path(files["segments"][0])
    data = bytearray(path.read_bytes())
    data[400] ^= 0xFF  # inside a block after the first
    path.write_bytes(data)
    status, doc = run_json(capsys, "dump", str(path))
    assert status == 1
    assert doc["valid"] is False
    assert doc["error"]["path"] == str(path)
    assert doc["error"]["offset"] is not None
    assert doc["records"], "records before the damage are still shown"
    status, out = run(capsys, "dump", str(path))
    assert status == 1
    assert f"# error: {path}, offset" in out


def test_dump_wal_with_mid_log_damage_shows_records_before_it(
    capsys: pytest.CaptureFixture[str], files: dict[str, Any]
) -> None:
    path = Path(files["wal"])
    data = bytearray(path.read_bytes())
    second = wal.HEADER_SIZE + wal.FRAME_SIZE + len(rec.encode_record(1, TS0, files["records"][0].ops, 7))
    data[second + 20] ^= 1
    path.write_bytes(data)
    status, doc = run_json(capsys, "dump", str(path))
    assert status == 1
    assert [r["lsn"] for r in doc["records"]] == [1]
    assert doc["findings"][0]["finding"] == "mid-log corruption"
    assert (doc["findings"][0]["offset"], doc["findings"][0]["lsn"]) == (second, 2)


def test_verify_all_intact(capsys: pytest.CaptureFixture[str], files: dict[str, Any]) -> None:
    paths = [files["wal"], *files["segments"], files["snapshot"]]
    status, out = run(capsys, "verify", *paths)
    assert status == 0
    assert out.count("OK ") == 5
    assert "chain of 3 segments: continuous" in out
    status, doc = run_json(capsys, "verify", *paths)
    assert status == 0
    assert doc["valid"] is True
    assert [f["type"] for f in doc["files"]] == ["wal", "segment", "segment", "segment", "snapshot"]
    assert doc["chain"] == []


def test_verify_names_the_damaged_file(capsys: pytest.CaptureFixture[str], files: dict[str, Any]) -> None:
    path = Path(files["segments"][2])
    data = bytearray(path.read_bytes())
    data[200] ^= 0x01
    path.write_bytes(data)
    status, doc = run_json(capsys, "verify", *files["segments"])
    assert status == 1
    bad = [f for f in doc["files"] if not f["valid"]]
    assert [f["path"] for f in bad] == [str(path)]
    assert bad[0]["problems"][0]["offset"] is not None
    status, out = run(capsys, "verify", *files["segments"])
    assert status == 1
    assert f"INVALID  {path}" in out


def test_verify_finds_a_chain_gap(capsys: pytest.CaptureFixture[str], files: dict[str, Any]) -> None:
    first, _, last = files["segments"]
    status, doc = run_json(capsys, "verify", last, first)
    assert status == 1
    assert all(f["valid"] for f in doc["files"])
    assert [(c["kind"], c["path"], c["previous"]) for c in doc["chain"]] == [("gap", last, first)]
    status, out = run(capsys, "verify", first, last)
    assert "CHAIN    " in out


def test_verify_finds_a_misnamed_segment(capsys: pytest.CaptureFixture[str], files: dict[str, Any]) -> None:
    first = Path(files["segments"][0])
    renamed = first.with_name(segment_name(1, 11))
    first.rename(renamed)
    status, out = run(capsys, "verify", str(renamed))
    assert status == 1
    assert "name does not match" in out


def test_verify_reports_a_torn_tail_without_repairing(
    capsys: pytest.CaptureFixture[str], files: dict[str, Any]
) -> None:
    path = Path(files["wal"])
    data = path.read_bytes()
    end = wal.scan_wal(str(path)).end
    path.write_bytes(data[: end - 3])
    status, doc = run_json(capsys, "verify", str(path))
    assert status == 1
    problem = doc["files"][0]["problems"][0]
    assert (problem["error"], problem["lsn"]) == ("TornTail", 30)
    assert path.read_bytes() == data[: end - 3], "verify never repairs"
    assert not os.path.exists(f"{path}.broken")


def test_verify_reports_mid_log_corruption(capsys: pytest.CaptureFixture[str], files: dict[str, Any]) -> None:
    path = Path(files["wal"])
    data = bytearray(path.read_bytes())
    data[wal.HEADER_SIZE + 10] ^= 0x40
    path.write_bytes(data)
    status, doc = run_json(capsys, "verify", str(path))
    assert status == 1
    problem = doc["files"][0]["problems"][0]
    assert (problem["error"], problem["offset"], problem["lsn"]) == ("MidLogCorruption", wal.HEADER_SIZE, 1)


def test_verify_unknown_and_missing_files(capsys: pytest.CaptureFixture[str], files: dict[str, Any]) -> None:
    other = files["dir"] / "notes.txt"
    other.write_text("hello")
    status, out = run(capsys, "verify", str(other), str(files["dir"] / "missing.seg"))
    assert status == 1
    assert "not a pitr file" in out
    assert "No such file" in out
    status, out = run(capsys, "dump", str(other))
    assert status == 1


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], files: dict[str, Any]) -> None:
    for argv in ([], ["verify"], ["dump"], ["frobnicate"], ["dump", files["wal"], "--value-bytes", "x"],
                 ["dump", files["wal"], "--from-lsn", "5", "--to-lsn", "2"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    capsys.readouterr()


def test_entry_point_exit_status(files: dict[str, Any]) -> None:
    def status(*argv: str) -> int:
        return subprocess.run([sys.executable, "-m", "segments", *argv], capture_output=True, check=False).returncode

    assert status("verify", *files["segments"]) == 0
    assert status("verify", files["segments"][0], files["segments"][2]) == 1
    assert status("verify") == 2


def test_verify_and_dump_decode_every_record(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = rec.encode_record(1, TS0, [rec.put(b"k", b"v")])
    bad = bytearray(rec.encode_record(2, TS0 + 1, [rec.put(b"k", b"v")]))
    bad[rec.HEADER_SIZE] = 9  # an operation kind no version defines, with the CRC made right again
    bad[0:4] = crc32c(bytes(bad[4:])).to_bytes(4, "little")
    path = tmp_path / wal.wal_name(1)
    writer = WalWriter.create(str(path), STORE_ID, 1, 0, preallocate=0)
    writer.append(good + bytes(bad))
    writer.sync()
    writer.close()
    status, doc = run_json(capsys, "verify", str(path))
    assert status == 1
    problem = doc["files"][0]["problems"][0]
    record_offset = wal.HEADER_SIZE + wal.FRAME_SIZE + len(good)  # the record itself, inside its frame
    assert (problem["path"], problem["offset"], problem["lsn"]) == (str(path), record_offset, 2)
    assert "unknown operation kind 9" in problem["message"]
    status, doc = run_json(capsys, "dump", str(path))
    assert status == 1
    assert [r["lsn"] for r in doc["records"]] == [1]
    assert (doc["findings"][0]["finding"], doc["findings"][0]["lsn"]) == ("mid-log corruption", 2)
