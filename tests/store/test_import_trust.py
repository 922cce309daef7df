"""`pitr import` over bad times and faults: refused whole, or stopped saying exactly how far it got."""

from __future__ import annotations

import errno
import functools
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pitr.cli import import_
from pitr.datadir.state import StateDB
from pitr.store import Store, StoreOptions
from segments import wal_writer
from tests.helpers.cli import run_cli as run


def write_lines(path: Path, lines: list[dict[str, object]]) -> str:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def test_a_commit_time_far_in_the_future_is_refused_before_anything_is_imported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    src = write_lines(tmp_path / "in.jsonl", [
        {"op": "put", "key": "a", "value": "1", "ts": "2020-01-01T00:00:00Z"},
        {"op": "put", "key": "b", "value": "2", "ts": "2099-01-01T00:00:00Z"},
        {"op": "put", "key": "c", "value": "3"},
    ])
    code, _, err = run(capsys, "import", src, "--data", data)
    assert code == 2
    assert "line 2" in err
    assert "2099-01-01" in err
    assert "--max-clock-skew" in err
    code, _, _ = run(capsys, "get", "a", "--data", data)
    assert code == 1, "nothing was imported"
    code, out, _ = run(capsys, "import", src, "--data", data, "--max-clock-skew", "inf", "--json")
    assert code == 0
    assert json.loads(out) == {"commits": 3, "first_lsn": 1, "last_lsn": 3}
    assert run(capsys, "import", src, "--data", data, "--max-clock-skew", "-5")[0] == 2


@pytest.mark.parametrize(("run_lines", "in_flight"), [(1, 1), (3, 2)])
def test_an_import_stopped_by_a_full_disk_names_the_last_committed_line_and_lsn(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        run_lines: int, in_flight: int) -> None:
    """One run of lines per WAL write (1 line per run: the old one-line-at-a-time import), the
    disk full after four writes: what the import says got in is exactly what is in the store."""
    data = str(tmp_path / "data")
    src = write_lines(tmp_path / "in.jsonl",
                      [{"op": "put", "key": f"k{i}", "value": "v" * 100} for i in range(60)])
    # 60 lines: more than four groups can hold however runs join them (at most in_flight runs a group)
    monkeypatch.setattr(import_, "RUN_LINES", run_lines)
    monkeypatch.setattr(import_, "IN_FLIGHT", in_flight)
    real = os.pwritev
    calls = 0

    def full_after_some(fd: int, buffers: Sequence[bytes], offset: int) -> int:
        nonlocal calls
        calls += 1
        if calls > 5:  # the header, then four groups
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, buffers, offset)

    monkeypatch.setattr(wal_writer.os, "pwritev", full_after_some)
    code, out, err = run(capsys, "import", src, "--data", data, "--json")
    monkeypatch.undo()
    assert code == 1
    assert "No space left on device" in err
    assert "Traceback" not in err
    report = json.loads(out.splitlines()[0])
    last = report["last_line"]
    if run_lines == 1:
        assert "lines up to 4 are committed (4 commits, LSN 1..4)" in err
        assert "line 5 was not acknowledged" in err
        assert report == {"commits": 4, "first_lsn": 1, "last_lsn": 4, "complete": False,
                          "last_line": 4, "unacknowledged_line": 5}
    else:  # runs of 3 lines, two in flight: groups join runs, so how far it got varies, but is told true
        assert last % run_lines == 0
        assert 4 * run_lines * in_flight >= last >= run_lines
        assert report == {"commits": last, "first_lsn": 1, "last_lsn": last, "complete": False,
                          "last_line": last, "unacknowledged_line": last + 1}
        assert f"lines up to {last} are committed ({last} commits, LSN 1..{last})" in err
        assert f"lines {last + 1}.." in err
    for i in range(last):
        assert run(capsys, "get", f"k{i}", "--data", data)[:2] == (0, "v" * 100 + "\n")


def test_a_missing_import_file_is_one_line_and_creates_no_store(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    code, _, err = run(capsys, "import", str(tmp_path / "nonexistent.jsonl"), "--data", str(data))
    assert code == 1
    assert "nonexistent.jsonl: cannot read the import file" in err
    assert "Traceback" not in err
    assert not data.exists()


def test_an_import_that_outruns_lmdb_waits_for_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays bounded: acknowledged changes not yet in LMDB never pile up past the store's
    apply threshold (and what is in flight), however slow the apply is."""
    threshold, run_lines = 64, 16
    monkeypatch.setattr(import_, "RUN_LINES", run_lines)
    monkeypatch.setattr(import_, "StoreOptions", functools.partial(StoreOptions, apply_threshold=threshold))
    slow_apply = StateDB.apply

    def apply(self: StateDB, *args: Any) -> None:
        time.sleep(0.05)  # an LMDB far slower than the import
        slow_apply(self, *args)

    monkeypatch.setattr(StateDB, "apply", apply)
    seen: list[int] = []
    queue = Store.queue_commits

    def watched(self: Store, commits: Any) -> Any:
        seen.append(self.unapplied_keys)
        return queue(self, commits)

    monkeypatch.setattr(Store, "queue_commits", watched)
    src = write_lines(tmp_path / "in.jsonl", [{"op": "put", "key": f"k{i}", "value": "v"} for i in range(3008)])
    code, out, err = run(capsys, "import", src, "--data", str(tmp_path / "data"), "--json")
    assert code == 0, err
    assert json.loads(out)["commits"] == 3008
    assert len(seen) == 3008 // run_lines
    assert max(seen) <= threshold + import_.IN_FLIGHT * run_lines
