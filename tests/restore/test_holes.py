"""A restore target inside a hole, or past one at the end, is refused naming the hole (never "outside")."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import run_cli


@pytest.fixture
def three_segments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    monkeypatch.setenv("PITR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PITR_REPO", str(tmp_path / "repo"))
    for batch in (range(1, 4), range(4, 7), range(7, 8)):
        for i in batch:
            assert run_cli(capsys, "put", f"k{i}", f"v{i}")[0] == 0
        assert run_cli(capsys, "archive")[0] == 0
    return tmp_path / "repo" / "segments"


def test_an_lsn_inside_a_hole_names_the_hole(three_segments: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    next(three_segments.glob("00000000000000000004-*.seg")).unlink()
    code, _, err = run_cli(capsys, "restore", "--lsn", "5", "--dest", str(tmp_path / "r"))
    assert code == 1
    assert "LSN 5 is in a hole of the archived history (LSN 4..6" in err
    assert not (tmp_path / "r").exists()


def test_latest_past_a_hole_at_the_end_is_refused_with_the_lsn_that_restores(
        three_segments: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    next(three_segments.glob("00000000000000000007-*.seg")).unlink()  # the watermark still says LSN 7
    code, _, err = run_cli(capsys, "restore", "--latest", "--dest", str(tmp_path / "r"))
    assert code == 1
    assert "the newest history cannot be read (LSN 7..7" in err
    assert "pass --lsn 6" in err
    assert not (tmp_path / "r").exists()
    assert run_cli(capsys, "restore", "--lsn", "6", "--dest", str(tmp_path / "r"))[0] == 0


def test_nothing_restorable_names_the_damaged_file_that_made_it_so(
        three_segments: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = next(three_segments.glob("00000000000000000001-*.seg"))
    data = bytearray(first.read_bytes())
    data[150] ^= 0xFF  # inside the first block: LSNs 1..3 unreadable, no base after them
    first.write_bytes(bytes(data))
    assert run_cli(capsys, "verify")[0] == 1  # the catalog now knows the file is damaged
    code, _, err = run_cli(capsys, "restore", "--latest", "--dest", str(tmp_path / "r"))
    assert code == 1
    assert "nothing to restore" in err
    assert first.name in err
    assert not (tmp_path / "r").exists()
