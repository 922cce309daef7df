"""`pitr timeline` draws the windows and snapshots on a time axis: what can be restored, at a glance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pitr.cli.timeline_picture import NOT_RESTORABLE, RESTORABLE, SNAPSHOT, draw
from pitr.errors import Window
from tests.helpers.cli import run_cli as run

S = 10**9


def test_one_window_fills_the_axis_and_marks_its_snapshots() -> None:
    picture = draw([Window(0, 100 * S, 0, 50)], [0, 50 * S, 100 * S], width=10)
    assert picture is not None
    assert picture.cells == RESTORABLE * 10
    assert picture.marks == f"{SNAPSHOT}    {SNAPSHOT}   {SNAPSHOT}"
    assert (picture.start_lsn, picture.end_lsn) == (0, 50)


def test_a_gap_between_windows_shows_where_it_lies() -> None:
    # restorable 0..40 s and 60..100 s: the slices of 40..60 s are not
    picture = draw([Window(0, 40 * S, 0, 10), Window(60 * S, 100 * S, 20, 30)], [60 * S], width=10)
    assert picture is not None
    assert picture.cells == RESTORABLE * 5 + NOT_RESTORABLE + RESTORABLE * 4
    assert picture.marks.index(SNAPSHOT) == 6


def test_a_gap_shorter_than_a_slice_still_takes_a_column() -> None:
    picture = draw([Window(0, 500 * S, 0, 10), Window(500 * S + 1, 1000 * S, 12, 30)], [], width=10)
    assert picture is not None
    assert NOT_RESTORABLE in picture.cells
    assert picture.cells.count(RESTORABLE) == 9


def test_nothing_restorable_draws_nothing() -> None:
    assert draw([], [5 * S]) is None


def test_the_command_draws_the_picture_in_plain_text_and_keeps_the_json_shape(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PITR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PITR_REPO", str(tmp_path / "repo"))
    for i in range(3):
        assert run(capsys, "put", f"k{i}", "v")[0] == 0
    assert run(capsys, "snapshot")[0] == 0
    assert run(capsys, "put", "later", "v")[0] == 0
    assert run(capsys, "archive")[0] == 0
    code, out, err = run(capsys, "timeline", "--plain", "--width", "20")
    assert code == 0, err
    bar = next(line for line in out.splitlines() if line.strip().endswith("restorable"))
    assert bar.strip() == f"|{RESTORABLE * 20}|  restorable"
    marks = next(line for line in out.splitlines() if line.strip().endswith("snapshots"))
    assert marks.count(SNAPSHOT) == 1
    assert "(LSN 0)" in out
    assert "(LSN 4)" in out
    code, out, _ = run(capsys, "timeline", "--json")
    [row] = json.loads(out)
    assert [(w["start_lsn"], w["end_lsn"]) for w in row["windows"]] == [(0, 4)]
    assert "cells" not in out  # the picture is text only; --json keeps the data
