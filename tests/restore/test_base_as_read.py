# ruff: noqa: ASYNC240 - the tests damage files between awaits; there is no loop to keep responsive
"""A verified restore checks its base snapshot as the build reads it (issue #13): the base is not
verified whole first, every check still happens in the one pass, and damage found there falls back
to an older base (saying so) or refuses, with nothing published."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from crc32c import crc32c

from pitr.archiving import archiving
from pitr.errors import CorruptData
from pitr.repo import layout
from pitr.repo.repository import open_repository
from pitr.restore import RestoreOptions, RestoreResult, RestoreTarget, restore
from pitr.snapshots.take import take_snapshot
from pitr.store import Store
from segments.snapshot import FOOTER_SIZE, INDEX_ENTRY, SnapshotReader
from tests.restore.test_bases import entries
from tests.store.support import SECOND, START_NS, FakeClock
from tests.store.test_restore import MANUAL, QUIET

pytestmark = pytest.mark.anyio


async def make_history(root: Path) -> tuple[str, list[str], dict[int, dict[bytes, bytes]]]:
    """LSN n puts k{n:03d} = v{n} (repeated) for n = 1..60, with snapshots of raw blocks (so a test
    can alter an entry in place) after LSN 20 and LSN 40."""
    clock = FakeClock(START_NS)
    repo_dir = str(root / "repo")
    names: list[str] = []
    model: dict[int, dict[bytes, bytes]] = {0: {}}
    state: dict[bytes, bytes] = {}
    async with open_repository(repo_dir, create=True) as repo, Store(str(root / "data"), clock=clock) as store:
        async with archiving(store, repo, options=MANUAL) as archiver:
            for lsn in range(1, 61):
                clock.advance(SECOND)
                k, v = b"k%03d" % lsn, b"v%d" % lsn * 20
                await store.put(k, v)
                state[k] = v
                model[lsn] = dict(state)
                if lsn in (20, 40):
                    names.append((await take_snapshot(archiver, prepare=store.flush, compress=False)).name)
            clock.advance(QUIET)
            await archiver.cycle()
    return repo_dir, names, model


def snapshot_path(repo_dir: str, name: str) -> str:
    return os.path.join(repo_dir, layout.SNAPSHOTS, name)


def rewrite(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def alter_a_value_keeping_every_crc(path: str) -> None:
    """Change a byte of the last entry's value in the (raw) first block and recompute the block's CRC
    and the index CRC: only the state digest and the file digest can tell."""
    with SnapshotReader.open(path) as reader:
        block, footer = reader.blocks[0], reader.footer
        raw = bytearray(reader.read_block(0))
        index = bytearray(reader.source.read(footer.index_offset, footer.index_size))
        tail = reader.source.read(reader.source.size - FOOTER_SIZE, 64)
    raw[-1] ^= 0x01
    struct.pack_into("<I", index, INDEX_ENTRY.size - 8, crc32c(bytes(raw)))  # block 0's crc field
    rewrite(path, block.offset, bytes(raw))
    rewrite(path, footer.index_offset, bytes(index))
    rewrite(path, footer.index_offset + footer.index_size + 64, struct.pack("<I", crc32c(tail, crc32c(bytes(index)))))


def no_whole_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: SnapshotReader) -> None:
        raise AssertionError("the base was verified whole before the build")

    monkeypatch.setattr(SnapshotReader, "verify", refuse)


async def test_the_base_is_checked_as_it_is_read_not_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo_dir, names, model = await make_history(tmp_path)
    no_whole_verify(monkeypatch)
    async with open_repository(repo_dir) as repo:
        result = await restore(repo, RestoreOptions(target=RestoreTarget(lsn=50), dest=str(tmp_path / "r")))
    assert isinstance(result, RestoreResult)
    assert (result.base_snapshot, result.skipped) == (names[1], ())
    assert entries(str(tmp_path / "r")) == model[50]


async def test_an_altered_entry_whose_crcs_were_recomputed_falls_back(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    repo_dir, names, model = await make_history(tmp_path)
    alter_a_value_keeping_every_crc(snapshot_path(repo_dir, names[1]))
    no_whole_verify(monkeypatch)
    said: list[str] = []
    async with open_repository(repo_dir) as repo:
        result = await restore(repo, RestoreOptions(target=RestoreTarget(lsn=50), dest=str(tmp_path / "r")),
                               say=said.append)
    assert isinstance(result, RestoreResult)
    assert (result.base_snapshot, [s.snapshot for s in result.skipped]) == (names[0], [names[1]])
    assert "state digest mismatch" in result.skipped[0].reason
    assert any("falling back" in line and names[0] in line for line in said)
    assert entries(str(tmp_path / "r")) == model[50]


async def test_damage_only_the_file_digest_covers_is_found_after_the_last_block(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo_dir, names, model = await make_history(tmp_path)
    path = snapshot_path(repo_dir, names[1])
    size = os.path.getsize(path)
    rewrite(path, size - FOOTER_SIZE + 68, b"\1\0\0\0")  # the footer's reserved word: no CRC covers it
    no_whole_verify(monkeypatch)
    async with open_repository(repo_dir) as repo:
        result = await restore(repo, RestoreOptions(target=RestoreTarget(lsn=45), dest=str(tmp_path / "r")))
    assert isinstance(result, RestoreResult)
    assert [s.snapshot for s in result.skipped] == [names[1]]
    assert "file digest" in result.skipped[0].reason
    assert entries(str(tmp_path / "r")) == model[45]


@pytest.mark.parametrize("damage", ["flipped block byte", "altered entry"])
async def test_a_base_chosen_with_base_that_is_damaged_is_refused_with_nothing_published(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    repo_dir, names, _model = await make_history(tmp_path)
    path = snapshot_path(repo_dir, names[1])
    if damage == "altered entry":
        alter_a_value_keeping_every_crc(path)
    else:
        with SnapshotReader.open(path) as reader:
            block = reader.blocks[-1]
        rewrite(path, block.offset + block.compressed_size // 2, b"\xff")
    no_whole_verify(monkeypatch)
    dest = tmp_path / "r"
    async with open_repository(repo_dir) as repo:
        with pytest.raises(CorruptData, match="the base chosen with --base is damaged") as info:
            await restore(repo, RestoreOptions(target=RestoreTarget(lsn=50), dest=str(dest), base=names[1]))
    assert names[1] in str(info.value)
    assert not dest.exists()
    assert sorted(os.listdir(tmp_path)) == ["data", "repo"], "no staging directory is left behind"
