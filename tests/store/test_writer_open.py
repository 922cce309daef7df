"""The writer's open checks the WAL from the checkpoint's group on (the checkpoint's WAL position),
and the whole WAL when that position does not hold: torn tails and damage after the checkpoint are
still found, a wrong position costs a full scan, never a wrong open (docs/decisions.md, "Start-up:
what the writer checks at open")."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from pitr.datadir import wal as wal_module
from pitr.datadir.state import StateDB
from pitr.datadir.wal import WalDirectory
from pitr.errors import CorruptData
from pitr.store import Store, StoreOptions
from segments.record import PUT, Op
from segments.wal import HEADER_SIZE, WalScan, decode_header
from segments.wal_format import check_unit_at

pytestmark = pytest.mark.anyio
APPLIED, TAIL = 300, 40
LAZY = StoreOptions(apply_interval=3600, apply_threshold=1 << 30)


def key_of(i: int) -> bytes:
    return b"k%03d" % (i * 7 % 90)


async def store_with_a_tail(tmp_path: Path) -> tuple[Path, dict[bytes, bytes]]:
    """APPLIED commits in LMDB (checkpointed with their WAL position), TAIL more only in the WAL
    (the directory copied while the store is open, as a crash would leave it)."""
    data, copy = tmp_path / "data", tmp_path / "copy"
    model: dict[bytes, bytes] = {}
    async with Store(str(data), LAZY) as store:
        for i in range(APPLIED + TAIL):
            await store.put(key_of(i), b"v%d" % i)
            model[key_of(i)] = b"v%d" % i
            if i + 1 == APPLIED:
                await store.flush()
        shutil.copytree(data, copy)
    return copy, model


def the_wal(data: Path) -> Path:
    (path,) = (data / "wal").glob("*.wal")
    return path


def unit_starts(blob: bytes) -> set[int]:
    """Where each write unit of a WAL file's bytes starts."""
    header, size = decode_header(blob[:HEADER_SIZE], "wal"), len(blob.rstrip(b"\0"))
    starts, offset = set(), HEADER_SIZE
    while offset < size:
        starts.add(offset)
        offset = check_unit_at(blob, offset, size, header.version).end
    return starts


def spy_scans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    starts: list[int] = []
    real = wal_module.scan_wal

    def spy(path: str, *, repair: bool = False, start: int = HEADER_SIZE) -> WalScan:
        starts.append(start)
        return real(path, repair=repair, start=start)

    monkeypatch.setattr(wal_module, "scan_wal", spy)
    return starts


def tear(path: Path, rng: random.Random) -> int:
    """Write the start of a group that was never fsynced (a frame cut short) after the log's end,
    inside the preallocated zeros; returns where the log ended."""
    end = os.path.getsize(path)
    with open(path, "r+b") as fh:
        logged = len(fh.read().rstrip(b"\0"))
        fh.seek(logged)
        fh.write(b"\x5a" + rng.randbytes(20))
    assert os.path.getsize(path) == end
    return logged


