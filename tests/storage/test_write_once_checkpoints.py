"""Cleanup prunes the signed checkpoints before the oldest restorable point (all but the newest 16, never the
newest), reports them, and stays the only deleter; the witness's copies are never touched. Through the
write-once conformance wrapper (tests/storage/test_write_once.py), for every backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from pitr.archiver import ArchiveOptions
from pitr.archiver.checkpoints import CheckpointWriter
from pitr.archiving import archiving
from pitr.crypto import create_key_file
from pitr.repo import layout
from pitr.repo.checkpoints import PREFIX as CHECKPOINTS
from pitr.repo.checkpoints import SigningKey, parse_checkpoint_name
from pitr.repo.repository import open_repository
from pitr.repo.witness import Witness, open_witness
from pitr.retention import plan_cleanup, run_cleanup
from pitr.retention_objects import KEEP_CHECKPOINTS, old_checkpoints
from pitr.snapshots.take import take_snapshot
from pitr.store import Store
from pitr.verify import verify_repository
from tests.repo.history import FakeClock
from tests.storage.test_write_once import Recorder, backend  # noqa: F401 - the fixture

pytestmark = pytest.mark.anyio


async def _archive(store: Store, url: str, cache: str, endpoint: str | None, writer: CheckpointWriter,
                   commits: range, snapshot_at: int | None) -> None:
    import trio

    options = ArchiveOptions(interval=0.01, merge_count=1000, checkpoints=writer)
    async with archiving(store, url, options=options, cache_dir=cache, s3_endpoint=endpoint) as arc:
        for i in commits:
            await store.put(b"key%03d" % (i % 23), b"value%d" % i)
            if i % 2 == 0:
                await trio.sleep(0.03)  # let cycles run: a watermark, then a checkpoint, each
            if i == snapshot_at:
                await take_snapshot(arc, prepare=store.flush)


async def _witnessed(witness: Witness) -> list[str]:
    return sorted(i.name for i in await witness.storage.list("") if parse_checkpoint_name(i.name) is not None)


async def test_cleanup_prunes_checkpoints_before_the_oldest_restorable_point_and_only_cleanup_deletes(
        backend: tuple[str, Recorder, str | None], tmp_path: Path) -> None:  # noqa: F811 - the fixture
    url, recorder, endpoint = backend
    cache, sign = str(tmp_path / "cache"), str(tmp_path / "sign")
    create_key_file(sign)
    async with Store(str(tmp_path / "data"), clock=FakeClock()) as store, \
            open_witness(str(tmp_path / "witness"), create=True) as witness:
        writer = CheckpointWriter(SigningKey.from_file(sign), [witness], interval=0)
        await _archive(store, url, cache, endpoint, writer, range(0, 80), snapshot_at=None)
        await _archive(store, url, cache, endpoint, writer, range(80, 100), snapshot_at=90)
        witnessed = await _witnessed(witness)
        assert not recorder.deleted
        async with open_repository(url, cache_dir=cache, s3_endpoint=endpoint) as repo:
            listed = sorted((lsn, i.name) for i in await repo.storage.list(CHECKPOINTS)
                            if (lsn := parse_checkpoint_name(i.name)) is not None)
            plan = await plan_cleanup(repo, keep_count=1, keep_days=0, now_ns=store.now())
            floor = min(w.start_lsn for w in plan.windows_after)
            doomed = [i.name for i in plan.delete_checkpoints]
            assert len(listed) > KEEP_CHECKPOINTS + 2, f"the premise: many checkpoints ({len(listed)})"
            assert doomed, f"the premise: checkpoints before LSN {floor} beyond the newest 16 ({listed})"
            assert doomed == [n for lsn, n in listed[:-KEEP_CHECKPOINTS] if lsn < floor]
            assert all(n not in doomed for _lsn, n in listed[-KEEP_CHECKPOINTS:])
            with recorder.cleanup():
                done = await run_cleanup(repo, plan)
            assert done == plan.deleted_count
            expected = ({layout.snapshot_object(s.name) for s in plan.delete_snapshots}
                        | {layout.segment_object(s.name) for s in plan.delete_segments}
                        | {i.name for i in plan.delete_superseded} | {i.name for i in plan.delete_watermarks}
                        | set(doomed))
            assert set(recorder.deleted) == expected
            left = {i.name for i in await repo.storage.list(CHECKPOINTS)}
            assert not left & set(doomed)
            assert {n for _lsn, n in listed} - set(doomed) <= left
        assert await _witnessed(witness) == witnessed  # a witness is never pruned
        await _archive(store, url, cache, endpoint, writer, range(100, 110), snapshot_at=None)
    assert not recorder.outside_cleanup, f"deleted outside cleanup: {recorder.outside_cleanup}"
    twice = {name: n for name, n in recorder.writes.items() if n > 1}
    assert not twice, f"written more than once: {twice}"
    async with open_repository(url, cache_dir=cache, s3_endpoint=endpoint) as repo, \
            open_witness(str(tmp_path / "witness"), create=False) as witness:
        report = await verify_repository(repo, mode="full", witness=witness)
        assert report.ok, report.findings


async def test_the_newest_checkpoint_is_never_pruned(tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    (repo_dir / CHECKPOINTS).mkdir(parents=True, mode=0o700)
    for lsn in (3, 9, 40):
        (repo_dir / CHECKPOINTS / f"{lsn:016x}.ckpt").write_bytes(b"x")
    (repo_dir / CHECKPOINTS / "signing-key.pub").write_bytes(b"x")
    async with open_repository(str(repo_dir)) as repo:
        names = [i.name for i in await old_checkpoints(repo, floor=1 << 62, keep=0)]
        assert names == [f"{CHECKPOINTS}{3:016x}.ckpt", f"{CHECKPOINTS}{9:016x}.ckpt"]
        assert [i.name for i in await old_checkpoints(repo, floor=9, keep=1)] == [f"{CHECKPOINTS}{3:016x}.ckpt"]
        assert await old_checkpoints(repo, floor=None) == []
        assert await old_checkpoints(repo, floor=1 << 62, keep=3) == []


def test_cleanup_reports_the_checkpoints_it_deletes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.helpers.cli import run_cli

    data, repo_dir, sign = str(tmp_path / "data"), tmp_path / "repo", str(tmp_path / "sign")
    create_key_file(sign)
    archive = ["archive", "--data", data, "--repo", str(repo_dir), "--signing-key", sign]
    for i in range(KEEP_CHECKPOINTS + 4):  # one checkpoint per run: LSNs 1..20
        assert run_cli(capsys, "put", "--data", data, f"k{i}", "v")[0] == 0
        assert run_cli(capsys, *archive)[0] == 0
    assert run_cli(capsys, "snapshot", "--data", data, "--repo", str(repo_dir))[0] == 0  # LSN 20
    assert run_cli(capsys, "put", "--data", data, "last", "v")[0] == 0
    assert run_cli(capsys, *archive)[0] == 0
    names = sorted(p.name for p in (repo_dir / CHECKPOINTS).iterdir() if parse_checkpoint_name(p.name))
    assert len(names) == KEEP_CHECKPOINTS + 5
    code, out, err = run_cli(capsys, "cleanup", "--repo", str(repo_dir), "--keep-count", "1", "--keep-days", "0",
                             "--dry-run")
    assert code == 0, err
    assert "would delete 5 signed checkpoints before the oldest restorable point" in out
    code, out, err = run_cli(capsys, "cleanup", "--repo", str(repo_dir), "--keep-count", "1", "--keep-days", "0",
                             "--json")
    assert code == 0, err
    import json

    report = json.loads(out)[0]
    assert report["checkpoints"] == [CHECKPOINTS + n for n in names[:5]]  # LSNs 1..5: before LSN 20
    assert sorted(p.name for p in (repo_dir / CHECKPOINTS).iterdir() if parse_checkpoint_name(p.name)) == names[5:]
    assert run_cli(capsys, "verify", "--repo", str(repo_dir))[0] == 0
