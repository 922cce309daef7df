"""Audit answers where retention removed the oldest commits: they say where the history begins.

After `pitr cleanup` the archive holds the log only from the oldest kept
snapshot on. `history` without `--since` then starts with each key's value
in that snapshot (named) and says on stderr where the history begins; a
`--since` (or `log --since-lsn`) before the floor is refused, naming the floor
and the moment to ask from, rather than answered with part of the range.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pitr.timefmt import format_time
from tests.helpers.cli import run_cli as run


@pytest.fixture
def floored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """A repository whose LSNs 1..3 were removed by cleanup; the kept snapshot is at LSN 3.

    k: v1 v2 v3 | snapshot at 3 | v4 v5; `late` first appears at LSN 6.
    """
    monkeypatch.setenv("PITR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PITR_REPO", str(tmp_path / "repo"))
    for value in ("v1", "v2", "v3"):
        assert run(capsys, "put", "k", value)[0] == 0
    assert run(capsys, "archive")[0] == 0
    assert run(capsys, "snapshot")[0] == 0
    for key, value in (("k", "v4"), ("k", "v5"), ("late", "x")):
        assert run(capsys, "put", key, value)[0] == 0
    assert run(capsys, "archive")[0] == 0
    segments = sorted((tmp_path / "repo" / "segments").iterdir())
    assert segments[0].name.startswith("00000000000000000001-00000000000000000003"), segments
    # what cleanup leaves when it keeps the snapshot at LSN 3: the log from LSN 4 on
    segments[0].unlink()
    return tmp_path


def history_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, object]], str]:
    code, out, err = run(capsys, "history", *argv, "--json")
    return code, [json.loads(line) for line in out.splitlines()], err


def test_history_without_since_begins_with_the_value_in_the_snapshot_at_the_floor(
        floored: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, rows, err = history_json(capsys, "k", "--values")
    assert code == 0, err
    assert [(r["lsn"], r["value"]) for r in rows] == [(3, "v3"), (4, "v4"), (5, "v5")]
    assert str(rows[0]["snapshot"]).startswith("00000000000000000003-")
    assert all("snapshot" not in r for r in rows[1:])
    assert "begins at LSN 4" in err
    assert "retention" in err


def test_a_key_the_snapshot_does_not_hold_has_only_its_logged_changes(
        floored: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, rows, err = history_json(capsys, "late")
    assert code == 0, err
    assert [r["lsn"] for r in rows] == [6]
    assert "begins at LSN 4" in err


def test_text_output_names_the_snapshot(floored: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "history", "k")
    assert code == 0, err
    first = out.splitlines()[0]
    assert "LSN          3" in first
    assert "snapshot 00000000000000000003-" in first
    assert "begins at LSN 4" in err


def test_since_before_the_floor_is_refused_naming_the_floor(floored: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "history", "k", "--since", "2000-01-01T00:00:00Z")
    assert (code, out) == (1, "")
    assert "LSN 4" in err
    assert "retention" in err
    assert "ask from" in err
    code, out, err = run(capsys, "log", "--since-lsn", "2")
    assert (code, out) == (1, "")
    assert "LSN 4" in err
    assert "ask from" in err


def test_since_after_the_floor_is_answered(floored: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, rows, err = history_json(capsys, "k", "--values")
    after = int(str(rows[0]["ts_ns"])) + 1  # just after the snapshot's commit: nothing removed is in range
    code, rows, err = history_json(capsys, "k", "--values", "--since", format_time(after))
    assert code == 0, err
    assert [r["value"] for r in rows] == ["v4", "v5"]
    assert "begins" not in err
    code, out, err = run(capsys, "log", "--since-lsn", "4", "--json")
    assert code == 0, err
    assert [json.loads(line)["lsn"] for line in out.splitlines()] == [4, 5, 6]


def test_log_without_a_start_says_where_it_begins(floored: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "log", "--json")
    assert code == 0, err
    assert [json.loads(line)["lsn"] for line in out.splitlines()] == [4, 5, 6]
    assert "begins at LSN 4" in err


def test_a_whole_history_has_no_floor_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PITR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PITR_REPO", str(tmp_path / "repo"))
    assert run(capsys, "put", "k", "v1")[0] == 0
    assert run(capsys, "archive")[0] == 0
    assert run(capsys, "snapshot")[0] == 0
    code, rows, err = history_json(capsys, "k", "--since", "2000-01-01T00:00:00Z")
    assert code == 0, err
    assert [r["lsn"] for r in rows] == [1]
    assert "snapshot" not in rows[0]
    assert "begins" not in err
