"""Audit's read-ahead: blocks read and checked in a worker thread come back to the walk in the planned
order, byte for byte what a direct read gives; damage is raised at the damaged block, not before; and a
block nobody planned is left to the caller without losing the plan."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import trio
import zstandard
from crc32c import crc32c

from pitr.audit.readahead import RUN, RUNS_AHEAD, Planned, ReadAhead
from pitr.catalog.entries import BlockRow
from pitr.errors import CorruptData, ObjectNotFound

BLOCKS = RUN * RUNS_AHEAD * 2 + 5  # more than the read-ahead holds at once


def write_blocks(path: Path, rng: random.Random, count: int = BLOCKS) -> tuple[list[BlockRow], list[bytes]]:
    """A file of `count` zstd blocks of random-ish records, and their rows."""
    cctx = zstandard.ZstdCompressor(level=3)
    rows, raws, offset, lsn = [], [], 0, 1
    with open(path, "wb") as fh:
        for _ in range(count):
            raw = b"".join(b"rec%08d:" % (lsn + k) + rng.randbytes(rng.randrange(0, 40)) for k in range(10))
            frame = cctx.compress(raw)
            fh.write(frame)
            rows.append(BlockRow(lsn, 1, lsn * 10, offset, len(frame), len(raw), 10, crc32c(frame)))
            raws.append(raw)
            offset += len(frame)
            lsn += 10
    return rows, raws


def planned(rows: list[BlockRow], path: Path) -> list[Planned]:
    return [(row, str(path), "file:///repo", "segments/x.seg") for row in rows]


def test_blocks_come_back_in_order_as_read_directly(tmp_path: Path, random_seed: int) -> None:
    rows, raws = write_blocks(tmp_path / "x.seg", random.Random(random_seed))

    async def main() -> list[bytes | None]:
        ahead = ReadAhead()
        try:
            ahead.plan(planned(rows, tmp_path / "x.seg"))
            return [await ahead.take(row) for row in rows]
        finally:
            ahead.close()

    assert trio.run(main) == raws


def test_damage_is_raised_at_the_damaged_block_and_the_blocks_before_it_are_whole(tmp_path: Path,
                                                                                random_seed: int) -> None:
    rng = random.Random(random_seed)
    path = tmp_path / "x.seg"
    rows, raws = write_blocks(path, rng)
    bad = rng.randrange(1, len(rows))
    with open(path, "r+b") as fh:  # flip one bit of the bad block's stored bytes
        at = rows[bad].offset + rng.randrange(rows[bad].compressed_size)
        fh.seek(at)
        byte = fh.read(1)[0]
        fh.seek(at)
        fh.write(bytes([byte ^ (1 << rng.randrange(8))]))
    got: list[bytes | None] = []

    async def main() -> None:
        ahead = ReadAhead()
        try:
            ahead.plan(planned(rows, path))
            for row in rows:
                got.append(await ahead.take(row))
        finally:
            ahead.close()

    with pytest.raises(CorruptData, match="CRC-32C") as caught:
        trio.run(main)
    assert got == raws[:bad]
    assert "file:///repo/segments/x.seg" in str(caught.value.path or caught.value)


def test_a_missing_file_is_not_found_when_its_block_is_asked_for(tmp_path: Path, random_seed: int) -> None:
    rows, _raws = write_blocks(tmp_path / "x.seg", random.Random(random_seed), count=3)
    os.remove(tmp_path / "x.seg")

    async def main() -> None:
        ahead = ReadAhead()
        try:
            ahead.plan(planned(rows, tmp_path / "x.seg"))
            await ahead.take(rows[0])
        finally:
            ahead.close()

    with pytest.raises(ObjectNotFound, match="segments/x.seg does not exist"):
        trio.run(main)


def test_an_unplanned_block_is_left_to_the_caller_and_a_skip_ahead_is_served(tmp_path: Path,
                                                                            random_seed: int) -> None:
    rows, raws = write_blocks(tmp_path / "x.seg", random.Random(random_seed))
    stranger = BlockRow(10**9, 1, 0, 0, 1, 1, 1, 0)

    async def main() -> None:
        ahead = ReadAhead()
        try:
            ahead.plan(planned(rows, tmp_path / "x.seg"))
            assert await ahead.take(rows[0]) == raws[0]
            assert await ahead.take(stranger) is None  # not planned: nothing of the plan is dropped
            assert await ahead.take(rows[1]) == raws[1]
            far = RUN * 3 + 2
            assert await ahead.take(rows[far]) == raws[far]  # the walk passed some blocks by
            assert await ahead.take(rows[1]) is None  # taken already
            assert [await ahead.take(row) for row in rows[far + 1:]] == raws[far + 1:]
        finally:
            ahead.close()

    trio.run(main)
