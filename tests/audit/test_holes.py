"""Audit answers over holes (#11 item 5): history, log, diff and get --at name the missing LSNs.

A repository of three segments (LSN 1-2, 3-4, 5-6) loses or damages its
middle one. Every audit command must then refuse (exit 1) naming LSN 3..4, or
with --allow-gaps answer with the hole named in place (exit 0).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

from pitr.archiver import ArchiveOptions
from pitr.audit import find_holes
from pitr.cli.main import main
from pitr.errors import Gap
from pitr.repo.repository import open_repository
from pitr.timefmt import format_time
from tests.audit.model import Step, Written, drop_segments_before, write_history

NO_MERGE = ArchiveOptions(interval=3600.0, merge_count=1000)
STEPS: list[Step] = [
    ("put", b"k", b"v1", None), ("tick", 10), ("put", b"other", b"o1", None), ("cycle",), ("tick", 10),
    ("put", b"k", b"v2", None), ("tick", 10), ("put", b"other", b"o2", None), ("cycle",), ("tick", 10),
    ("put", b"k", b"v3", None), ("tick", 10), ("put", b"other", b"o3", None), ("cycle",),
]
MIDDLE = "00000000000000000003-00000000000000000004.seg"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    assert isinstance(exc.value.code, int)
    assert "Traceback" not in err
    return exc.value.code, out, err


@pytest.fixture
def written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Written:
    monkeypatch.setenv("PITR_REPO", str(tmp_path / "repo"))
    monkeypatch.setenv("PITR_CACHE_DIR", str(tmp_path / "cache"))
    result: Written = trio.run(lambda: write_history(str(tmp_path), STEPS, options=NO_MERGE))
    segments = sorted(os.listdir(tmp_path / "repo" / "segments"))
    assert MIDDLE in segments
    return result


def lose_middle(tmp_path: Path) -> None:
    (tmp_path / "repo" / "segments" / MIDDLE).unlink()


def damage_middle(tmp_path: Path) -> None:
    path = tmp_path / "repo" / "segments" / MIDDLE
    data = bytearray(path.read_bytes())
    data[128 + 20] ^= 0xFF  # inside the first (only) block, which starts after the 128-byte header
    os.chmod(path, 0o600)
    path.write_bytes(bytes(data))


def test_history_over_a_missing_segment_refuses_naming_the_hole(
        written: Written, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lose_middle(tmp_path)
    code, out, err = run(capsys, "history", "k")
    assert code == 1
    assert out == ""
    assert "LSN 3..4" in err
    assert "--allow-gaps" in err
    code, out, err = run(capsys, "history", "k", "--json")
    assert (code, out) == (1, "")
    assert "LSN 3..4" in err

    code, out, err = run(capsys, "history", "k", "--json", "--allow-gaps")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r.get("lsn", r.get("gap")) for r in rows] == [1, {"first_lsn": 3, "last_lsn": 4, "reason": "missing"}, 5]
    assert "LSN 3..4" in err  # the summary on stderr
    code, out, err = run(capsys, "history", "k", "--allow-gaps")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("LSN          1")
    assert "hole: LSN 3..4" in lines[1]
    assert lines[2].startswith("LSN          5")

    # a range that does not reach the hole needs no permission
    c1, _c2, c3, _c4, c5, _c6 = written.commits
    assert run(capsys, "history", "k", "--until", format_time(c1.ts_ns + 5))[0] == 0
    code, out, _ = run(capsys, "history", "k", "--since", format_time(c5.ts_ns), "--json")
    assert code == 0
    assert [json.loads(line)["lsn"] for line in out.splitlines()] == [5]
    assert run(capsys, "history", "k", "--since", format_time(c3.ts_ns))[0] == 1


def test_log_over_a_missing_segment_refuses_naming_the_hole(
        written: Written, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lose_middle(tmp_path)
    code, out, err = run(capsys, "log", "--json")
    assert (code, out) == (1, "")
    assert "LSN 3..4" in err
    code, out, err = run(capsys, "log", "--json", "--allow-gaps")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r.get("lsn", r.get("gap")) for r in rows] == [
        1, 2, {"first_lsn": 3, "last_lsn": 4, "reason": "missing"}, 5, 6]
    assert "1 hole" in err
    assert "LSN 3..4" in err
    assert run(capsys, "log", "--since-lsn", "5")[0] == 0
    assert run(capsys, "log", "--until-lsn", "2")[0] == 0
    assert run(capsys, "log", "--since-lsn", "4")[0] == 1


def test_diff_and_get_at_over_a_missing_segment_refuse_naming_the_hole(
        written: Written, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lose_middle(tmp_path)
    c1, _c2, c3, _c4, c5, _c6 = written.commits
    code, out, err = run(capsys, "diff", format_time(c1.ts_ns), format_time(c5.ts_ns))
    assert code == 1
    assert "LSN 3..4" in err
    for at in (c3.ts_ns, c5.ts_ns):  # in the hole, and after it with no snapshot between
        code, out, err = run(capsys, "get", "k", "--at", format_time(at))
        assert (code, out) == (1, "")
        assert "LSN 3..4" in err
    code, out, _ = run(capsys, "get", "k", "--at", format_time(c1.ts_ns))
    assert (code, out) == (0, "v1\n")


def test_a_damaged_segment_is_a_hole_named_with_its_file(
        written: Written, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    damage_middle(tmp_path)
    for argv in (("history", "k"), ("log",), ("get", "k", "--at", format_time(written.commits[4].ts_ns))):
        code, out, err = run(capsys, *argv)
        assert (code, out) == (1, ""), argv
        assert "LSN 3..4" in err, argv
        assert MIDDLE in err, argv
    code, out, _ = run(capsys, "log", "--json", "--allow-gaps")
    assert code == 0
    (gap,) = [json.loads(line)["gap"] for line in out.splitlines() if "gap" in json.loads(line)]
    assert (gap["first_lsn"], gap["last_lsn"]) == (3, 4)
    assert MIDDLE in gap["reason"]


def test_a_block_damaged_after_indexing_is_an_error_naming_segment_offset_and_lsn(
        written: Written, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "history", "k")[0] == 0  # indexed while intact
    damage_middle(tmp_path)
    for argv in (("history", "k"), ("log",), ("log", "--allow-gaps"),
                 ("get", "k", "--at", format_time(written.commits[3].ts_ns))):
        code, out, err = run(capsys, *argv)
        assert code == 1, argv
        assert MIDDLE in err, argv
        assert "offset 128" in err, argv
        assert "LSN 3" in err, argv
        assert "v2" not in out


def test_a_watermark_beyond_the_last_segment_is_a_hole_at_the_end(
        written: Written, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "repo" / "segments" / "00000000000000000005-00000000000000000006.seg").unlink()
    code, _, err = run(capsys, "history", "k")
    assert code == 1
    assert "LSN 5..6" in err


def test_since_after_until_is_an_argument_error(written: Written, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("history", "log"):
        argv = [command] + (["k"] if command == "history" else [])
        code, out, err = run(capsys, *argv, "--since", "2026-01-02T00:00:00Z", "--until", "2026-01-01T00:00:00Z")
        assert (code, out) == (2, "")
        assert "is after --until" in err
        assert len(err.strip().splitlines()) == 1
    assert run(capsys, "log", "--since-lsn", "5", "--until-lsn", "2")[0] == 2


async def _retained(root: Path) -> tuple[list[Gap], list[Gap]]:
    steps: list[Step] = [("put", b"k", b"v1", None), ("cycle",), ("tick", 10), ("put", b"k", b"v2", None),
                         ("cycle",), ("tick", 10), ("put", b"k", b"v3", None), ("snapshot",), ("cycle",),
                         ("tick", 10), ("put", b"k", b"v4", None), ("cycle",)]
    await write_history(str(root), steps, options=NO_MERGE)
    async with open_repository(str(root / "repo")) as repo:
        await repo.sync()
        ident = await repo.require_identity()
        (snapshot,) = repo.catalog.snapshots()
        await drop_segments_before(repo, snapshot.lsn)
        after_retention = [h.gap for h in find_holes(repo.catalog, ident)]
        await repo.storage.delete("snapshots/" + snapshot.name)
        await repo.sync()
        without_snapshot = [h.gap for h in find_holes(repo.catalog, ident)]
    return after_retention, without_snapshot


def test_the_log_before_the_oldest_snapshot_removed_by_retention_is_not_a_hole(tmp_path: Path) -> None:
    after_retention, without_snapshot = trio.run(_retained, tmp_path)
    assert after_retention == []
    assert without_snapshot == [Gap(1, 2)]  # with no base left, the removed log is a hole again
