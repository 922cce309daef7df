"""`pitr copy` and `pitr repair` between local repositories (the S3 side is in tests/remote/test_transfer.py).

The specification:

- a copy holds the source's files byte for byte, verifies, and restores what the source restores;
- an interrupted copy, run again, ends equal to a full copy; a second run copies nothing;
- a file at the target that differs from the source's is reported and left as it is;
- a damaged source file is not copied, and the copy says so and exits 1;
- a target holding another history is refused before anything is written;
- a window copy holds a base at or before its start and restores inside it;
- repair supersedes a damaged file by a verified copy under a new name (the damaged one stays, for
  cleanup), fills a hole, and afterwards verify and timeline report nothing; a healthy copy of another
  history is refused (tests/transfer/test_repair_write_once.py has the rest of write-once repair).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import trio

from pitr.errors import ForeignRepository, StorageError
from pitr.repo.live import live_segments, live_snapshots
from pitr.repo.repository import open_repository
from pitr.restore import RestoreOptions, RestoreTarget, restore
from pitr.store import Store, StoreOptions
from pitr.timefmt import format_time
from pitr.transfer import DAMAGED_DIR, CopyOptions, copy_history
from segments.merge import merge_segments
from segments.naming import base_name, segment_name, with_generation
from segments.segment_reader import SegmentReader
from tests.helpers.cli import run_cli
from tests.helpers.segments_on_disk import newest_watermark_file
from tests.repo.history import History, build_history

Model = dict[bytes, bytes]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """300 commits in about 25 segments, snapshots at LSN 100, 200 and 300."""
    return build_history(str(tmp_path_factory.mktemp("copy-history")), commits=300, snapshot_every=100,
                         merge_count=1000)


@pytest.fixture
def source(history: History, tmp_path: Path) -> str:
    """A private copy of the history's repository (tests damage it)."""
    path = str(tmp_path / "source")
    shutil.copytree(history.repo, path, ignore=shutil.ignore_patterns(".catalog", ".work"))
    return path


def published(repo: str) -> dict[str, bytes]:
    """Every published file of a local repository (not its catalog, work or .damaged areas), by name."""
    out = {}
    for folder in ("segments", "snapshots"):
        if not os.path.isdir(os.path.join(repo, folder)):
            continue
        for name in sorted(os.listdir(os.path.join(repo, folder))):
            with open(os.path.join(repo, folder, name), "rb") as fh:
                out[f"{folder}/{name}"] = fh.read()
    if os.path.exists(os.path.join(repo, "pitr-repository")):
        with open(os.path.join(repo, "pitr-repository"), "rb") as fh:
            out["pitr-repository"] = fh.read()
    mark = newest_watermark_file(repo)  # a window ending before the history's end has no watermark
    if mark is not None:
        out["watermark"] = mark.read_bytes()
    return out


def flip_bit(path: str, at: float = 0.5) -> None:
    with open(path, "r+b") as fh:
        data = bytearray(fh.read())
        data[int(len(data) * at)] ^= 0x10
        fh.seek(0)
        fh.write(data)


def segment_names(repo: str) -> list[str]:
    return sorted(os.listdir(os.path.join(repo, "segments")))


def restored_state(repo: str, dest: str, target: RestoreTarget) -> Model:
    async def main() -> Model:
        async with open_repository(repo) as opened:
            await restore(opened, RestoreOptions(target=target, dest=dest))
        async with Store(dest, StoreOptions(create=False)) as store:
            return dict(await store.scan())

    return trio.run(main)


