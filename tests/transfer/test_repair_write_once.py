"""Write-once repair on a local repository (tests/remote/test_repair_write_once_s3.py has S3 and Object Lock).

The specification:

- a repair writes every name once (each a name the repository did not hold), replaces nothing and deletes
  nothing, counted request by request at the storage backend;
- afterwards `pitr verify` is OK and reads no superseded file (named, one is SUPERSEDED, never BROKEN),
  restores and audit (log, history) equal the healthy repository's, and
  the damaged files are where they were until `pitr cleanup` deletes them (and only them, beside the rule);
- a repaired copy damaged again is superseded by the next generation;
- a damaged newest generation beside an intact older one is reported and refused, never passed over for it;
- a damaged merged segment whose healthy copy holds only the smaller inputs is superseded by their merge.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

import pitr.repo.repository as repository_module
from pitr.repo.live import live_segments, live_snapshots
from pitr.restore import RestoreTarget
from pitr.storage import LocalStorage, Storage
from segments.naming import parse_segment_name, segment_name, with_generation
from tests.helpers.cli import run_cli
from tests.repo.history import History, build_history
from tests.storage.test_write_once import Recorder, counting
from tests.transfer.test_copy import flip_bit, merge_in_place, restored_state, segment_names


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """300 commits in about 25 segments, snapshots at LSN 100, 200 and 300."""
    return build_history(str(tmp_path_factory.mktemp("repair-history")), commits=300, snapshot_every=100,
                         merge_count=1000, seed=5)


@pytest.fixture
def healthy(history: History, tmp_path: Path) -> str:
    path = str(tmp_path / "healthy")
    shutil.copytree(history.repo, path, ignore=shutil.ignore_patterns(".catalog", ".work"))
    return path


@pytest.fixture
def target(healthy: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """A copy of the healthy repository, to damage."""
    path = str(tmp_path / "target")
    assert run_cli(capsys, "copy", "--from", healthy, "--to", path)[0] == 0
    return path


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Every write and delete any local repository's storage makes from now on."""
    recorded = Recorder()
    wrapped = counting(LocalStorage, recorded)
    real_open = repository_module.open_storage

    def open_storage(target: str, **options: Any) -> Storage:  # noqa: ANN401
        plain = real_open(target, **options)
        if type(plain) is not LocalStorage:
            return plain
        return wrapped(plain.root, object_lock=plain.object_lock)  # type: ignore[no-any-return]

    monkeypatch.setattr(repository_module, "open_storage", open_storage)
    return recorded


def all_names(repo: str) -> set[str]:
    return {f"{folder}/{n}" for folder in ("segments", "snapshots") for n in os.listdir(os.path.join(repo, folder))}


def live_bytes(repo: str) -> dict[tuple[str, int, int], bytes]:
    """The live files' bytes by (folder, LSN range): what a reader of the repository reads."""
    out = {}
    segs = live_segments(os.listdir(os.path.join(repo, "segments")))[0]
    for name, (first, last) in segs.items():
        out[("segments", first, last)] = Path(repo, "segments", name).read_bytes()
    for name, lsn in live_snapshots(os.listdir(os.path.join(repo, "snapshots")))[0].items():
        out[("snapshots", lsn, lsn)] = Path(repo, "snapshots", name).read_bytes()
    return out


def repair(capsys: pytest.CaptureFixture[str], healthy: str, target: str) -> dict[str, Any]:
    code, out, err = run_cli(capsys, "repair", "--from", healthy, target, "--json")
    assert code == 0, out + err
    report: dict[str, Any] = json.loads(out)
    return report


def assert_write_once(recorder: Recorder, before: set[str]) -> None:
    assert not recorder.deleted, f"deleted during repair: {recorder.deleted}"
    assert not recorder.replaced, f"replaced during repair: {recorder.replaced}"
    twice = {n: c for n, c in recorder.writes.items() if c > 1}
    assert not twice, f"written twice: {twice}"
    again = sorted(set(recorder.writes) & before)
    assert not again, f"names the repository held already were written: {again}"


