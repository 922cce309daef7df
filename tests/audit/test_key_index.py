"""The key index at work: across blocks, merged segments and a rebuilt catalog; keys by digest."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pitr.archiver import ArchiveOptions, Archiver, DirectorySource
from pitr.audit import commit_log, history, open_value_reader, readahead, value_at
from pitr.audit.records import RecordReader
from pitr.errors import CorruptData
from pitr.repo import layout
from pitr.repo.indexing import index_segment
from pitr.repo.repository import Repository, open_repository
from segments import record as rec
from tests.audit.model import LONG_A, LONG_B, Step, Written, check_value, net_ops, write_history

pytestmark = pytest.mark.anyio

NO_MERGE = ArchiveOptions(interval=3600.0, merge_count=1000)


def big_history(seed: int = 7) -> list[Step]:
    """~150 commits of 3 KB values: about 20 records per 64 KiB block, a segment every 10 commits."""
    rng = random.Random(seed)
    steps: list[Step] = []
    for i in range(150):
        key = b"k%d" % rng.randrange(5)
        if rng.random() < 0.15:
            steps.append(("delete", key))
        else:
            steps.append(("put", key, rng.randbytes(3000), rng.choice([None, None, 2500])))
        steps.append(("tick", rng.choice([0, 1, 1000])))
        if i % 10 == 9:
            steps.append(("cycle",))
    return steps


async def answers(repo: Repository, written: Written) -> tuple[object, ...]:
    """Everything the audit functions say about a history, checked against the model on the way."""
    commits = written.commits
    keys = sorted({op.key for c in commits for op in c.ops})
    hist = {k: [(c.lsn, c.op, c.value) async for c in history(repo, k)] for k in keys}
    for key in keys:
        assert [lsn for lsn, _op, _v in hist[key]] == [c.lsn for c in commits if key in net_ops(c)]
    values = []
    async with open_value_reader(repo) as reader:
        for commit in commits:
            for ts in (commit.ts_ns - 1, commit.ts_ns):
                if ts < reader.timeline.windows[0].start_ns:
                    continue
                moment = reader.moment(ts)
                for key in keys:
                    got = await reader.value_at(key, moment)
                    check_value(got, commits, key, ts, False, moment.base.lsn)
                    values.append(got)
    log = [(c.lsn, c.ts_ns, c.ops) async for c in commit_log(repo)]
    assert [lsn for lsn, _ts, _ops in log] == [c.lsn for c in commits]
    return hist, values, log


async def test_lookups_survive_merges_and_reindex(tmp_path: Path) -> None:
    steps = big_history()
    merged: list[str] = []
    written = await write_history(str(tmp_path), steps, options=NO_MERGE)
    async with open_repository(str(tmp_path / "repo")) as repo:
        await repo.sync()
        segments = repo.catalog.segments()
        assert len(segments) >= 10
        first = repo.catalog.block_for_lsn(1)
        assert first is not None
        assert first.record_count < 30
        before = await answers(repo, written)
        keys_before = sorted(repo.catalog.key_index())

        # merge two runs of segments the way the archiver does; their key tables are merged too
        archiver = Archiver(DirectorySource(str(tmp_path / "data")), [repo], NO_MERGE)
        for run in (segments[1:4], segments[5:9]):
            entry = await archiver.merge(repo, run)
            merged.append(entry.name)
            assert len(entry.pieces) == len(run)
        assert {s.name for s in repo.catalog.segments()} >= set(merged)
        assert sorted(repo.catalog.key_index()) == keys_before  # the merged runs' tables are merged
        merged_rows = repo.catalog.dump()["keychunks"]
        assert await answers(repo, written) == before

        # the catalog rebuilt from the files alone says the same
        report = await repo.reindex()
        assert set(merged) <= set(report.indexed)
        assert repo.catalog.dump()["keychunks"] == merged_rows  # a merge writes the table reindexing writes
        assert await answers(repo, written) == before


async def test_each_block_is_read_once_while_versions_share_it(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[Step] = [("put", b"hot", b"%d" % i, None) for i in range(300)] + [("cycle",)]
    written = await write_history(str(tmp_path), steps, options=NO_MERGE)
    async with open_repository(str(tmp_path / "repo")) as repo:
        await repo.sync()
        # 300 small records fit one block, but the archiver's first cycle may race the writes and ship
        # a few of them in a segment of their own: each block, however many there are, is read once
        blocks = sum(s.block_count for s in repo.catalog.segments())
        assert blocks <= 2
        reads = count_block_reads(monkeypatch)
        got = [c.value async for c in history(repo, b"hot")]
        assert got == [b"%d" % i for i in range(300)]
        assert reads() == blocks
        reader = RecordReader(repo)
        for commit in written.commits:
            record = await reader.record_at(commit.lsn)
            assert record is not None
            assert record.lsn == commit.lsn
        assert reader.blocks_read == blocks
        assert await reader.record_at(10_000) is None


def count_block_reads(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Blocks read from the segment files: by the record reader itself or by its read-ahead."""
    calls = 0
    original: Callable[..., Awaitable[bytes]] = RecordReader._read_block
    original_run = readahead.read_run

    async def counting(*args: object) -> bytes:
        nonlocal calls
        calls += 1
        return await original(*args)

    def counting_run(run: Sequence[readahead.Planned]) -> readahead.Outcome:
        nonlocal calls
        calls += len(run)
        return original_run(run)

    monkeypatch.setattr(RecordReader, "_read_block", counting)
    monkeypatch.setattr(readahead, "read_run", counting_run)
    return lambda: calls


