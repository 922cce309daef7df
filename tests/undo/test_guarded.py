"""The guarded commit under an undo: conditions checked with the commit, a racing writer refuses it all,
the undo is a commit of the history (audited, archived, and undone in turn), and the command line."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import trio

from pitr.archiving import archiving
from pitr.errors import UndoConflict
from pitr.repo.repository import open_repository
from pitr.store import Store
from pitr.store.conditional import Expected, Mismatch
from pitr.timefmt import format_time
from pitr.undo import StoreTarget, UndoOptions, apply_undo, plan_undo
from segments.record import DELETE, PUT, Op
from tests.audit.model import FakeClock
from tests.helpers.cli import run_cli


@pytest.mark.anyio
async def test_commit_if_writes_only_when_every_condition_holds(tmp_path: Path) -> None:
    async with Store(str(tmp_path / "data")) as store:
        await store.put(b"a", b"1")
        last = store.last_lsn
        failed = await store.commit_if([Op(PUT, b"a", b"2", None), Op(DELETE, b"b")],
                                       {b"a": (b"1", None), b"b": (b"x", None)})
        assert failed == [Mismatch(b"b", (b"x", None), None)]
        assert store.last_lsn == last
        assert await store.get(b"a") == b"1"
        commit = await store.commit_if([Op(PUT, b"a", b"2", None), Op(PUT, b"b", b"3", None)],
                                       {b"a": (b"1", None), b"b": None})
        assert not isinstance(commit, list)
        assert commit.lsn == last + 1  # one commit for both keys
        assert (await store.get(b"a"), await store.get(b"b")) == (b"2", b"3")


class RacingTarget(StoreTarget):
    """A store where another writer changes a key between the undo's read and its commit."""

    async def commit_if(self, writes: Sequence[tuple[bytes, Expected]],
                        guards: Mapping[bytes, Expected]) -> int | list[Mismatch]:
        await self.store.put(b"k/b", b"racer")
        return await super().commit_if(writes, guards)


async def _history(root: str, clock: FakeClock) -> tuple[int, int, int]:
    """k/a: 1 at T1, 2 after; k/b: created after T1. Returns (T1, T2, last LSN)."""
    async with Store(os.path.join(root, "data"), clock=clock) as store, \
            archiving(store, os.path.join(root, "repo")) as archiver:
        t1 = (await store.put(b"k/a", b"1")).ts_ns
        clock.now += 10
        await store.put(b"k/a", b"2")
        await store.put(b"k/b", b"new")
        t2 = (await store.put(b"other", b"x")).ts_ns
        await archiver.cycle()
        return t1, t2, store.last_lsn


@pytest.mark.anyio
async def test_a_write_racing_the_undo_makes_it_refuse_whole(tmp_path: Path) -> None:
    root, clock = str(tmp_path), FakeClock()
    t1, t2, _ = await _history(root, clock)
    async with open_repository(os.path.join(root, "repo")) as repo:
        plan = await plan_undo(repo, t1, t2, prefix=b"k/")
    assert [r.key for r in plan.reversals] == [b"k/a", b"k/b"]
    clock.now += 10
    async with Store(os.path.join(root, "data"), clock=clock) as store:
        with pytest.raises(UndoConflict) as caught:
            await apply_undo(plan, RacingTarget(store), UndoOptions())
        assert caught.value.keys == [b"k/b"]
        assert await store.get(b"k/a") == b"2"  # nothing of the undo was applied
        assert await store.get(b"k/b") == b"racer"


@pytest.mark.anyio
async def test_the_undo_is_a_commit_that_can_itself_be_undone(tmp_path: Path) -> None:
    root, clock = str(tmp_path), FakeClock()
    t1, t2, last = await _history(root, clock)
    async with open_repository(os.path.join(root, "repo")) as repo:
        plan = await plan_undo(repo, t1, t2, prefix=b"k/")
    clock.now += 10
    async with Store(os.path.join(root, "data"), clock=clock) as store, \
            archiving(store, os.path.join(root, "repo")) as archiver:
        result = await apply_undo(plan, StoreTarget(store), UndoOptions())
        assert result.position == last + 1
        assert (await store.get(b"k/a"), await store.get(b"k/b"), await store.get(b"other")) == (b"1", None, b"x")
        undone_at = store.last_ts
        clock.now += 10
        await archiver.cycle()
    async with open_repository(os.path.join(root, "repo")) as repo:
        again = await plan_undo(repo, undone_at - 1, undone_at)
    async with Store(os.path.join(root, "data"), clock=clock) as store:
        await apply_undo(again, StoreTarget(store), UndoOptions())
        assert (await store.get(b"k/a"), await store.get(b"k/b")) == (b"2", b"new")


def test_the_command_shows_a_dry_run_refuses_conflicts_and_applies(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    root, clock = str(tmp_path), FakeClock()
    t1, t2, last = trio.run(_history, root, clock)

    async def conflict() -> None:
        async with Store(os.path.join(root, "data"), clock=FakeClock(clock.now + 5)) as store:
            await store.put(b"k/b", b"edited later")

    trio.run(conflict)
    common = ["--from", format_time(t1), "--to", format_time(t2), "--data", os.path.join(root, "data"),
              "--repo", os.path.join(root, "repo")]
    code, out, _err = run_cli(capsys, "undo", *common, "--dry-run", "--json")
    assert code == 0
    doc = json.loads(out)
    assert [(c["key"], c["conflict"]) for c in doc["changes"]] == [("k/a", False), ("k/b", True), ("other", False)]
    code, _out, err = run_cli(capsys, "undo", *common, "--json")
    assert code == 1
    assert json.loads(err)["error"] == "undo_conflict"
    assert json.loads(err)["keys"] == ["k/b"]
    code, out, _err = run_cli(capsys, "undo", *common, "--skip-conflicts")
    assert code == 0
    assert f"reverted 2 keys in commit LSN {last + 2}" in out

    async def read() -> tuple[bytes | None, ...]:
        async with Store(os.path.join(root, "data")) as store:
            return await store.get(b"k/a"), await store.get(b"k/b"), await store.get(b"other")

    assert trio.run(read) == (b"1", b"edited later", None)
