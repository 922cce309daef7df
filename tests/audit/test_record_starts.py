"""Audit's record stepping: the compiled scan finds where each record of a block starts, checking every
record on the way; a block it refuses is stepped through in Python, which names the damage."""

from __future__ import annotations

import random

from pitr.audit.records import _record_starts
from pitr.catalog.entries import BlockRow
from segments import record as rec
from tests.segments.strategies import encode_all


def block_of(records: list[rec.Record]) -> tuple[bytes, BlockRow]:
    raw = encode_all(records)
    return raw, BlockRow(records[0].lsn, 1, records[0].ts_ns, 0, 0, len(raw), len(records), 0)


def test_the_starts_are_each_records_offset_and_the_end() -> None:
    records = [rec.Record(7 + i, 100 + i, (rec.put(b"k%d" % i, b"v" * i),)) for i in range(30)]
    raw, row = block_of(records)
    assert _record_starts(raw, row) == [0, *(s.end for s in rec.scan_spans(raw))]


def test_a_block_the_scan_refuses_or_that_its_row_misnames_is_left_to_the_stepping(random_seed: int) -> None:
    rng = random.Random(random_seed)
    records = [rec.Record(7 + i, 100 + i, (rec.put(b"k%d" % i, b"v" * i),)) for i in range(30)]
    raw, row = block_of(records)
    damaged = bytearray(raw)
    damaged[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    assert _record_starts(bytes(damaged), row) == [0]
    assert _record_starts(raw, BlockRow(8, 1, 101, 0, 0, len(raw), 30, 0)) == [0]  # another first LSN
    assert _record_starts(raw, BlockRow(7, 1, 100, 0, 0, len(raw), 29, 0)) == [0]  # another count
