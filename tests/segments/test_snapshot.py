"""Snapshot files: round trip, the order-independent state digest, and detection of any damage."""

from __future__ import annotations

import io
import json
import random
import struct

import pytest
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from segments import (
    BytesSource,
    CorruptFile,
    SegmentsError,
    SnapshotHeader,
    SnapshotReader,
    SnapshotWriter,
    StateDigest,
    UnsupportedVersion,
)
from segments import snapshot as snap
from tests.segments.strategies import STORE_ID, expiries, flip

Entry = tuple[bytes, bytes, int | None]
states = st.dictionaries(st.binary(max_size=20), st.tuples(st.binary(max_size=80), expiries), max_size=40)
HEADER = SnapshotHeader(STORE_ID, 42, 1_795_961_387_250_000_000, b"\x07" * 32, 0, 0, 1_795_961_390_000_000_000,
                        {"producer": "pitr 0.1.0", "store_name": "test"})


def write_snapshot(entries: list[Entry], *, block_size: int = 128, header: SnapshotHeader = HEADER) -> bytes:
    out = io.BytesIO()
    writer = SnapshotWriter(out, header, block_size=block_size)
    writer.add_many(entries)
    writer.finish()
    return out.getvalue()


def sorted_entries(state: dict[bytes, tuple[bytes, int | None]]) -> list[Entry]:
    return [(k, v, e) for k, (v, e) in sorted(state.items())]


def read_everything(data: bytes) -> list[Entry]:
    reader = SnapshotReader(BytesSource(data, "test.snap"))
    reader.verify()
    return list(reader.iter_entries())


@settings(deadline=None)
@given(state=states, block_size=st.integers(16, 512), probe=st.binary(max_size=20))
def test_round_trip(state: dict[bytes, tuple[bytes, int | None]], block_size: int, probe: bytes) -> None:
    entries = sorted_entries(state)
    data = write_snapshot(entries, block_size=block_size)
    reader = SnapshotReader(BytesSource(data))
    reader.verify()
    assert list(reader.iter_entries()) == entries
    assert list(reader.iter_entries(probe)) == [e for e in entries if e[0] >= probe]
    assert reader.get(probe) == state.get(probe)
    for key, (value, expires) in state.items():
        assert reader.get(key) == (value, expires)
    h = reader.header
    assert (h.store_id, h.lsn, h.ts_ns, h.chain_digest, h.created_ns, h.metadata) == (
        HEADER.store_id, HEADER.lsn, HEADER.ts_ns, HEADER.chain_digest, HEADER.created_ns, HEADER.metadata)
    assert h.entry_count == len(entries)
    assert h.logical_bytes == sum(len(k) + len(v) for k, v, _ in entries)
    # the restore's block decoder gives the same entries as changes (a bare value when no expiry)
    changes = [c for i in range(len(reader.blocks)) for c in reader.block_changes(i, reader.read_block(i))]
    assert changes == [(k, v if e is None else (v, e)) for k, v, e in entries]


@given(state=states, seed=st.integers(0, 1 << 30))
def test_state_digest_is_independent_of_order(state: dict[bytes, tuple[bytes, int | None]], seed: int) -> None:
    entries = sorted_entries(state)
    shuffled = list(entries)
    random.Random(seed).shuffle(shuffled)
    a, b = StateDigest(), StateDigest()
    for k, v, e in entries:
        a.add(k, v, e)
    for k, v, e in shuffled:
        b.add(k, v, e)
    assert a.digest() == b.digest()
    assert SnapshotReader(BytesSource(write_snapshot(entries))).footer.state_digest == a.digest()


def test_state_digest_tells_states_apart() -> None:
    digests = set()
    for state in ([], [(b"k", b"v", None)], [(b"k", b"v", 1)], [(b"k", b"w", None)], [(b"kv", b"", None)]):
        d = StateDigest()
        for entry in state:
            d.add(*entry)
        digests.add(d.digest())
    assert len(digests) == 5


def test_writer_requires_increasing_keys() -> None:
    writer = SnapshotWriter(io.BytesIO(), HEADER)
    writer.add(b"b", b"")
    with pytest.raises(ValueError, match="increasing"):
        writer.add(b"a", b"")
    with pytest.raises(ValueError, match="increasing"):
        writer.add(b"b", b"")


def snapshot_damage_is_detected(data: bytes, offset: int, xor: int) -> None:
    try:
        read_everything(flip(data, offset, xor))
    except SegmentsError:
        return
    raise AssertionError(f"change at offset {offset} went unnoticed")


@settings(deadline=None)
@given(state=states, data=st.data())
def test_any_single_byte_change_is_detected(state: dict[bytes, tuple[bytes, int | None]], data: st.DataObject) -> None:
    blob = write_snapshot(sorted_entries(state), block_size=64)
    offset = data.draw(st.integers(0, len(blob) - 1), label="offset")
    snapshot_damage_is_detected(blob, offset, data.draw(st.integers(1, 255), label="xor"))


def test_every_byte_of_a_small_snapshot_is_covered() -> None:
    blob = write_snapshot([(b"k%d" % i, b"v" * i, i if i % 2 else None) for i in range(8)], block_size=40)
    for offset in range(len(blob)):
        snapshot_damage_is_detected(blob, offset, 0x20)