def flip(path: Path, where: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(where)
        byte = fh.read(1)
        fh.seek(where)
        fh.write(bytes([byte[0] ^ 0x10]))


def zero(path: Path, start: int, end: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(start)
        fh.write(bytes(end - start))


async def check_contents(data: Path, model: dict[bytes, bytes], last_lsn: int) -> None:
    async with Store(str(data)) as store:
        assert store.last_lsn == last_lsn
        for key, value in model.items():
            assert await store.get(key) == value, key


async def test_the_writer_scans_from_the_checkpoints_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy, model = await store_with_a_tail(tmp_path)
    checkpoint = StateDB(str(copy / "state"), readonly=True)
    try:
        position = checkpoint.stored_checkpoint()
    finally:
        checkpoint.close()
    assert position.applied_lsn == APPLIED
    assert position.wal_offset > HEADER_SIZE
    starts = spy_scans(monkeypatch)
    async with Store(str(copy)) as store:  # replays the TAIL commits after the checkpoint
        assert store.last_lsn == APPLIED + TAIL
        for key, value in model.items():
            assert await store.get(key) == value, key
    assert starts == [position.wal_offset], f"the open scanned from {starts}, not the checkpoint's group"


async def test_a_replay_leaves_a_position_for_the_next_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy, model = await store_with_a_tail(tmp_path)
    async with Store(str(copy)):  # the replay of TAIL commits is the only apply: no commit here
        pass
    state = StateDB(str(copy / "state"), readonly=True)
    try:
        after = state.stored_checkpoint()
    finally:
        state.close()
    assert after.applied_lsn == APPLIED + TAIL
    assert after.wal_offset > HEADER_SIZE, "the replay's checkpoint lost the WAL position"
    starts = spy_scans(monkeypatch)
    await check_contents(copy, model, APPLIED + TAIL)
    assert starts == [after.wal_offset]


async def test_a_torn_tail_after_the_checkpoint_is_still_repaired(tmp_path: Path, random_seed: int) -> None:
    copy, model = await store_with_a_tail(tmp_path)
    rng = random.Random(random_seed)
    logged = tear(the_wal(copy), rng)
    async with Store(str(copy)) as store:
        assert store.last_lsn == APPLIED + TAIL
        assert [t.offset for t in store.torn_tails] == [logged], f"seed {random_seed}"
        for key, value in model.items():
            assert await store.get(key) == value, key


async def test_damage_after_the_checkpoint_is_refused(tmp_path: Path, random_seed: int) -> None:
    copy, _model = await store_with_a_tail(tmp_path)
    rng = random.Random(random_seed)
    state = StateDB(str(copy / "state"), readonly=True)
    try:
        hint = state.stored_checkpoint().wal_offset
    finally:
        state.close()
    path = the_wal(copy)
    size = len(path.read_bytes().rstrip(b"\0"))
    # a byte of an acknowledged group after the checkpoint's, well before the last group
    flip(path, rng.randrange(hint + 200, size - 300))
    with pytest.raises(CorruptData, match=path.name):
        async with Store(str(copy)):
            pass
    assert len(path.read_bytes().rstrip(b"\0")) == size, f"a refused open changed the file (seed {random_seed})"


async def test_a_wrong_position_costs_a_full_scan_never_a_wrong_open(tmp_path: Path, random_seed: int,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    copy, model = await store_with_a_tail(tmp_path)
    rng = random.Random(random_seed)
    async with Store(str(copy)):  # apply the tail: the WAL and the state agree from here on
        pass
    path = the_wal(copy)
    written = path.read_bytes()
    state = StateDB(str(copy / "state"))
    try:
        right = state.stored_checkpoint()
        first, size = right.wal_first_lsn, len(written.rstrip(b"\0"))
        wrong = [(first, rng.randrange(1, size + 100)) for _ in range(12)]
        wrong += [(first, right.wal_offset + d) for d in (-1, 1, 40)] + [(first + 1, right.wal_offset)]
    finally:
        state.close()
    boundaries = unit_starts(written)
    starts = spy_scans(monkeypatch)
    for hint in wrong:
        state = StateDB(str(copy / "state"))
        try:
            state.apply({}, right.applied_lsn, right.applied_ts_ns, hint)
        finally:
            state.close()
        starts.clear()
        async with Store(str(copy)) as store:
            assert store.last_lsn == APPLIED + TAIL, f"WAL position {hint} (seed {random_seed})"
            assert not store.torn_tails, f"WAL position {hint} made a torn tail (seed {random_seed})"
            assert await store.get(key_of(APPLIED + TAIL - 1)) == model[key_of(APPLIED + TAIL - 1)]
        # a hint that lands on another unit before the checkpoint's is a valid (longer) start
        trusted = hint[0] == first and hint[1] in boundaries and hint[1] <= right.wal_offset
        assert starts == ([hint[1]] if trusted else [HEADER_SIZE]), \
            f"WAL position {hint} was trusted (seed {random_seed})"
        assert path.read_bytes()[:size] == written[:size], f"WAL position {hint} changed the WAL"


async def one_applied_group(tmp_path: Path) -> tuple[Path, Path, int]:
    """A store whose WAL is one group of 50 commits, all applied; returns (data, WAL file, group end)."""
    data = tmp_path / "data"
    async with Store(str(data)) as store:
        await store.commit_many([((Op(PUT, b"k%d" % i, b"v" * 30, None),), None) for i in range(50)])
    path = the_wal(data)
    return data, path, len(path.read_bytes().rstrip(b"\0"))


async def test_damage_in_an_applied_last_group_is_refused_not_cut_off(tmp_path: Path, random_seed: int) -> None:
    # The last group is applied, so it was fsynced: damage there is no torn write. Cutting it off
    # would let the writer log the next commit at the start of a file whose header says LSN 1.
    data, path, end = await one_applied_group(tmp_path)
    flip(path, random.Random(random_seed).randrange(HEADER_SIZE, end))
    before = path.read_bytes()
    with pytest.raises(CorruptData, match="already holds"):
        async with Store(str(data)):
            pass
    assert path.read_bytes() == before, f"the refused open changed the WAL (seed {random_seed})"
    assert not list((data / "wal").glob("*.broken*")), "applied commits were cut off as a torn tail"


async def test_a_wal_emptied_under_the_checkpoint_is_refused(tmp_path: Path) -> None:
    data, path, end = await one_applied_group(tmp_path)
    zero(path, HEADER_SIZE, end)  # the file now reads as holding no record at all
    with pytest.raises(CorruptData, match="before the state's checkpoint"):
        async with Store(str(data)):
            pass


async def test_damage_before_the_checkpoint_is_left_to_the_archivers_read(tmp_path: Path) -> None:
    # Not read at open (the state holds those commits), and refused, with its offset, by the next
    # read of that WAL: the archiver's (`WalDirectory.read_after`).
    data = tmp_path / "data"
    async with Store(str(data)) as store:
        for run in range(3):
            await store.commit_many([((Op(PUT, b"k%d" % i, b"v" * 30, None),), None) for i in range(run, 40)])
    path = the_wal(data)
    flip(path, HEADER_SIZE + 100)  # inside the first group
    async with Store(str(data)) as store:
        await store.put(b"after", b"damage")  # the writer's open does not read the first group
        last = store.last_lsn
    with pytest.raises(CorruptData, match="damaged") as refused:
        for _chunk in WalDirectory(str(data / "wal")).read_after(0, last):
            pass
    assert (refused.value.path, refused.value.offset) == (str(path), HEADER_SIZE)
