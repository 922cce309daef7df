# ruff: noqa: ASYNC240 - the tests damage files between awaits; there is no loop to keep responsive
"""Issue #11 items 4 and 14 (restore side): a restore plans over what is valid (a damaged snapshot
makes it fall back to an older base, and say so; --base picks one), and never takes the archive
as complete beyond the present."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import anyio
import pytest

from pitr.archiving import archiving
from pitr.errors import CorruptData, InvalidArgument, OutsideWindow
from pitr.repo import layout
from pitr.repo.repository import open_repository
from pitr.restore import RestoreOptions, RestorePlan, RestoreResult, RestoreTarget, restore
from pitr.snapshots.take import take_snapshot
from pitr.store import Store
from tests.store.support import SECOND, START_NS, FakeClock
from tests.store.test_restore import MANUAL, QUIET, make_history, restored_entries, state_at

pytestmark = pytest.mark.anyio


@dataclass
class Snapshotted:
    root: Path
    repo_dir: str
    snapshots: list[str]  # oldest first: at LSN 2 and LSN 4
    model: dict[int, dict[bytes, bytes]]  # state after each LSN

    def snapshot_path(self, i: int) -> str:
        return os.path.join(self.repo_dir, layout.SNAPSHOTS, self.snapshots[i])


async def make_snapshotted(root: Path) -> Snapshotted:
    """LSN n puts k{n} = v{n} for n = 1..6; snapshots after LSN 2 and LSN 4."""
    clock = FakeClock(START_NS)
    repo_dir = str(root / "repo")
    names, model, state = [], {0: {}}, {}
    async with open_repository(repo_dir, create=True) as repo, Store(str(root / "data"), clock=clock) as store:
        async with archiving(store, repo, options=MANUAL) as archiver:
            for lsn in range(1, 7):
                clock.advance(SECOND)
                await store.put(f"k{lsn}".encode(), f"v{lsn}".encode())
                state[f"k{lsn}".encode()] = f"v{lsn}".encode()
                model[lsn] = dict(state)
                if lsn in (2, 4):
                    names.append((await take_snapshot(archiver, prepare=store.flush)).name)
            clock.advance(QUIET)
            await archiver.cycle()
    return Snapshotted(root, repo_dir, names, model)


def damage_body(path: str) -> None:
    """Flip a byte in the middle of a file: its header still reads, its blocks do not check."""
    with open(path, "r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(size // 2)
        byte = fh.read(1)
        fh.seek(size // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))


def entries(dest: str) -> dict[bytes, bytes]:
    return {k: v for k, (v, _e) in restored_entries(dest).items()}


async def run_cli(*argv: str) -> tuple[int, str, str]:
    done = await anyio.run_process([sys.executable, "-m", "pitr.cli.main", *argv], check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_a_damaged_newest_snapshot_falls_back_to_an_older_base(tmp_path: Path) -> None:
    history = await make_snapshotted(tmp_path)
    damage_body(history.snapshot_path(1))
    said: list[str] = []
    async with open_repository(history.repo_dir) as repo:
        result = await restore(repo, RestoreOptions(target=RestoreTarget(lsn=5), dest=str(tmp_path / "r")),
                               say=said.append)
    assert isinstance(result, RestoreResult)
    assert (result.base_lsn, result.base_snapshot, result.target_lsn) == (2, history.snapshots[0], 5)
    assert entries(str(tmp_path / "r")) == history.model[5]
    assert [s.snapshot for s in result.skipped] == [history.snapshots[1]]
    assert history.snapshots[1] in result.skipped[0].reason
    assert "Finding(" not in result.skipped[0].reason, "a message for a person, not a Python repr"
    assert any("falling back" in line and history.snapshots[0] in line for line in said)
    assert not any("next repository" in line for line in said), "there is only one repository"
    async with open_repository(history.repo_dir) as repo:
        plan = await restore(repo, RestoreOptions(target=RestoreTarget(lsn=5), dest=str(tmp_path / "d"),
                                                  dry_run=True))
    assert isinstance(plan, RestorePlan)
    assert (plan.base.lsn, [s.snapshot for s in plan.skipped]) == (2, [history.snapshots[1]]), \
        "a dry run names the base the restore would use"
    # both damaged: the start of the history serves
    damage_body(history.snapshot_path(0))
    code, out, _err = await run_cli("restore", "--lsn", "6", "--dest", str(tmp_path / "r2"), "--repo",
                                    history.repo_dir, "--json")
    assert code == 0
    summary = json.loads(out)
    assert (summary["base_lsn"], summary["base"], summary["lsn"]) == (0, None, 6)
    assert [s["snapshot"] for s in summary["skipped_bases"]] == history.snapshots[::-1]
    assert entries(str(tmp_path / "r2")) == history.model[6]
    code, out, _err = await run_cli("restore", "--lsn", "6", "--dest", str(tmp_path / "r3"), "--repo",
                                    history.repo_dir)
    assert code == 0
    assert f"skipped base {history.snapshots[1]} (LSN 4)" in out
    assert "from LSN 0 (the start of the history)" in out


async def test_no_readable_base_is_a_refusal_naming_every_file_tried(tmp_path: Path) -> None:
    history = await make_snapshotted(tmp_path)
    async with open_repository(history.repo_dir) as repo:
        first = next(iter(repo.catalog.segments()))
    assert first.first_lsn == 1
    assert first.last_lsn < 3, "the test needs the first segment to end before LSN 3"
    os.unlink(os.path.join(history.repo_dir, layout.SEGMENTS, first.name))  # no start-of-history base
    damage_body(history.snapshot_path(0))
    damage_body(history.snapshot_path(1))
    dest = tmp_path / "r"
    async with open_repository(history.repo_dir) as repo:
        with pytest.raises(CorruptData, match="no base at or before the target can be read") as info:
            await restore(repo, RestoreOptions(target=RestoreTarget(lsn=5), dest=str(dest)))
    assert all(name in str(info.value) for name in history.snapshots)
    assert not dest.exists()
    assert sorted(os.listdir(tmp_path)) == ["data", "repo"]


async def test_base_names_the_snapshot_to_start_from(tmp_path: Path) -> None:
    history = await make_snapshotted(tmp_path)
    async with open_repository(history.repo_dir) as repo:
        result = await restore(repo, RestoreOptions(target=RestoreTarget(lsn=5), dest=str(tmp_path / "r"),
                                                    base=history.snapshots[0]))
        assert isinstance(result, RestoreResult)
        assert (result.base_lsn, result.skipped) == (2, ())
        assert entries(str(tmp_path / "r")) == history.model[5]
        for wrong, why in [("00000000000000000099-nope.snap", "not a snapshot"),
                           (history.snapshots[1], "cannot serve")]:  # after the target LSN 3
            with pytest.raises(InvalidArgument, match=why) as info:
                await restore(repo, RestoreOptions(target=RestoreTarget(lsn=3), dest=str(tmp_path / "x"),
                                                   base=wrong))
            assert f"choices: {history.snapshots[0]}" in str(info.value)
        damage_body(history.snapshot_path(0))
        with pytest.raises(CorruptData, match="chosen with --base is damaged"):
            await restore(repo, RestoreOptions(target=RestoreTarget(lsn=5), dest=str(tmp_path / "x"),
                                               base=history.snapshots[0]))
    assert not (tmp_path / "x").exists()
    code, _out, err = await run_cli("restore", "--lsn", "3", "--dest", str(tmp_path / "y"), "--repo",
                                    history.repo_dir, "--base", "nope.snap")
    assert code == 2
    assert "--base nope.snap" in err
    assert "Traceback" not in err


async def test_a_watermark_beyond_the_present_is_not_taken_as_known_completeness(tmp_path: Path) -> None:
    """A watermark far in the future (2**62) would make --latest judge TTLs then, dropping every key
    with an expiry; --to a moment in that future would pass as inside the window."""
    history = await make_history(tmp_path)
    async with open_repository(history.repo_dir) as repo:
        mark = await repo.read_watermark()
        assert mark is not None
        await repo.write_watermark(replace(mark, complete_through_ns=2**62))
    async with open_repository(history.repo_dir) as repo:
        latest = await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=str(tmp_path / "r")))
        assert isinstance(latest, RestoreResult)
        assert latest.target_lsn == 5
        assert b"session" in restored_entries(str(tmp_path / "r")), "a live key with a TTL was dropped"
        assert restored_entries(str(tmp_path / "r")) == state_at(history, 5, history.ts(5))
        [note] = latest.notes
        assert "beyond the present" in note
        assert "2116-" in note, "the claim is shown as a time, not only as nanoseconds"
        with pytest.raises(OutsideWindow):
            await restore(repo, RestoreOptions(target=RestoreTarget(time_ns=2**62 - 1), dest=str(tmp_path / "x")))
    assert not (tmp_path / "x").exists()
