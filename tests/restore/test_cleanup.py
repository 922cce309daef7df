"""Retention never deletes the history a damaged snapshot would have to replace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import pitr.backup
from pitr.errors import CorruptData
from pitr.repo.repository import open_repository
from pitr.restore import RestoreOptions, RestoreResult, RestoreTarget, restore
from pitr.retention import plan_cleanup, run_cleanup
from tests.restore.test_bases import damage_body, entries, make_snapshotted

pytestmark = pytest.mark.anyio


def listing(path: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(top, n), path) for top, _d, names in os.walk(path)
                  for n in names if ".catalog" not in top and ".work" not in top)


async def test_cleanup_refuses_to_leave_a_damaged_snapshot_as_the_oldest_base(tmp_path: Path) -> None:
    history = await make_snapshotted(tmp_path)
    damage_body(history.snapshot_path(1))  # the newest snapshot, the only one keep_count=1 keeps
    before = listing(history.repo_dir)
    async with open_repository(history.repo_dir) as repo:
        plan = await plan_cleanup(repo, keep_count=1, keep_days=0, now_ns=0)
        assert [s.name for s in plan.delete_snapshots] == [history.snapshots[0]], "the test's premise"
        with pytest.raises(CorruptData, match=f"damaged snapshot {history.snapshots[1]}.*nothing was deleted"):
            await run_cleanup(repo, plan)
    with pytest.raises(CorruptData, match="nothing was deleted"):
        await pitr.backup.cleanup(history.repo_dir, keep_count=1, keep_days=0)
    assert listing(history.repo_dir) == before
    async with open_repository(history.repo_dir) as repo:
        result = await restore(repo, RestoreOptions(target=RestoreTarget(lsn=6), dest=str(tmp_path / "r")))
    assert isinstance(result, RestoreResult)
    assert entries(str(tmp_path / "r")) == history.model[6], "the history the damage needs is still there"


async def test_cleanup_of_a_sound_repository_still_deletes(tmp_path: Path) -> None:
    history = await make_snapshotted(tmp_path)
    assert await pitr.backup.cleanup(history.repo_dir, keep_count=1, keep_days=0) >= 2
    assert [b.lsn for b in await pitr.backup.list(history.repo_dir)] == [4]
