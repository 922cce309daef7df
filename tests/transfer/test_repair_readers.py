"""Every reader of a listing takes the newest repair generation and reads no superseded file.

The specification (readers besides verify, restore and cleanup, which test_repair_write_once.py covers):

- the follower's listing leaves out a file a repair superseded, so it applies the repaired copy;
- `python -m segments verify` accepts a file named at a repair generation of its contents' name, and still
  refuses a misnamed one;
- `pitr.backup.list` of a local directory lists the live copy of a repaired snapshot, once;
- a repository's catalog, reindexed from nothing after a repair, indexes the repaired copies only.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import trio

from pitr import backup
from pitr.follow.pending import choose_steps, parse_listing
from pitr.repo.repository import open_repository
from segments import segment_name
from segments.__main__ import main as segments_main
from segments.naming import with_generation
from tests.helpers.cli import run_cli
from tests.repo.history import History, build_history
from tests.transfer.test_copy import flip_bit, segment_names


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return build_history(str(tmp_path_factory.mktemp("readers-history")), commits=120, snapshot_every=60,
                         merge_count=1000, seed=11)


@pytest.fixture
def repaired(history: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str, str]:
    """A copy of the history with one segment and one snapshot damaged and repaired: (repo, segment, snapshot)
    named as they were damaged (generation 0)."""
    healthy = str(tmp_path / "healthy")
    shutil.copytree(history.repo, healthy, ignore=shutil.ignore_patterns(".catalog", ".work"))
    target = str(tmp_path / "target")
    assert run_cli(capsys, "copy", "--from", healthy, "--to", target)[0] == 0
    segment = segment_names(target)[3]
    snapshot = sorted(os.listdir(os.path.join(target, "snapshots")))[0]
    flip_bit(os.path.join(target, "segments", segment))
    flip_bit(os.path.join(target, "snapshots", snapshot), at=0.3)
    code, out, err = run_cli(capsys, "repair", "--from", healthy, target)
    assert code == 0, out + err
    return target, segment, snapshot


def test_the_follower_applies_the_repaired_copy() -> None:
    listing = [(segment_name(1, 5), 100), (segment_name(6, 9), 50), (segment_name(6, 9, 1), 50),
               (segment_name(10, 12), 30)]
    listed = parse_listing(listing)
    assert [s.name for s in listed] == [segment_name(1, 5), segment_name(6, 9, 1), segment_name(10, 12)]
    steps = choose_steps(listed, 5, "repo")
    assert [s.chosen.name for s in steps] == [segment_name(6, 9, 1), segment_name(10, 12)]


def test_segments_verify_accepts_a_repair_generation(repaired: tuple[str, str, str],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    target, segment, snapshot = repaired
    for path in (Path(target, "segments", with_generation(segment, 1)),
                 Path(target, "snapshots", with_generation(snapshot, 1))):
        assert segments_main(["verify", str(path)]) == 0, capsys.readouterr().out
    capsys.readouterr()
    wrong = Path(target, "segments", with_generation(segment_names(target)[0], 1))  # another file's name
    shutil.copy(Path(target, "segments", with_generation(segment, 1)), wrong)
    assert segments_main(["verify", str(wrong)]) == 1
    assert "name does not match" in capsys.readouterr().out


def test_backup_list_shows_the_live_copy_of_a_repaired_snapshot(repaired: tuple[str, str, str]) -> None:
    target, _segment, snapshot = repaired
    listed = [os.path.basename(b.path) for b in trio.run(backup.list, target)]
    assert with_generation(snapshot, 1) in listed
    assert snapshot not in listed
    assert len(listed) == len(set(listed)) == 2


def test_a_reindexed_catalog_holds_the_repaired_copies_only(repaired: tuple[str, str, str],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    target, segment, snapshot = repaired
    code, out, err = run_cli(capsys, "reindex", "--repo", target)
    assert code == 0, out + err  # the damaged files are superseded: not read, not reported

    async def catalog_names() -> tuple[list[str], list[str]]:
        async with open_repository(target) as repo:
            await repo.sync()
            return [s.name for s in repo.catalog.segments()], [s.name for s in repo.catalog.snapshots()]

    segments, snapshots = trio.run(catalog_names)
    assert with_generation(segment, 1) in segments
    assert segment not in segments
    assert with_generation(snapshot, 1) in snapshots
    assert snapshot not in snapshots
    code, out, err = run_cli(capsys, "timeline", "--repo", target)
    assert code == 0, out + err