def rewrite_header(blob: bytes, *, version: int | None = None, metadata: bytes | None = None) -> bytes:
    """`blob` with header fields changed and the header CRC recomputed."""
    fixed = bytearray(blob[: snap.FIXED.size])
    (meta_len,) = struct.unpack_from("<I", fixed, snap.FIXED.size - 4)
    size = snap.FIXED.size + meta_len + 4
    meta = blob[snap.FIXED.size : size - 4] if metadata is None else metadata
    assert len(meta) == meta_len
    if version is not None:
        struct.pack_into("<H", fixed, 8, version)
    body = bytes(fixed) + meta
    return body + struct.pack("<I", crc32c(body)) + blob[size:]


def test_unsupported_version() -> None:
    blob = write_snapshot([(b"k", b"v", None)])
    with pytest.raises(UnsupportedVersion):
        SnapshotReader(BytesSource(rewrite_header(blob, version=snap.VERSION + 1)))
    damaged = bytearray(blob)
    damaged[8] = snap.VERSION + 1  # without the CRC recomputed this is damage, not a newer file
    with pytest.raises(CorruptFile, match="CRC"):
        SnapshotReader(BytesSource(bytes(damaged)))
    with pytest.raises(CorruptFile, match="version 0"):
        SnapshotReader(BytesSource(rewrite_header(blob, version=0)))


@pytest.mark.parametrize("metadata", [b"[" * 40, b"{" * 40, b"\xff" * 40, b"1" * 40, b'"' + b"x" * 38 + b'"'])
def test_bad_metadata_with_a_valid_crc_is_corrupt(metadata: bytes) -> None:
    header = SnapshotHeader(STORE_ID, 1, 1, bytes(32), 0, 0, 0, {"pad": "x" * 30})
    blob = write_snapshot([(b"k", b"v", None)], header=header)
    assert len(json.dumps(header.metadata, separators=(",", ":"))) == 40
    with pytest.raises(CorruptFile, match="metadata"):
        SnapshotReader(BytesSource(rewrite_header(blob, metadata=metadata)))


def test_deeply_nested_metadata_is_corrupt_not_a_crash() -> None:
    depth = 5000
    header = SnapshotHeader(STORE_ID, 1, 1, bytes(32), 0, 0, 0, {"pad": "x" * (2 * depth - 10)})
    blob = write_snapshot([(b"k", b"v", None)], header=header)
    with pytest.raises(CorruptFile, match="metadata"):
        SnapshotReader(BytesSource(rewrite_header(blob, metadata=b"[" * depth + b"]" * depth)))


def test_empty_snapshot_round_trips() -> None:
    blob = write_snapshot([])
    assert read_everything(blob) == []
    assert SnapshotReader(BytesSource(blob)).get(b"anything") is None


@settings(deadline=None)
@given(garbage=st.binary(max_size=600), cut=st.integers(0, 1500), with_magic=st.booleans())
def test_garbage_fails_cleanly(garbage: bytes, cut: int, with_magic: bool) -> None:
    blob = write_snapshot([(b"k%02d" % i, b"v" * i, None) for i in range(20)], block_size=64)
    for data in (garbage, blob[:cut] + garbage, snap.MAGIC + garbage if with_magic else garbage + blob[-150:]):
        try:
            read_everything(data)
        except SegmentsError:
            continue
        assert data == blob


def test_an_entry_of_the_largest_value_fits_in_a_block() -> None:
    from segments import record as rec

    entries: list[Entry] = [(b"a", b"x", None), (b"big", b"v" * rec.MAX_VALUE, 5), (b"c", b"", None)]
    reader = SnapshotReader(BytesSource(write_snapshot(entries, block_size=1024)))
    reader.verify()
    assert reader.get(b"c") == (b"", None)
    with pytest.raises(ValueError, match="limit"):
        SnapshotWriter(io.BytesIO(), HEADER).add(b"k", b"v" * (rec.MAX_VALUE + 1))


@settings(deadline=None)
@given(state=states.filter(bool), data=st.data())
def test_block_decoder_refuses_damaged_block_bytes(state: dict[bytes, tuple[bytes, int | None]],
                                                  data: st.DataObject) -> None:
    """Bytes that passed the block CRC but do not decode (a writer bug, a forged CRC): a clean
    CorruptFile from the restore's decoder, never a wrong entry list or another exception."""
    blob = write_snapshot(sorted_entries(state), block_size=1 << 16)
    reader = SnapshotReader(BytesSource(blob, "test.snap"))
    raw = bytearray(reader.read_block(0))
    at = data.draw(st.integers(0, len(raw) - 1), label="offset")
    raw[at] ^= data.draw(st.integers(1, 255), label="xor")
    try:
        decoded = reader.block_changes(0, bytes(raw))
    except CorruptFile as exc:
        failure: CorruptFile | None = exc
    else:
        failure = None
        # a change inside a key or value decodes, to entries that differ from the originals
        assert len(decoded) == len(state)
    assert failure is None or failure.path == "test.snap", "the error names the file"
