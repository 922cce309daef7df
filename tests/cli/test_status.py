"""pitr status (issue 15, item 1): the recovery point, windows, snapshot age, verification and archiver
outcome of each repository, and exit codes for cron: 0 healthy, 1 a threshold crossed, 2 broken.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from pitr.status.records import (
    ArchiverRecord,
    RecentError,
    UploadBacklog,
    archiver_record_path,
    write_archiver_record,
)
from tests.helpers.cli import run_cli

Capsys = pytest.CaptureFixture[str]


def pitr(capsys: Capsys, *argv: str) -> tuple[int, str, str]:
    return run_cli(capsys, *argv)


def status(capsys: Capsys, tmp_path: Path, *extra: str, repos: tuple[str, ...] = ()) -> tuple[int, dict[str, object]]:
    urls = repos or (str(tmp_path / "repo"),)
    argv = ["status", "--data", str(tmp_path / "data"), *(f"--repo={u}" for u in urls), "--json", *extra]
    code, out, err = pitr(capsys, *argv)
    assert "Traceback" not in err
    doc = json.loads(out)
    assert doc["exit"] == code
    return code, doc


def repo_of(doc: dict[str, object], n: int = 0) -> dict[str, object]:
    rows = doc["repositories"]
    assert isinstance(rows, list)
    row = rows[n]
    assert isinstance(row, dict)
    return row


def archived_store(capsys: Capsys, tmp_path: Path, rounds: int = 1) -> tuple[str, str]:
    data, repo = str(tmp_path / "data"), str(tmp_path / "repo")
    for n in range(rounds):
        assert pitr(capsys, "put", "--data", data, f"k{n}", "v")[0] == 0
        assert pitr(capsys, "archive", "--data", data, "--repo", repo)[0] == 0
    return data, repo


def test_a_whole_verified_repository_with_a_fresh_snapshot_is_healthy(capsys: Capsys, tmp_path: Path) -> None:
    data, repo = archived_store(capsys, tmp_path)
    assert pitr(capsys, "snapshot", "--data", data, "--repo", repo)[0] == 0
    assert pitr(capsys, "verify", "--repo", repo)[0] == 0
    code, doc = status(capsys, tmp_path, "--max-rpo", "1h", "--max-snapshot-age", "1h", "--max-unverified", "1h")
    row = repo_of(doc)
    assert (code, doc["state"], row["problems"], row["warnings"]) == (0, "healthy", [], []), row
    assert row["known_complete_lsn"] == 1
    assert isinstance(row["rpo_seconds"], float)
    assert 0 <= row["rpo_seconds"] < 3600
    assert row["restorable_through_ns"] == row["known_complete_ns"], "a whole history is restorable to its watermark"
    windows = row["windows"]
    assert isinstance(windows, list)
    assert [(w["start_lsn"], w["end_lsn"]) for w in windows] == [(0, 1)]
    snap = row["newest_snapshot"]
    assert isinstance(snap, dict)
    assert snap["lsn"] == 1
    verified = row["last_verification"]
    assert isinstance(verified, dict)
    assert verified["ok"] is True
    assert verified["mode"] == "full"
    archiver = row["archiver"]
    assert isinstance(archiver, dict)
    assert archiver["archived_lsn"] == 1
    assert archiver["failing"] is False
    code, out, _err = pitr(capsys, "status", "--data", data, "--repo", repo)
    assert code == 0
    assert "HEALTHY" in out
    assert "recovery point" in out


@pytest.mark.parametrize(("flag", "needle"), [("--max-rpo", "--max-rpo"), ("--max-snapshot-age", "snapshot"),
                                              ("--max-unverified", "verification")])
def test_each_threshold_crossed_exits_1_naming_it(capsys: Capsys, tmp_path: Path, flag: str, needle: str) -> None:
    archived_store(capsys, tmp_path)  # never verified, no snapshot
    time.sleep(0.01)
    code, doc = status(capsys, tmp_path)
    assert code == 0, repo_of(doc)
    code, doc = status(capsys, tmp_path, flag, "1ms")
    warnings = repo_of(doc)["warnings"]
    assert (code, doc["state"]) == (1, "attention"), warnings
    assert isinstance(warnings, list)
    assert len(warnings) == 1
    assert needle in warnings[0]
    code, doc = status(capsys, tmp_path, flag, "2d")
    if flag == "--max-rpo":
        assert code == 0, "2 days is not crossed"
    else:
        assert code == 1, "no snapshot / no verification at all crosses any limit"


def test_the_limit_counts_from_the_last_passing_verification(capsys: Capsys, tmp_path: Path) -> None:
    _data, repo = archived_store(capsys, tmp_path)
    assert pitr(capsys, "verify", "--repo", repo)[0] == 0
    assert status(capsys, tmp_path, "--max-unverified", "1h")[0] == 0
    time.sleep(0.05)
    assert status(capsys, tmp_path, "--max-unverified", "10ms")[0] == 1
    assert pitr(capsys, "verify", "--repo", repo, "--quick")[0] == 0
    code, doc = status(capsys, tmp_path, "--max-unverified", "10ms")
    assert code == 1, "a quick verification reads no block: it does not count as a verification that passed"


def test_a_hole_in_the_history_is_broken(capsys: Capsys, tmp_path: Path) -> None:
    _data, repo = archived_store(capsys, tmp_path, rounds=3)
    segments = sorted((tmp_path / "repo" / "segments").iterdir())
    assert len(segments) == 3
    segments[1].unlink()
    code, doc = status(capsys, tmp_path)
    row = repo_of(doc)
    problems = row["problems"]
    assert (code, doc["state"]) == (2, "broken"), row
    assert isinstance(problems, list)
    assert any("hole LSN 2..2" in p for p in problems), problems
    code, out, _err = pitr(capsys, "status", "--repo", repo)
    assert code == 2
    assert "BROKEN: hole LSN 2..2" in out


def test_a_failed_verification_is_broken_and_keeps_when_one_last_passed(capsys: Capsys, tmp_path: Path) -> None:
    _data, repo = archived_store(capsys, tmp_path, rounds=2)
    assert pitr(capsys, "verify", "--repo", repo)[0] == 0
    first = repo_of(status(capsys, tmp_path)[1])["last_verification"]
    assert isinstance(first, dict)
    segment = sorted((tmp_path / "repo" / "segments").iterdir())[0]
    raw = bytearray(segment.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside a compressed block
    os.chmod(segment, 0o600)
    segment.write_bytes(bytes(raw))
    assert pitr(capsys, "verify", "--repo", repo)[0] == 1
    code, doc = status(capsys, tmp_path, "--max-unverified", "1h")
    row = repo_of(doc)
    verified = row["last_verification"]
    assert isinstance(verified, dict)
    assert code == 2, row
    assert verified["ok"] is False
    assert verified["problems"] >= 1
    assert segment.name in str(verified["summary"])
    assert verified["last_ok_ns"] == first["ts_ns"], "the last passing verification is remembered"
    problems = row["problems"]
    assert isinstance(problems, list)
    assert any("last verification" in p for p in problems)


def test_a_repository_that_cannot_be_read_is_broken_and_the_others_are_still_reported(
        capsys: Capsys, tmp_path: Path) -> None:
    archived_store(capsys, tmp_path)
    code, doc = status(capsys, tmp_path, repos=(str(tmp_path / "nowhere"), str(tmp_path / "repo")))
    assert code == 2
    gone, good = repo_of(doc, 0), repo_of(doc, 1)
    assert gone["state"] == "broken"
    assert gone["error"] == "not_a_repository"
    assert good["state"] == "healthy"
    assert good["known_complete_lsn"] == 1


def test_a_failing_archiver_needs_attention(capsys: Capsys, tmp_path: Path) -> None:
    data, repo = archived_store(capsys, tmp_path)
    now = time.time_ns()
    write_archiver_record(data, ArchiverRecord(repo, 4242, now - 10**9, now, 1, now - 10**9, 3, True,
                                               (RecentError(now, "storage error: 503 Slow Down"),)))
    code, doc = status(capsys, tmp_path)
    row = repo_of(doc)
    warnings = row["warnings"]
    assert code == 1, row
    assert isinstance(warnings, list)
    assert any("503 Slow Down" in w for w in warnings), row
    archiver = row["archiver"]
    assert isinstance(archiver, dict)
    assert archiver["errors"] == 3
    assert archiver["pid"] == 4242


def test_a_damaged_status_record_is_reported_not_trusted(capsys: Capsys, tmp_path: Path) -> None:
    data, repo = archived_store(capsys, tmp_path)
    path = Path(archiver_record_path(data, repo))
    raw = bytearray(path.read_bytes())
    raw[12] ^= 0x01
    path.write_bytes(bytes(raw))
    code, doc = status(capsys, tmp_path)
    warnings = repo_of(doc)["warnings"]
    assert code == 1, warnings
    assert isinstance(warnings, list)
    assert any("CRC-32C" in w for w in warnings), warnings


def test_a_bad_duration_is_a_usage_error(capsys: Capsys, tmp_path: Path) -> None:
    archived_store(capsys, tmp_path)
    code, _out, err = pitr(capsys, "status", "--repo", str(tmp_path / "repo"), "--max-rpo", "soon")
    assert code == 2
    assert "--max-rpo" in err
    assert "Traceback" not in err


def capped_record(repo: str, updated_ns: int, backlog_bytes: int) -> ArchiverRecord:
    return ArchiverRecord(repo, 4242, updated_ns - 10**9, updated_ns, 1, updated_ns, 0, False, (),
                          UploadBacklog(100, backlog_bytes, 1 << 20, 1 << 20))


def test_status_shows_what_the_upload_cap_costs_and_blames_a_crossing_on_it(capsys: Capsys, tmp_path: Path) -> None:
    data, repo = archived_store(capsys, tmp_path)
    write_archiver_record(data, capped_record(repo, time.time_ns(), 10 << 20))  # 10 MiB waiting at 1 MiB/s
    code, doc = status(capsys, tmp_path)
    row = repo_of(doc)
    assert code == 0, row
    assert row["cap_cost_seconds"] == 10.0
    archiver = row["archiver"]
    assert isinstance(archiver, dict)
    assert archiver["upload"] == {"backlog_commits": 100, "backlog_bytes": 10 << 20, "cap_bytes_per_s": 1 << 20,
                                  "rate_bytes_per_s": 1 << 20}
    code, out, _err = pitr(capsys, "status", "--data", data, "--repo", repo)
    assert "100 commits waiting (~10.0 MiB) under the cap of 1.0 MiB/s" in out
    assert "the cap adds 10.0s to the recovery point" in out
    time.sleep(0.05)
    code, doc = status(capsys, tmp_path, "--max-rpo", "1ms")
    warnings = repo_of(doc)["warnings"]
    assert code == 1
    assert isinstance(warnings, list)
    assert len(warnings) == 1
    assert "crossed because of the upload cap" in warnings[0], warnings
    assert "--limit-upload" in warnings[0]
    # a small backlog: the cap is named as part of the delay, not as its cause
    write_archiver_record(data, capped_record(repo, time.time_ns(), 1000))
    time.sleep(0.05)
    code, doc = status(capsys, tmp_path, "--max-rpo", "1ms")
    warnings = repo_of(doc)["warnings"]
    assert isinstance(warnings, list)
    assert "crossed because" not in warnings[0]
    assert "the upload cap adds" in warnings[0], warnings


def test_an_old_archiver_record_says_nothing_of_the_cap_now(capsys: Capsys, tmp_path: Path) -> None:
    data, repo = archived_store(capsys, tmp_path)
    write_archiver_record(data, capped_record(repo, time.time_ns() - 120 * 10**9, 10 << 20))
    code, doc = status(capsys, tmp_path, "--max-rpo", "1ms")
    row = repo_of(doc)
    warnings = row["warnings"]
    assert row["cap_cost_seconds"] is None
    assert isinstance(warnings, list)
    assert code == 1
    assert not any("upload cap" in w for w in warnings), warnings
    _code, out, _err = pitr(capsys, "status", "--data", data, "--repo", repo)
    assert "record too old to say what the cap costs now" in out


def test_an_encrypted_repository_is_judged_with_its_key_file(capsys: Capsys, tmp_path: Path) -> None:
    """`status --key-file` opens an encrypted repository with the key (healthy); without it, it cannot read
    the history and says the key is missing (broken, never a guess)."""
    data, repo, key = str(tmp_path / "data"), str(tmp_path / "repo"), str(tmp_path / "key")
    assert pitr(capsys, "key", "create", key)[0] == 0
    assert pitr(capsys, "put", "--data", data, "k", "v")[0] == 0
    assert pitr(capsys, "archive", "--data", data, "--repo", repo, "--encrypt", "--key-file", key)[0] == 0
    assert pitr(capsys, "snapshot", "--data", data, "--repo", repo, "--key-file", key)[0] == 0
    assert pitr(capsys, "verify", "--repo", repo, "--key-file", key)[0] == 0
    code, doc = status(capsys, tmp_path, "--key-file", key)
    row = repo_of(doc)
    assert (code, doc["state"], row["problems"]) == (0, "healthy", []), row
    assert row["known_complete_lsn"] == 1
    code, doc = status(capsys, tmp_path)
    assert (code, doc["state"]) == (2, "broken")
    assert "no key was given" in " ".join(repo_of(doc)["problems"])  # type: ignore[arg-type]
