"""Fuzz the WAL parsers: mutated files, raw and with every checksum recomputed after the mutation.

Every reader of WAL bytes (recovery `scan_wal`, the follower `read_wal_from`,
the payload decoder, and a whole `Store` opening the file) must either refuse
with an error that names the file, or return records that are a prefix of
the true history (raw mutations) or at least a well-formed log (mutations
whose checksums were recomputed, which no checksum can catch). Never a
traceback, never an allocation sized from the file's own length fields.
"""

from __future__ import annotations

import os
import struct
import tempfile
import tracemalloc
from pathlib import Path

import anyio
import pytest
from crc32c import crc32c
from hypothesis import given
from hypothesis import strategies as st

from pitr.errors import PitrError
from pitr.store import Store, StoreOptions
from segments import SegmentsError, WalWriter, scan_wal, wal
from segments import record as rec
from segments.wal_follow import read_wal_from
from tests.segments.strategies import STORE_ID, record_runs


class Layout:
    """Where the frames and records of a freshly written WAL file sit."""

    def __init__(self) -> None:
        self.frames: list[int] = []
        self.records: list[int] = []


def write_grouped(path: str, records: list[rec.Record], cuts: list[int], store_id: object = STORE_ID) -> Layout:
    layout = Layout()
    writer = WalWriter.create(path, store_id, records[0].lsn, 0, preallocate=512)  # type: ignore[arg-type]
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(records))), len(records)]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        encoded = [rec.encode_record(r.lsn, r.ts_ns, r.ops, r.source_rev, gap=r.gap) for r in records[lo:hi]]
        layout.frames.append(writer.size)
        pos = writer.size + wal.FRAME_SIZE
        for piece in encoded:
            layout.records.append(pos)
            pos += len(piece)
        writer.append(b"".join(encoded), records[hi - 1].lsn)
        writer.sync()
    writer.close()
    return layout


def recompute_checksums(data: bytearray, layout: Layout) -> None:
    """Make every record CRC, group CRC and frame header CRC match the mutated bytes again."""
    for offset in layout.records:
        if offset + 8 <= len(data):
            (length,) = struct.unpack_from("<I", data, offset + 4)
            if offset + 8 + length <= len(data):
                struct.pack_into("<I", data, offset, crc32c(bytes(data[offset + 4 : offset + 8 + length])))
    for offset in layout.frames:
        if offset + wal.FRAME_SIZE <= len(data):
            (length,) = struct.unpack_from("<Q", data, offset + 8)
            start = offset + wal.FRAME_SIZE
            if start + length <= len(data):
                struct.pack_into("<I", data, offset + 24, crc32c(bytes(data[start : start + length])))
            struct.pack_into("<I", data, offset, crc32c(bytes(data[offset + 4 : offset + wal.FRAME_SIZE])))
    if len(data) >= wal.HEADER_SIZE:
        struct.pack_into("<I", data, wal.HEADER_SIZE - 4, crc32c(bytes(data[: wal.HEADER_SIZE - 4])))


@st.composite
def mutations(draw: st.DrawFn, size: int, layout: Layout) -> tuple[str, int, bytes]:
    """A mutation, half the time aimed at a header field (where checks, not checksums, must catch it)."""
    kind = draw(st.sampled_from(["flip", "zero", "truncate", "garbage", "u32", "u64"]))
    fields = [start + k for start in layout.records for k in range(rec.FIRST_OP_SIZE)] + \
        [start + k for start in layout.frames for k in range(wal.FRAME_SIZE)] + list(range(wal.HEADER_SIZE))
    at = draw(st.one_of(st.integers(0, size - 1), st.sampled_from([f for f in fields if f < size])))
    if kind == "garbage":
        return kind, at, draw(st.binary(min_size=1, max_size=64))
    if kind in ("u32", "u64"):
        width = 4 if kind == "u32" else 8
        value = draw(st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**63 - 1, 2**64 - 1, 7, 1000]))
        return kind, at, (value % (1 << (8 * width))).to_bytes(width, "little")
    return kind, at, bytes([draw(st.integers(1, 255))]) * draw(st.integers(1, 700))


def mutate(original: bytes, mutation: tuple[str, int, bytes]) -> bytearray:
    kind, at, payload = mutation
    data = bytearray(original)
    if kind == "flip":
        data[at] ^= payload[0]
    elif kind == "zero":
        data[at : at + len(payload)] = bytes(len(data[at : at + len(payload)]))
    elif kind == "truncate":
        del data[at:]
    else:
        data[at : at + len(payload)] = payload[: len(data) - at]
    return data


