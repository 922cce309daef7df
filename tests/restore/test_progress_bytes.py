"""Restore and verify report progress in bytes: done over planned, so the bar moves with the work
(a restore's base snapshot is most of it; counted in commits it was 98% done before it began)."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import pytest

from pitr.cli.common import progress_for
from pitr.progress import ByteCounter, fraction, seconds_left
from pitr.repo import layout
from pitr.repo.repository import open_repository
from pitr.restore import RestoreOptions, RestorePlan, RestoreTarget, restore
from pitr.verify import verify_repository
from segments.source import BytesSource
from tests.store.test_restore import make_history


class Recording:
    def __init__(self) -> None:
        self.reports: list[tuple[str, int, int]] = []

    def __call__(self, phase: str, done: int, total: int) -> None:
        self.reports.append((phase, done, total))

    def check_bytes(self, phase: str, planned: int) -> None:
        """Every report is of `phase`, done never goes back nor past the plan, and the last is all of it."""
        assert self.reports, "no progress was reported"
        assert {(p, total) for p, _done, total in self.reports} == {(phase, planned)}
        done = [d for _p, d, _t in self.reports]
        assert done == sorted(done)
        assert done[-1] == planned


def test_the_model_is_bytes_done_over_bytes_planned() -> None:
    assert fraction(25, 100) == 0.25
    assert fraction(0, 0) == 1.0
    assert fraction(150, 100) == 1.0
    assert seconds_left(25, 100, elapsed=1.0) == 3.0  # 25 B/s, 75 B left
    assert seconds_left(0, 100, elapsed=1.0) is None


def test_a_counting_source_reports_every_byte_read_and_never_past_the_plan() -> None:
    seen = Recording()
    counter = ByteCounter("restore", 10, seen)
    source = counter.counting(BytesSource(b"0123456789abcdef"))
    assert source.read(0, 4) == b"0123"
    source.read(4, 4)
    source.read(0, 8)  # read again (an index read twice): still at most the plan
    assert seen.reports == [("restore", 4, 10), ("restore", 8, 10), ("restore", 10, 10)]


@pytest.mark.anyio
async def test_restore_reports_the_bytes_of_its_snapshot_and_segments(tmp_path: Path) -> None:
    history = await make_history(tmp_path, snapshot_after=3)
    async with open_repository(history.repo_dir) as repo:
        target = RestoreTarget(latest=True)
        plan = await restore(repo, RestoreOptions(target=target, dest=history.dest(), dry_run=True))
        assert isinstance(plan, RestorePlan)
        assert plan.snapshot is not None, "the test wants a base snapshot to weigh"
        seen = Recording()
        await restore(repo, RestoreOptions(target=target, dest=history.dest()), progress=seen)
    seen.check_bytes("restore", plan.bytes_to_read)
    assert plan.bytes_to_read > plan.commits_to_replay  # bytes, not commits


@pytest.mark.anyio
async def test_verify_reports_the_bytes_of_every_file_it_checks(tmp_path: Path) -> None:
    history = await make_history(tmp_path, snapshot_after=3)
    async with open_repository(history.repo_dir) as repo:
        files = [*await repo.storage.list(layout.SEGMENTS), *await repo.storage.list(layout.SNAPSHOTS)]
        seen = Recording()
        report = await verify_repository(repo, progress=seen)
    assert report.ok
    seen.check_bytes("verify", sum(f.size for f in files))


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_never_shown_under_json_and_rich_loads_only_when_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert progress_for(argparse.Namespace(json=False)).enabled is True  # a terminal shows it
    assert progress_for(argparse.Namespace(json=True)).enabled is False  # --json never does
    monkeypatch.undo()
    script = ("import sys\nfrom pitr.cli.common import Progress\np = Progress(False)\np('restore', 1, 2)\n"
              "p.done()\nassert 'rich' not in sys.modules, 'rich was imported for a progress never shown'\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