async def forge_key_row(repo: Repository, key: bytes, ts_ns: int, lsn: int) -> None:
    """Index the segment holding `lsn` again with one more key version claiming that commit changed `key`."""
    segment = repo.catalog.segment_containing(lsn)
    assert segment is not None
    source = await repo.open_source(layout.segment_object(segment.name))
    try:
        entry, blocks, rows = index_segment(segment.name, source)
    finally:
        source.close()
    repo.catalog.add_segment(entry, blocks, [*rows, (key, ts_ns, lsn, rec.PUT, False)], [entry.first_lsn])


async def test_long_keys_are_checked_against_the_record(tmp_path: Path) -> None:
    steps: list[Step] = [("put", LONG_A, b"a1", None), ("put", LONG_B, b"b1", None),
                         ("put", LONG_A, b"a2", None), ("put", LONG_B, b"b2", None),
                         ("batch", [("put", LONG_B, b"b3", None), ("put", b"short", b"s", None)])]
    written = await write_history(str(tmp_path), steps, options=NO_MERGE)
    a1, b1, a2, b2, b3 = written.commits
    async with open_repository(str(tmp_path / "repo")) as repo:
        await repo.sync()
        assert [c.value async for c in history(repo, LONG_A)] == [b"a1", b"a2"]
        # a digest collision, simulated: LONG_A's index rows also name LONG_B's commits
        for commit in (b1, b2, b3):
            await forge_key_row(repo, LONG_A, commit.ts_ns, commit.lsn)
        assert [c.value async for c in history(repo, LONG_A)] == [b"a1", b"a2"]
        for ts, expected in ((a1.ts_ns, b"a1"), (b1.ts_ns, b"a1"), (a2.ts_ns, b"a2"), (b3.ts_ns, b"a2")):
            got = await value_at(repo, LONG_A, ts)
            assert got is not None
            assert got.value == expected
        assert await value_at(repo, LONG_A, a1.ts_ns - 1) is None
        got_b = await value_at(repo, LONG_B, b3.ts_ns)
        assert got_b is not None
        assert (got_b.value, got_b.lsn) == (b"b3", b3.lsn)
        # short keys are indexed by digest too: a version naming a record without the key is passed over
        await forge_key_row(repo, b"short", a2.ts_ns, a2.lsn)
        assert [c.value async for c in history(repo, b"short")] == [b"s"]
        assert await value_at(repo, b"short", a2.ts_ns) is None