def test_repair_writes_new_names_only_and_cleanup_deletes_the_damaged_files(
        history: History, healthy: str, target: str, recorder: Recorder, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    names = segment_names(target)
    damaged, deleted = names[4], names[10]
    flip_bit(os.path.join(target, "segments", damaged))
    damaged_bytes = Path(target, "segments", damaged).read_bytes()
    os.unlink(os.path.join(target, "segments", deleted))
    snapshot = sorted(os.listdir(os.path.join(target, "snapshots")))[1]
    flip_bit(os.path.join(target, "snapshots", snapshot), at=0.3)
    assert run_cli(capsys, "verify", "--repo", target)[0] == 1
    before = all_names(target)
    recorder.writes.clear()

    report = repair(capsys, healthy, target)
    assert report["ok"]
    assert sorted(report["replaced"]) == sorted([damaged, snapshot])
    assert report["filled"] == [deleted]
    assert {(p["for"], p["file"]) for p in report["published"]} >= {
        (damaged, with_generation(damaged, 1)), (snapshot, with_generation(snapshot, 1))}
    assert_write_once(recorder, before)
    assert set(recorder.writes) >= {f"segments/{with_generation(damaged, 1)}", f"segments/{deleted}",
                                    f"snapshots/{with_generation(snapshot, 1)}"}
    assert Path(target, "segments", damaged).read_bytes() == damaged_bytes  # the evidence stays, unread
    assert not os.path.exists(os.path.join(target, ".damaged"))
    assert live_bytes(target) == live_bytes(healthy)

    code, out, err = run_cli(capsys, "verify", "--repo", target, "--json")
    assert code == 0, out + err
    assert damaged not in out
    assert snapshot not in out
    for lsn in (150, 300):
        expected = restored_state(healthy, str(tmp_path / f"h{lsn}"), RestoreTarget(lsn=lsn))
        assert restored_state(target, str(tmp_path / f"t{lsn}"), RestoreTarget(lsn=lsn)) == expected
        assert expected == history.commits[lsn - 1][2]

    for argv in (["log", "--json"], ["history", "key007", "--json"], ["history", "key011", "--json"]):
        ours, theirs = (run_cli(capsys, *argv, "--repo", repo) for repo in (target, healthy))
        assert ours[0] == 0, ours
        assert ours == theirs  # audit reads the repaired copies as the healthy repository's own
    code, out, err = run_cli(capsys, "verify", "--repo", target, damaged)  # named: what it is, not BROKEN
    assert code == 1, out + err
    assert f"SUPERSEDED {damaged}: superseded" in out
    assert "BROKEN" not in out
    code, out, err = run_cli(capsys, "cleanup", "--repo", target, "--keep-count", "10", "--json")
    assert code == 0, out + err
    done = json.loads(out)[0]
    assert sorted(done["superseded"]) == sorted([f"segments/{damaged}", f"snapshots/{snapshot}"])
    assert done["snapshots"] == []  # all three kept; the log before the oldest goes by the rule
    rule = [f"segments/{n}" for n in done["segments"]]
    assert sorted(recorder.deleted) == sorted(done["superseded"] + rule + done["watermarks"])
    assert not os.path.exists(os.path.join(target, "segments", damaged))
    assert not os.path.exists(os.path.join(target, "snapshots", snapshot))
    assert run_cli(capsys, "verify", "--repo", target)[0] == 0
    assert restored_state(target, str(tmp_path / "after"), RestoreTarget(latest=True)) == history.commits[-1][2]


def test_a_repaired_copy_damaged_again_gets_the_next_generation(
        healthy: str, target: str, recorder: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    victim = segment_names(target)[6]
    flip_bit(os.path.join(target, "segments", victim))
    before = all_names(target)
    recorder.writes.clear()
    assert repair(capsys, healthy, target)["replaced"] == [victim]
    first = with_generation(victim, 1)
    flip_bit(os.path.join(target, "segments", first), at=0.4)
    assert run_cli(capsys, "verify", "--repo", target)[0] == 1
    report = repair(capsys, healthy, target)
    assert report["replaced"] == [first]
    assert [p["file"] for p in report["published"]] == [with_generation(victim, 2)]
    assert_write_once(recorder, before)
    assert run_cli(capsys, "verify", "--repo", target)[0] == 0
    assert restored_state(target, str(tmp_path / "t"), RestoreTarget(latest=True)) == \
        restored_state(healthy, str(tmp_path / "h"), RestoreTarget(latest=True))
    code, out, err = run_cli(capsys, "cleanup", "--repo", target, "--json")
    assert code == 0, out + err
    assert sorted(json.loads(out)[0]["superseded"]) == sorted([f"segments/{victim}", f"segments/{first}"])


def test_a_damaged_newest_generation_is_refused_not_passed_over_for_an_intact_older_one(
        healthy: str, target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    victim = segment_names(target)[6]
    intact = Path(target, "segments", victim).read_bytes()
    flip_bit(os.path.join(target, "segments", victim))
    repair(capsys, healthy, target)
    repaired = with_generation(victim, 1)
    Path(target, "segments", victim).write_bytes(intact)  # the older generation whole again (e.g. a restore
    flip_bit(os.path.join(target, "segments", repaired), at=0.6)  # from tape), the repaired copy damaged
    code, out, err = run_cli(capsys, "verify", "--repo", target, "--json")
    assert code == 1, out + err
    found = json.loads(out)[0]["findings"]
    assert [f["file"] for f in found if f["kind"] != "missing"][:1] == [repaired], found
    assert all(f["file"] != victim for f in found)  # superseded: never read, never blamed
    inside = parse_segment_name(victim)[1]  # type: ignore[index]
    code, out, err = run_cli(capsys, "restore", "--repo", target, "--lsn", str(inside), "--dest",
                             str(tmp_path / "r"))
    assert code != 0, out + err  # the LSNs of the damaged newest copy are a hole: the older one is not read
    assert f"{inside}" in err
    assert not os.path.exists(tmp_path / "r")


def test_a_damaged_merge_whose_healthy_copy_holds_the_inputs_is_superseded_by_their_merge(
        healthy: str, target: str, recorder: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = segment_names(target)
    merged = merge_in_place(target, names[3:7])
    flip_bit(os.path.join(target, "segments", merged))
    before = all_names(target)
    recorder.writes.clear()
    report = repair(capsys, healthy, target)
    assert report["ok"], report
    assert report["replaced"] == [merged]
    assert [p["file"] for p in report["published"]] == [with_generation(merged, 1)]
    assert_write_once(recorder, before)
    assert run_cli(capsys, "verify", "--repo", target)[0] == 0
    assert restored_state(target, str(tmp_path / "t"), RestoreTarget(latest=True)) == \
        restored_state(healthy, str(tmp_path / "h"), RestoreTarget(latest=True))
    assert segment_name(*live_segments([with_generation(merged, 1)])[0][with_generation(merged, 1)]) == merged
