# ruff: noqa: ASYNC240 - the tests damage files between awaits; there is no loop to keep responsive
"""Verification fused with the replay (issue #13): a restore reads each block once, checks it as it
goes, and publishes nothing when any planned byte is damaged, also past the target."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from pitr.errors import CorruptData
from pitr.repo.identity import RepoIdentity, Watermark
from pitr.repo.repository import open_repository
from pitr.restore import RestoreOptions, RestoreResult, RestoreTarget, restore
from segments import chain, seal_segment
from segments import record as rec
from segments.naming import segment_name
from segments.segment_reader import SegmentReader
from segments.source import FileSource
from tests.store.test_restore import restored_entries

pytestmark = pytest.mark.anyio

TS0 = 1_795_961_387_000_000_000
PER_SEGMENT = 300
SEGMENTS = 3


def key(lsn: int) -> bytes:
    return b"k%03d" % (lsn * 7 % 101)


def value(lsn: int) -> bytes:
    return b"v%d-" % lsn + bytes([lsn % 251]) * 30


def write_segments(repo_dir: str, store_id: uuid.UUID) -> None:
    os.makedirs(os.path.join(repo_dir, "segments"), exist_ok=True)
    digest = chain.genesis(store_id)
    for s in range(SEGMENTS):
        first = s * PER_SEGMENT + 1
        buf, spans = bytearray(), []
        for lsn in range(first, first + PER_SEGMENT):
            start = len(buf)
            buf += rec.encode_single(lsn, TS0 + lsn, rec.PUT, key(lsn), value(lsn))
            spans.append(rec.Span(lsn, TS0 + lsn, start, len(buf)))
        path = os.path.join(repo_dir, "segments", segment_name(first, first + PER_SEGMENT - 1))
        with open(path, "wb") as fh:
            digest = seal_segment(fh, store_id, digest, bytes(buf), spans, TS0 + lsn, block_size=512).chain_digest


async def make_repository(root: Path) -> str:
    """SEGMENTS segments of PER_SEGMENT single-put commits each, in blocks of about 512 bytes."""
    repo_dir = str(root / "repo")
    store_id = uuid.UUID("6f1c2a8e-0000-4000-8000-0000000f05ed")
    async with open_repository(repo_dir, create=True) as repo:
        await repo.claim(RepoIdentity(store_id, "fused", TS0, 1, chain.genesis(store_id)))
    write_segments(repo_dir, store_id)
    last = SEGMENTS * PER_SEGMENT
    async with open_repository(repo_dir) as repo:
        assert not (await repo.sync()).broken
        await repo.write_watermark(Watermark(store_id, last, TS0 + last + 1))
    return repo_dir


def segment_path(repo_dir: str, s: int) -> str:
    first = s * PER_SEGMENT + 1
    return os.path.join(repo_dir, "segments", segment_name(first, first + PER_SEGMENT - 1))


def damage_block(path: str, which: int) -> tuple[int, int]:
    """Flip a byte in the middle of block `which` (negative: from the end); returns its LSN range."""
    with SegmentReader(FileSource(path)) as reader:
        entry = reader.meta.index[which]
    with open(path, "r+b") as fh:
        fh.seek(entry.offset + entry.compressed_size // 2)
        byte = fh.read(1)
        fh.seek(entry.offset + entry.compressed_size // 2)
        fh.write(bytes([byte[0] ^ 0x5A]))
    return entry.first_lsn, entry.first_lsn + entry.record_count - 1


def model(through: int) -> dict[bytes, bytes]:
    state: dict[bytes, bytes] = {}
    for lsn in range(1, through + 1):
        state[key(lsn)] = value(lsn)
    return state


def leftovers(parent: Path) -> list[str]:
    return sorted(name for name in os.listdir(parent) if name.startswith(".restored"))


async def test_a_damaged_block_in_the_middle_of_the_plan_publishes_nothing(tmp_path: Path) -> None:
    repo_dir = await make_repository(tmp_path)
    middle = segment_path(repo_dir, 1)
    with SegmentReader(FileSource(middle)) as reader:
        blocks = len(reader.meta.index)
    first, last = damage_block(middle, blocks // 2)
    dest = tmp_path / "restored"
    async with open_repository(repo_dir) as repo:
        with pytest.raises(CorruptData) as caught:
            await restore(repo, RestoreOptions(target=RestoreTarget(latest=True), dest=str(dest)))
    text = str(caught.value)
    assert os.path.basename(middle) in text, text
    assert f"block {blocks // 2} (LSN {first}..{last})" in text, text
    assert not dest.exists(), "a restore that found damage published its destination"
    assert leftovers(tmp_path) == [], "the staging directory of the refused restore was left behind"


async def test_blocks_past_the_target_are_verified_too(tmp_path: Path) -> None:
    """The last planned segment is checked whole, as `pitr verify` checks it; --no-verify reads only
    up to the target and restores it."""
    repo_dir = await make_repository(tmp_path)
    target = 2 * PER_SEGMENT + 5
    first, _last = damage_block(segment_path(repo_dir, 2), -1)
    assert first > target
    dest = tmp_path / "restored"
    async with open_repository(repo_dir) as repo:
        with pytest.raises(CorruptData, match="CRC-32C"):
            await restore(repo, RestoreOptions(target=RestoreTarget(lsn=target), dest=str(dest)))
        assert not dest.exists()
        result = await restore(repo, RestoreOptions(target=RestoreTarget(lsn=target), dest=str(dest),
                                                    verify=False))
    assert isinstance(result, RestoreResult)
    assert result.target_lsn == target
    assert {k: v for k, (v, _e) in restored_entries(str(dest)).items()} == model(target)


async def test_an_undamaged_history_restores_exactly(tmp_path: Path) -> None:
    repo_dir = await make_repository(tmp_path)
    for lsn, verify in ((PER_SEGMENT + 17, True), (SEGMENTS * PER_SEGMENT, True), (PER_SEGMENT - 1, False)):
        dest = tmp_path / f"restored-{lsn}"
        async with open_repository(repo_dir) as repo:
            await restore(repo, RestoreOptions(target=RestoreTarget(lsn=lsn), dest=str(dest), verify=verify))
        assert {k: v for k, (v, _e) in restored_entries(str(dest)).items()} == model(lsn)
