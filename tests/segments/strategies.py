"""Hypothesis strategies and small builders shared by the segments tests."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Sequence

from hypothesis import strategies as st

from segments import chain
from segments import record as rec
from segments.segment_writer import SealedSegment, seal_segment
from segments.wal import WalWriter, wal_name

STORE_ID = uuid.UUID("6f1c2a8e-0000-4000-8000-00000000c0de")
I64 = st.integers(rec.MIN_I64, rec.MAX_I64)

keys = st.binary(max_size=24)
values = st.binary(max_size=120)
expiries = st.none() | I64
ops = st.one_of(
    st.builds(rec.put, keys, values, expiries),
    st.builds(rec.delete, keys),
)
source_revs = st.none() | st.integers(0, rec.MAX_U64)


@st.composite
def record_runs(
    draw: st.DrawFn, *, min_size: int = 1, max_size: int = 12, first_lsn: int | None = None,
    max_ops: int = 4,
) -> list[rec.Record]:
    """Consecutive commits: dense LSNs and strictly increasing commit times."""
    count = draw(st.integers(min_size, max_size))
    lsn = draw(st.integers(0, 1 << 40)) if first_lsn is None else first_lsn
    ts = draw(st.integers(-(1 << 61), 1 << 61))
    records = []
    for i in range(count):
        ts += draw(st.integers(1, 1 << 40))
        batch = tuple(draw(st.lists(ops, min_size=1, max_size=max_ops)))
        records.append(rec.Record(lsn + i, ts, batch, draw(source_revs), gap=draw(st.booleans())))
    return records


def encode_all(records: Sequence[rec.Record]) -> bytes:
    return b"".join(rec.encode_record(r.lsn, r.ts_ns, r.ops, r.source_rev, gap=r.gap) for r in records)


def plain_records(first_lsn: int, count: int, ts0: int = 1_795_961_387_000_000_000,
                  value_size: int = 40) -> list[rec.Record]:
    """Simple deterministic commits, for tests that need many records rather than odd ones."""
    return [
        rec.Record(lsn, ts0 + 1000 * (lsn - first_lsn),
                   (rec.put(f"user:{lsn:06d}:profile".encode(), bytes([lsn % 251]) * value_size),), None)
        for lsn in range(first_lsn, first_lsn + count)
    ]


def write_wal(directory: str, records: Sequence[rec.Record], *, preallocate: int = 0,
              first_lsn: int | None = None) -> tuple[str, list[bytes]]:
    """A WAL file holding `records` (one commit group each); returns its path and each record's bytes."""
    first = records[0].lsn if first_lsn is None else first_lsn
    path = os.path.join(directory, wal_name(first))
    encoded = [rec.encode_record(r.lsn, r.ts_ns, r.ops, r.source_rev, gap=r.gap) for r in records]
    writer = WalWriter.create(path, STORE_ID, first, 0, preallocate=preallocate)
    try:
        for data in encoded:
            writer.append(data)
        writer.sync()
    finally:
        writer.close()
    return path, encoded


def seal(records: Sequence[rec.Record], prev: bytes | None = None, *, block_size: int = 256,
         complete_through_ns: int = 0) -> tuple[bytes, SealedSegment]:
    """Seal `records` as one segment in memory; returns the file bytes and the result."""
    buf = encode_all(records)
    spans = list(rec.scan_spans(buf))
    out = io.BytesIO()
    sealed = seal_segment(out, STORE_ID, chain.genesis(STORE_ID) if prev is None else prev, buf, spans,
                          complete_through_ns, block_size=block_size)
    return out.getvalue(), sealed


def seal_chain(records: Sequence[rec.Record], cuts: Sequence[int], *, block_size: int = 256
               ) -> list[tuple[bytes, SealedSegment]]:
    """Seal `records` as consecutive linked segments split before each index in `cuts`."""
    bounds = [0, *sorted(set(cuts)), len(records)]
    segments = []
    prev = chain.genesis(STORE_ID)
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        if lo == hi:
            continue
        data, sealed = seal(records[lo:hi], prev, block_size=block_size)
        segments.append((data, sealed))
        prev = sealed.chain_digest
    return segments


def flip(data: bytes, offset: int, xor: int) -> bytes:
    """`data` with the byte at `offset` changed (xor must be non-zero)."""
    assert xor != 0
    changed = bytearray(data)
    changed[offset] ^= xor
    return bytes(changed)