def check_readers(path: str, truth: list[rec.Record], *, raw: bool) -> list[rec.Record] | None:
    """Run every WAL reader over the file; returns the records recovery kept, None if it refused."""
    followed: list[rec.Record] | None = None
    try:
        chunk = read_wal_from(path, 0, 0, rec.MAX_LSN)
    except SegmentsError as exc:
        refusal: SegmentsError | None = exc
    else:
        refusal = None
        followed = list(rec.decode_records(chunk.data, skip_unknown=True))
        assert {r.lsn for r in followed} <= {s.lsn for s in chunk.spans}  # unknown record types are skipped
    assert refusal is None or path in str(refusal), f"the error does not name the file: {refusal}"
    try:
        scan = scan_wal(path, repair=True)
    except SegmentsError as exc:
        refusal = exc
    else:
        refusal = None
    if refusal is not None:
        assert path in str(refusal), f"the error does not name the file: {refusal}"
        return None
    data = Path(path).read_bytes()
    kept = [r for r in (rec.decode_payload(data, s, skip_unknown=True) for s in scan.spans) if r is not None]
    lsns = [s.lsn for s in scan.spans]
    assert lsns == list(range(scan.header.first_lsn, scan.header.first_lsn + len(lsns))), "LSNs are dense"
    assert all(a.ts_ns < b.ts_ns for a, b in zip(scan.spans, scan.spans[1:], strict=False))
    if raw:
        assert kept == truth[: len(kept)], "recovery returned records that were never written"
        if followed is not None:
            assert followed == truth[: len(followed)], "the follower returned records never written"
    return kept


@given(records=record_runs(min_size=1, max_size=8), cuts=st.lists(st.integers(1, 7), max_size=4),
       data=st.data(), recompute=st.booleans())
def test_mutated_wal_files_are_refused_naming_the_file_or_read_as_a_true_prefix(
        records: list[rec.Record], cuts: list[int], data: st.DataObject, recompute: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, wal.wal_name(records[0].lsn))
        layout = write_grouped(path, records, cuts)
        original = Path(path).read_bytes()
        changed = mutate(original, data.draw(mutations(len(original), layout), label="mutation"))
        if recompute:
            recompute_checksums(changed, layout)
        Path(path).write_bytes(changed)
        check_readers(path, records, raw=not recompute)


@given(records=record_runs(min_size=2, max_size=6, max_ops=2), data=st.data(), recompute=st.booleans())
def test_a_store_over_a_mutated_wal_refuses_naming_the_file_or_holds_a_true_prefix(
        records: list[rec.Record], data: st.DataObject, recompute: bool) -> None:
    plain = [tuple(rec.Op(op.kind, op.key, op.value) for op in r.ops if 0 < len(op.key) <= 511) for r in records]
    records = [rec.Record(i + 1, r.ts_ns, ops) for i, (r, ops) in enumerate(zip(records, plain, strict=True))
               if ops]
    records = [r._replace(lsn=i + 1) for i, r in enumerate(records)] or [rec.Record(1, 1, (rec.put(b"k", b"v"),))]
    with tempfile.TemporaryDirectory() as directory:
        store_dir = os.path.join(directory, "store")

        async def open_store() -> tuple[object, dict[bytes, bytes]]:
            async with Store(store_dir, StoreOptions(max_clock_skew=float("inf"))) as store:
                assert store.identity is not None
                return store.identity.store_id, dict(await store.scan())

        store_id, _ = anyio.run(open_store)
        wal_dir = os.path.join(store_dir, "wal")
        for name in os.listdir(wal_dir):
            os.unlink(os.path.join(wal_dir, name))
        path = os.path.join(wal_dir, wal.wal_name(1))
        layout = write_grouped(path, records, [data.draw(st.integers(1, len(records)), label="cut")], store_id)
        original = Path(path).read_bytes()
        changed = mutate(original, data.draw(mutations(len(original), layout), label="mutation"))
        if recompute:
            recompute_checksums(changed, layout)
        Path(path).write_bytes(changed)
        refusal: PitrError | None = None
        try:
            _, state_after = anyio.run(open_store)
        except PitrError as exc:
            refusal = exc
        if refusal is not None:
            assert wal_dir in str(refusal), f"the error names no WAL file: {refusal}"
            return
        if not recompute:
            prefixes = []
            for n in range(len(records) + 1):
                expected: dict[bytes, bytes] = {}
                for r in records[:n]:
                    for op in r.ops:
                        if op.kind == rec.PUT:
                            expected[op.key] = op.value
                        else:
                            expected.pop(op.key, None)
                prefixes.append(expected)
            assert state_after in prefixes, "the store opened with a state that is no prefix of the history"


def test_length_fields_claiming_huge_sizes_allocate_nothing_from_them(tmp_path: Path) -> None:
    path = str(tmp_path / wal.wal_name(1))
    records = [rec.Record(1, 10, (rec.put(b"k", b"v" * 1000),)), rec.Record(2, 11, (rec.put(b"k", b"w"),))]
    layout = write_grouped(path, records, [1])
    data = bytearray(Path(path).read_bytes())
    struct.pack_into("<I", data, layout.records[0] + 4, 1 << 28)  # the first record claims 256 MiB
    struct.pack_into("<Q", data, layout.frames[1] + 8, 1 << 40)  # the second group claims a terabyte
    recompute_checksums(data, layout)
    Path(path).write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(SegmentsError, match="record length"):
            read_wal_from(path, 0, 1, 2)
        with pytest.raises(SegmentsError, match="record length"):
            scan_wal(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"parsing allocated {peak} bytes"
