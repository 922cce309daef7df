"""The checkpoint's WAL position: a reader folds only the WAL after the checkpoint, and a wrong
position costs a scan from the file's start, never a wrong answer."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import pytest

from pitr.datadir import reader as reader_module
from pitr.datadir.reader import StoreReader
from pitr.store import Store, StoreOptions
from segments.wal_follow import WalChunk

pytestmark = pytest.mark.anyio
APPLIED, TAIL = 400, 30


async def store_with_a_tail(tmp_path: Path) -> tuple[Path, dict[bytes, bytes]]:
    """APPLIED commits in LMDB (checkpointed with their WAL position), TAIL more only in the WAL;
    copied while the store is open (no LMDB transaction runs between its commits)."""
    data, copy = tmp_path / "data", tmp_path / "copy"
    model: dict[bytes, bytes] = {}
    async with Store(str(data), StoreOptions(apply_interval=3600, apply_threshold=1 << 30)) as store:
        for i in range(APPLIED + TAIL):
            key, value = b"k%03d" % (i * 7 % 90), b"v%d" % i
            await store.put(key, value)
            model[key] = value
            if i + 1 == APPLIED:
                await store.flush()
        shutil.copytree(data, copy)
    return copy, model


async def test_a_reader_starts_at_the_checkpoints_wal_position(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    copy, model = await store_with_a_tail(tmp_path)
    starts: list[int] = []
    real = reader_module.read_wal_from

    def spy(path: str, offset: int, expected: int, max_lsn: int, *rest: int) -> WalChunk:
        starts.append(offset)
        return real(path, offset, expected, max_lsn, *rest)

    monkeypatch.setattr(reader_module, "read_wal_from", spy)
    with StoreReader(str(copy)) as reader:
        checkpoint = reader.state.stored_checkpoint()
        assert checkpoint.applied_lsn == APPLIED
        assert checkpoint.wal_offset > 0
        for key, value in model.items():
            found = reader.get(key, time.time_ns())
            assert found is not None
            assert found[0] == value, key
    assert starts, "the WAL was never read"
    assert 0 not in starts, f"a read started at the file's start: {starts}"


async def test_a_wrong_wal_position_never_changes_the_answer(tmp_path: Path, random_seed: int) -> None:
    copy, _model = await store_with_a_tail(tmp_path)
    rng = random.Random(random_seed)
    with StoreReader(str(copy)) as reader:
        checkpoint = reader.state.stored_checkpoint()
        applied, first = checkpoint.applied_lsn, checkpoint.wal_first_lsn
        truth = reader._fold_wal(applied)
        assert truth.lsn == APPLIED + TAIL
        right = reader._fold_wal(applied, (first, checkpoint.wal_offset))
        assert (right.lsn, right.overlay) == (truth.lsn, truth.overlay)
        size = (copy / "wal" / f"{first:020d}.wal").stat().st_size
        wrong = [(first, rng.randrange(1, size)) for _ in range(200)]
        wrong += [(first, checkpoint.wal_offset + d) for d in (-60, -30, -1, 1, 30, 60)]
        wrong += [(first + 1, checkpoint.wal_offset), (first, 0), (0, checkpoint.wal_offset)]
        for hint in wrong:
            got = reader._fold_wal(applied, hint)
            assert (got.lsn, got.overlay) == (truth.lsn, truth.overlay), f"WAL position {hint} (seed {random_seed})"