async def test_repositories_without_local_files_read_through_the_storage(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Remote repositories (S3) have no local path: blocks come from `Repository.read_block`."""
    written = await write_history(str(tmp_path), big_history(seed=3)[:60], options=NO_MERGE)
    async with open_repository(str(tmp_path / "repo")) as repo:
        await repo.sync()
        local = await answers(repo, written)
        monkeypatch.setattr(repo, "local_path", lambda name: None)
        calls = 0
        original = repo.read_block

        async def counting(*args: Any) -> bytes:
            nonlocal calls
            calls += 1
            return await original(*args)

        monkeypatch.setattr(repo, "read_block", counting)
        assert await answers(repo, written) == local
        assert calls > 0


async def test_blocks_for_lsns_answers_as_block_for_lsn_does(tmp_path: Path, random_seed: int) -> None:
    rng = random.Random(random_seed)
    steps: list[Step] = []
    for _ in range(6):
        steps += [("put", b"k%d" % rng.randrange(50), rng.randbytes(rng.randrange(1, 400)), None)
                  for _ in range(rng.randrange(1, 200))] + [("cycle",)]
    written = await write_history(str(tmp_path), steps, options=NO_MERGE)
    async with open_repository(str(tmp_path / "repo")) as repo:
        await repo.sync()
        last = written.commits[-1].lsn
        lsns = sorted(rng.randrange(0, last + 50) for _ in range(300)) + [rng.randrange(0, last + 50)
                                                                           for _ in range(50)]
        assert repo.catalog.blocks_for_lsns(lsns) == [repo.catalog.block_for_lsn(lsn) for lsn in lsns]


async def test_a_spread_out_history_is_read_ahead_and_refuses_at_a_damaged_block(
        tmp_path: Path, random_seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key whose versions lie a block apart is read ahead (pitr.audit.readahead): the same changes as
    written; a flipped byte in one of its blocks is refused there, after the versions before it."""
    rng = random.Random(random_seed)
    steps: list[Step] = []
    for i in range(40):
        steps += [("put", b"hot", b"v%d" % i, None), ("put", b"filler", rng.randbytes(70_000), None)]
    steps.append(("cycle",))
    written = await write_history(str(tmp_path), steps, options=NO_MERGE)
    hot = [c for c in written.commits if c.ops[0].key == b"hot"]
    ahead = 0
    original_run = readahead.read_run

    def counting_run(run: Sequence[readahead.Planned]) -> readahead.Outcome:
        nonlocal ahead
        ahead += len(run)
        return original_run(run)

    monkeypatch.setattr(readahead, "read_run", counting_run)
    async with open_repository(str(tmp_path / "repo")) as repo:
        await repo.sync()
        got = [(c.lsn, c.value) async for c in history(repo, b"hot")]
        assert got == [(c.lsn, c.ops[0].value) for c in hot]
        assert ahead == len(hot)  # every version's block came through the read-ahead
        bad = rng.randrange(1, len(hot))
        block = repo.catalog.block_for_lsn(hot[bad].lsn)
        segment = repo.catalog.segment_containing(hot[bad].lsn)
        assert block is not None
        assert segment is not None
        path = repo.local_path(layout.segment_object(segment.name))
        assert path is not None
        flip_byte(path, block.offset + rng.randrange(block.compressed_size))
        seen: list[int] = []

        async def walk() -> None:
            async for change in history(repo, b"hot"):
                seen.append(change.lsn)

        with pytest.raises(CorruptData, match="CRC-32C"):
            await walk()
        assert seen == [c.lsn for c in hot[:bad]]


def flip_byte(path: str, at: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(at)
        byte = fh.read(1)[0]
        fh.seek(at)
        fh.write(bytes([byte ^ 0x10]))