def test_a_copy_holds_the_same_files_verifies_and_restores_the_same(
        history: History, source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = str(tmp_path / "target")
    code, out, err = run_cli(capsys, "copy", "--from", source, "--to", target)
    assert code == 0, out + err
    assert published(target) == published(source)
    code, out, err = run_cli(capsys, "verify", "--repo", target)
    assert code == 0, out + err
    assert restored_state(target, str(tmp_path / "r"), RestoreTarget(latest=True)) == history.commits[-1][2]
    assert os.stat(os.path.join(target, "segments")).st_mode & 0o777 == 0o700
    code, out, err = run_cli(capsys, "copy", "--from", source, "--to", target, "--json")
    assert code == 0, out + err
    assert '"copied": []' in out  # the second run finds everything there, verified the same


def test_an_interrupted_copy_run_again_equals_a_full_copy(source: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    target = str(tmp_path / "target")

    async def interrupted() -> None:
        async with open_repository(source) as a, open_repository(target, create=True) as b:
            calls = 0
            publish_file = b.storage.publish_file

            async def failing(name: str, path: str) -> None:
                nonlocal calls
                calls += 1
                if calls > 9:
                    raise StorageError(f"{b.url}: injected failure publishing {name}")
                await publish_file(name, path)

            b.storage.publish_file = failing  # type: ignore[method-assign]
            await copy_history(a, b)

    with pytest.raises(StorageError, match="injected failure"):
        trio.run(interrupted)
    assert 0 < len(segment_names(target)) < len(segment_names(source))
    assert newest_watermark_file(target) is None  # published last, only when complete
    code, out, err = run_cli(capsys, "copy", "--from", source, "--to", target)
    assert code == 0, out + err
    assert published(target) == published(source)
    assert run_cli(capsys, "verify", "--repo", target)[0] == 0


def test_a_differing_file_at_the_target_is_reported_and_left_alone(source: str, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    target = str(tmp_path / "target")
    assert run_cli(capsys, "copy", "--from", source, "--to", target)[0] == 0
    victim = os.path.join(target, "segments", segment_names(target)[3])
    flip_bit(victim)
    with open(victim, "rb") as fh:
        damaged = fh.read()
    code, out, err = run_cli(capsys, "copy", "--from", source, "--to", target)
    assert code == 1, out + err
    assert f"DIFFERS  {os.path.basename(victim)}" in out
    with open(victim, "rb") as fh:
        assert fh.read() == damaged  # never replaced by copy: that is repair's job, with the bytes kept aside


def test_a_damaged_source_file_is_not_copied(source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "timeline", "--repo", source)[0] == 0  # indexed first: the damage comes later (bit rot)
    name = segment_names(source)[5]
    flip_bit(os.path.join(source, "segments", name))
    target = str(tmp_path / "target")
    code, out, err = run_cli(capsys, "copy", "--from", source, "--to", target)
    assert code == 1, out + err
    assert f"DAMAGED  {name} at the source" in out
    assert name not in segment_names(target)
    assert newest_watermark_file(target) is None


def test_a_target_holding_another_history_is_refused(history: History, source: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    other = build_history(str(tmp_path / "other"), commits=20, snapshot_every=0, seed=2)
    before = published(other.repo)
    code, _out, err = run_cli(capsys, "copy", "--from", source, "--to", other.repo, "--json")
    assert code == 1
    assert '"error": "foreign_repository"' in err
    assert published(other.repo) == before

    async def direct() -> None:
        async with open_repository(source) as a, open_repository(other.repo) as b:
            await copy_history(a, b)

    with pytest.raises(ForeignRepository):
        trio.run(direct)


def test_a_window_copy_restores_inside_the_window(history: History, source: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    target = str(tmp_path / "target")
    code, out, err = run_cli(capsys, "copy", "--from", source, "--to", target, "--since-lsn", "150",
                             "--until-lsn", "250", "--json")
    assert code == 0, out + err
    snapshots = sorted(os.listdir(os.path.join(target, "snapshots")))
    assert [int(n[:20]) for n in snapshots] == [100, 200]  # the base before LSN 150, and the one inside
    first_segment = min(int(n[:20]) for n in segment_names(target))
    assert first_segment > 1
    assert first_segment <= 101
    for lsn in (150, 250):
        state = restored_state(target, str(tmp_path / f"r{lsn}"), RestoreTarget(lsn=lsn))
        assert state == history.commits[lsn - 1][2]
    by_time = str(tmp_path / "by-time")
    since, until = (format_time(history.commits[lsn - 1][1]) for lsn in (150, 250))
    code, out, err = run_cli(capsys, "copy", "--from", source, "--to", by_time, "--since", since,
                             "--until", until)
    assert code == 0, out + err
    assert published(by_time) == published(target)
    assert "watermark" not in published(target)


def live_published(repo: str) -> dict[str, bytes]:
    """The live segments' and snapshots' bytes of a local repository, by the name of generation 0."""
    out = {}
    for folder, live in (("segments", live_segments), ("snapshots", live_snapshots)):
        keep = live(os.listdir(os.path.join(repo, folder)))[0]
        for name in keep:
            with open(os.path.join(repo, folder, name), "rb") as fh:
                out[f"{folder}/{base_name(name)}"] = fh.read()
    return out


def test_repair_supersedes_a_damaged_file_and_fills_a_hole(history: History, source: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    target = str(tmp_path / "target")
    assert run_cli(capsys, "copy", "--from", source, "--to", target)[0] == 0
    names = segment_names(target)
    damaged, deleted = names[4], names[10]
    flip_bit(os.path.join(target, "segments", damaged))
    with open(os.path.join(target, "segments", damaged), "rb") as fh:
        damaged_bytes = fh.read()
    os.unlink(os.path.join(target, "segments", deleted))
    snapshot = sorted(os.listdir(os.path.join(target, "snapshots")))[1]
    flip_bit(os.path.join(target, "snapshots", snapshot), at=0.3)
    # a catalog rebuilt after the damage cannot index the damaged file: repair must make it index it anew
    assert run_cli(capsys, "reindex", "--repo", target)[0] == 1
    assert run_cli(capsys, "verify", "--repo", target)[0] == 1
    assert run_cli(capsys, "timeline", "--repo", target)[0] == 1
    code, out, err = run_cli(capsys, "repair", "--from", source, target)
    assert code == 0, out + err
    assert f"replaced {damaged} by {with_generation(damaged, 1)}" in out
    assert f"filled   {deleted}" in out
    assert f"replaced {snapshot} by {with_generation(snapshot, 1)}" in out
    assert not os.path.exists(os.path.join(target, DAMAGED_DIR))
    with open(os.path.join(target, "segments", damaged), "rb") as fh:
        assert fh.read() == damaged_bytes  # the damaged file stays as it was, for cleanup
    assert live_published(target) == live_published(source)
    code, out, err = run_cli(capsys, "timeline", "--repo", target)
    assert code == 0, out + err  # the catalog no longer reports the hole or the damaged file
    assert "\n  damaged" not in out
    assert "\n  hole" not in out
    assert run_cli(capsys, "verify", "--repo", target)[0] == 0
    assert restored_state(target, str(tmp_path / "r"), RestoreTarget(latest=True)) == history.commits[-1][2]


def test_repair_from_another_history_is_refused(source: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    other = build_history(str(tmp_path / "other"), commits=20, snapshot_every=0, seed=2)
    name = segment_names(source)[2]
    flip_bit(os.path.join(source, "segments", name))
    code, _out, err = run_cli(capsys, "repair", "--from", other.repo, source, "--json")
    assert code == 1
    assert '"error": "foreign_repository"' in err
    assert not os.path.exists(os.path.join(source, DAMAGED_DIR))


def test_copy_options_refuse_both_forms_of_one_end() -> None:
    with pytest.raises(ValueError, match="--since or --since-lsn"):
        CopyOptions(since_lsn=1, since_ns=1)


def merge_in_place(repo: str, names: list[str]) -> str:
    """Merge consecutive segments of a local repository into one (as the archiver's merge does) and
    delete the inputs; returns the merged file's name."""
    readers = [SegmentReader.open(os.path.join(repo, "segments", n)) for n in names]
    merged = segment_name(readers[0].meta.first_lsn, readers[-1].meta.last_lsn)
    with open(os.path.join(repo, "segments", merged), "wb") as out:
        merge_segments(readers, out)
    for reader, name in zip(readers, names, strict=True):
        reader.source.close()
        os.unlink(os.path.join(repo, "segments", name))
    return merged


def test_repair_takes_a_segment_the_healthy_copy_merged_which_supersedes_the_damaged_one(
        history: History, source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = str(tmp_path / "target")
    assert run_cli(capsys, "copy", "--from", source, "--to", target)[0] == 0
    names = segment_names(source)
    merged = merge_in_place(source, names[3:6])
    victim = names[4]
    flip_bit(os.path.join(target, "segments", victim))
    code, out, err = run_cli(capsys, "repair", "--from", source, target)
    assert code == 0, out + err
    assert f"replaced {victim} by {merged}" in out  # the healthy copy's merge covers it: no new generation
    assert victim in segment_names(target)  # left for cleanup, superseded by the merged segment
    assert victim not in live_segments(segment_names(target))[0]
    assert run_cli(capsys, "verify", "--repo", target)[0] == 0
    assert run_cli(capsys, "timeline", "--repo", target)[0] == 0
    assert restored_state(target, str(tmp_path / "r"), RestoreTarget(latest=True)) == history.commits[-1][2]


def test_one_repository_named_twice_is_refused(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run_cli(capsys, "copy", "--from", source, "--to", f"file://{source}/")
    assert code == 2
    assert "name the same repository" in err
    code, _out, err = run_cli(capsys, "repair", "--from", source + "/", source)
    assert code == 2
    assert "name the same repository" in err
