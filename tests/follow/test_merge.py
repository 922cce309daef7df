"""A standby behind a merge: it applies the merge's inputs it has not applied yet (not the merged file,
which it would read whole), falls back on the merged file when an input is damaged or gone, and
ends equal to restore --latest each way. Also the choice of files on its own, and the trace."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

from pitr.archiver.publish import merge_run
from pitr.errors import HistoryGap
from pitr.follow.pending import Listed, choose_steps, parse_listing
from pitr.repo.repository import open_repository
from tests.follow.test_follow import _segment_files, catch_up, commit, env, exported, latest

__all__ = ["env"]  # the fixture, shared with test_follow


def merge_after_first(repo_dir: Path) -> str:
    """Merge every segment but the first into one, as the archiver does (the inputs stay)."""
    async def go() -> str:
        async with open_repository(str(repo_dir)) as repo:
            await repo.sync()
            return (await merge_run(repo, repo.catalog.segments()[1:])).name

    return trio.run(go)


def traced(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, standby: Path,
           trace: Path) -> list[dict[str, object]]:
    """Catch `standby` up with the follower's trace on; every segment it applied, in order."""
    monkeypatch.setenv("PITR_FOLLOW_TRACE", str(trace))
    code, _lines, err = catch_up(capsys, standby)
    monkeypatch.delenv("PITR_FOLLOW_TRACE")
    assert code == 0, err
    applied: list[dict[str, object]] = []
    for line in trace.read_text().splitlines():
        applied += json.loads(line)["applied"]
    return applied


def test_a_standby_behind_a_merge_applies_its_inputs_then_the_merged_file_once_they_are_gone(
        env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    standbys = [env / n for n in ("inputs", "damaged", "gone")]
    commit(capsys, ("a", "1"))
    for standby in standbys:
        assert catch_up(capsys, standby)[0] == 0
    for i in range(3):
        commit(capsys, (f"k{i}", "v" * 200), ("a", str(i)))
    inputs = _segment_files(env)
    merged = merge_after_first(env / "repo")  # starts where the standbys' next file does
    want = latest(capsys, env, "r1")

    applied = traced(capsys, monkeypatch, standbys[0], env / "t0.jsonl")
    assert [a["segment"] for a in applied] == [p.name for p in inputs[1:]]  # not the merged file
    assert all(a["bytes_read"] >= a["size"] for a in applied)  # every byte of each input read (checked)
    assert exported(capsys, standbys[0]) == want

    damaged = inputs[2]
    raw = bytearray(damaged.read_bytes())
    raw[len(raw) // 3] ^= 0x40
    os.chmod(damaged, 0o600)
    damaged.write_bytes(bytes(raw))
    applied = traced(capsys, monkeypatch, standbys[1], env / "t1.jsonl")
    assert [a["segment"] for a in applied] == [inputs[1].name, merged]  # entered mid-way, checked whole
    assert exported(capsys, standbys[1]) == want

    for path in inputs[1:]:  # what pitr cleanup does once the merged file is indexed
        path.unlink()
    applied = traced(capsys, monkeypatch, standbys[2], env / "t2.jsonl")
    assert [a["segment"] for a in applied] == [merged]
    assert exported(capsys, standbys[2]) == want


def _listing(*ranges: tuple[int, int]) -> list[Listed]:
    return parse_listing([(f"{a:020d}-{b:020d}.seg", 100 * (b - a + 1)) for a, b in ranges])


def test_the_next_files_are_the_smallest_starting_after_the_anchor_else_the_live_one_containing_it() -> None:
    listed = _listing((1, 10), (11, 20), (21, 30), (1, 30), (31, 40))
    steps = choose_steps(listed, 10, "repo")
    assert [(s.chosen.first_lsn, s.chosen.last_lsn) for s in steps] == [(11, 20), (21, 30), (31, 40)]
    assert [s.fallback and (s.fallback.first_lsn, s.fallback.last_lsn) for s in steps] == [(1, 30), (1, 30), None]
    assert [(s.chosen.first_lsn, s.chosen.last_lsn) for s in choose_steps(_listing((1, 30), (31, 40)), 10,
                                                                         "repo")] == [(1, 30), (31, 40)]
    assert [(s.chosen.first_lsn, s.chosen.last_lsn) for s in choose_steps(listed, 0, "repo")] == [
        (1, 10), (11, 20), (21, 30), (31, 40)]  # the inputs, not the merged file starting where they do
    assert choose_steps(listed, 40, "repo") == []
    assert len(choose_steps(listed, 0, "repo", max_bytes=1)) == 1  # at least one, then report and look again
    with pytest.raises(HistoryGap, match=r"LSN 11\.\.20 are in no segment"):
        choose_steps(_listing((1, 10), (21, 30)), 10, "repo")
