"""`pitr status` shows the newest signed checkpoint (LSN, age, `--json`), and a repository whose newest
checkpoint is past its watermark (a rollback, seen without the witness) is broken with the LSN range."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from pitr.repo.checkpoints import SignedCheckpoint, parse_checkpoint_name
from tests.crypto.test_checkpoints import archived, checkpoint_files
from tests.crypto.test_witness_api import roll_back
from tests.helpers.cli import run_cli


def status(capsys: pytest.CaptureFixture[str], repo_dir: Path) -> tuple[int, dict[str, object], str]:
    code, out, err = run_cli(capsys, "status", "--repo", str(repo_dir), "--json")
    doc = json.loads(out)
    assert doc["exit"] == code, doc
    text_code, text, _ = run_cli(capsys, "status", "--repo", str(repo_dir))
    assert text_code == code
    row = doc["repositories"][0]
    assert isinstance(row, dict)
    return code, row, text


def test_status_shows_the_newest_checkpoint_and_a_rollback_past_the_watermark_is_broken(
        tmp_path: Path, random_seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    repo_dir, _witness_dir, _writer = archived(tmp_path, random.Random(random_seed))
    newest = max(parse_checkpoint_name(p.name) or 0 for p in checkpoint_files(repo_dir / "checkpoints"))
    code, row, text = status(capsys, repo_dir)
    assert code != 2, row
    assert row["state"] != "broken"
    checkpoint = row["newest_checkpoint"]
    assert isinstance(checkpoint, dict)
    assert checkpoint["lsn"] == newest == row["known_complete_lsn"]
    assert checkpoint["file"] == f"checkpoints/{newest:016x}.ckpt"
    assert isinstance(checkpoint["age_seconds"], float)
    assert 0 <= checkpoint["age_seconds"] < 600
    assert f"newest checkpoint LSN {newest}, signed " in text
    end, last = roll_back(repo_dir)
    assert last == newest
    # a rollback that removed the checkpoints too is the witness's to see (`verify --witness`): alone, the
    # repository's newest checkpoint is then one at or before its new end
    code, row, _text = status(capsys, repo_dir)
    checkpoint = row["newest_checkpoint"]
    assert isinstance(checkpoint, dict)
    assert checkpoint["lsn"] <= end

def test_a_newest_checkpoint_past_the_watermark_is_broken_with_the_lsn_range(
        tmp_path: Path, random_seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    repo_dir, _witness_dir, _writer = archived(tmp_path, random.Random(random_seed))
    kept = {p.name: p.read_bytes() for p in checkpoint_files(repo_dir / "checkpoints")}
    end, newest = roll_back(repo_dir)
    for name, data in kept.items():  # the newest segments and watermarks gone, their checkpoints left behind
        (repo_dir / "checkpoints" / name).write_bytes(data)
    code, row, text = status(capsys, repo_dir)
    assert code == 2
    assert row["state"] == "broken"
    problems = row["problems"]
    assert isinstance(problems, list)
    assert any(f"LSNs {end + 1}..{newest} are missing" in p for p in problems), problems
    checkpoint = row["newest_checkpoint"]
    assert isinstance(checkpoint, dict)
    assert checkpoint["lsn"] == newest
    assert f"BROKEN: LSNs {end + 1}..{newest} are missing" in text


def test_a_newest_checkpoint_not_signed_by_the_history_key_is_broken(
        tmp_path: Path, random_seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    repo_dir, _witness_dir, _writer = archived(tmp_path, random.Random(random_seed))
    newest = checkpoint_files(repo_dir / "checkpoints")[-1]
    signed = SignedCheckpoint.decode(newest.read_bytes(), newest.name)
    forged = SignedCheckpoint(signed.checkpoint, bytes(64))
    newest.chmod(0o600)
    newest.write_bytes(forged.encode())
    code, row, _text = status(capsys, repo_dir)
    assert code == 2
    problems = row["problems"]
    assert isinstance(problems, list)
    assert any("the newest checkpoint cannot be trusted" in p and "does not verify" in p for p in problems), problems
    assert row["newest_checkpoint"] is None


def test_a_repository_without_checkpoints_shows_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, repo_dir = tmp_path / "data", tmp_path / "repo"
    assert run_cli(capsys, "put", "--data", str(data), "k", "v")[0] == 0
    assert run_cli(capsys, "archive", "--data", str(data), "--repo", str(repo_dir))[0] == 0
    code, row, text = status(capsys, repo_dir)
    assert code != 2, row
    assert row["newest_checkpoint"] is None
    assert "checkpoint" not in text
