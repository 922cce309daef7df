"""Sealed snapshots (snapshot version 2, docs/format.md "Sealed snapshots"): every block and the key
table sealed, so the file holds no key, value or first key; without the key its structure reads and
its blocks do not; an adversary who recomputes every unkeyed checksum cannot swap, move or re-date a
block; the sealed reader reads what the plaintext reader reads (property test)."""

from __future__ import annotations

import io
import struct
import uuid
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from pitr import backup
from pitr.crypto import DataKey
from pitr.errors import WrongKey
from segments import CorruptFile
from segments.block_seal import SealedFile, SegmentKeys
from segments.snapshot import FIXED, SnapshotHeader, SnapshotReader, SnapshotWriter
from segments.source import BytesSource
from tests.fuzz.reseal import reseal_snapshot

STORE = uuid.UUID("0b3ac1c8-5d2e-4d0e-9a43-0f5a2b1f9c11")
KEYS = DataKey(bytes(range(32, 64))).segment_keys()
Entry = tuple[bytes, bytes, int | None]


def snapshot(entries: list[Entry], *, keys: SegmentKeys | None = KEYS, lsn: int = 7, block_size: int = 256,
             compress: bool = True, salt: bytes | None = None) -> bytes:
    out = io.BytesIO()
    writer = SnapshotWriter(out, SnapshotHeader(STORE, lsn, 1_000 + lsn, bytes(32), 0, 0, 5, {"store_name": "s"},
                                                salt=salt), block_size=block_size, compress=compress, keys=keys)
    for key, value, expires in entries:
        writer.add(key, value, expires)
    writer.finish(chain_digest=bytes(range(32)))
    return out.getvalue()


def fixed_entries(n: int = 40) -> list[Entry]:
    """Entries of one size, so that raw blocks of equal entry counts have equal sizes (swappable)."""
    return [(b"key-%04d-secret" % i, b"value-%04d-" % i + b"s" * 48, None) for i in range(n)]


def read_all(blob: bytes, keys: SegmentKeys | None = KEYS) -> list[Entry]:
    return list(SnapshotReader(BytesSource(blob, "s.snap"), keys=keys).iter_entries())


def test_a_sealed_snapshot_holds_no_key_value_or_first_key_and_reads_back() -> None:
    entries = fixed_entries()
    for compress in (True, False):
        blob = snapshot(entries, compress=compress)
        assert not [part for k, v, _ in entries for part in (k, v[:10]) if part in blob]
        reader = SnapshotReader(BytesSource(blob, "s.snap"), keys=KEYS)
        assert reader.header.sealed
        assert len(reader.blocks) > 2
        reader.verify()  # first keys from the key table, state digest from it, file digest
        assert read_all(blob) == entries
        assert reader.get(entries[17][0]) == (entries[17][1], None)
        plain = SnapshotReader(BytesSource(snapshot(entries, keys=None, compress=compress), "p.snap"))
        assert reader.footer.state_digest == plain.footer.state_digest
        assert [b.first_key for b in reader.blocks] == [b.first_key for b in plain.blocks]


def test_without_the_key_the_structure_reads_and_the_blocks_do_not() -> None:
    blob = snapshot(fixed_entries())
    reader = SnapshotReader(BytesSource(blob, "s.snap"))
    assert reader.header.entry_count == 40
    assert reader.header.lsn == 7
    assert reader.footer.state_digest == bytes(32)  # the state digest is sealed: it confirms no guess
    assert {b.first_key for b in reader.blocks} == {b""}
    with pytest.raises(SealedFile, match="needs the repository's key"):
        reader.read_block(0)
    with pytest.raises(SealedFile):
        reader.get(b"key-0001-secret")


def test_another_data_key_fails_at_the_key_table() -> None:
    blob = snapshot(fixed_entries())
    with pytest.raises(CorruptFile, match="sealed block .* fails its authentication tag"):
        SnapshotReader(BytesSource(blob, "s.snap"), keys=DataKey.new().segment_keys())


def test_a_plaintext_snapshot_under_the_keys_is_refused() -> None:
    blob = snapshot(fixed_entries(), keys=None)
    with pytest.raises(CorruptFile, match="not sealed, but the repository is encrypted"):
        SnapshotReader(BytesSource(blob, "p.snap"), keys=KEYS)


def _block_spans(blob: bytes) -> list[tuple[int, int]]:
    reader = SnapshotReader(BytesSource(blob, "s.snap"))
    return [(b.offset, b.compressed_size) for b in reader.blocks]


def test_swapped_blocks_fail_their_tags_though_every_checksum_is_recomputed() -> None:
    blob = snapshot(fixed_entries(), compress=False, block_size=500)  # raw blocks of equal sizes
    spans = _block_spans(blob)
    (a_off, a_len), (b_off, b_len) = spans[0], spans[1]
    assert a_len == b_len
    d = bytearray(blob)
    d[a_off:a_off + a_len], d[b_off:b_off + b_len] = blob[b_off:b_off + b_len], blob[a_off:a_off + a_len]
    forged = reseal_snapshot(bytes(d))
    reader = SnapshotReader(BytesSource(forged, "s.snap"), keys=KEYS)  # the CRCs and file digest agree
    with pytest.raises(CorruptFile, match="sealed block 0 fails its authentication tag"):
        reader.read_block(0)
    with pytest.raises(CorruptFile, match="fails its authentication tag"):
        reader.verify()


def test_a_block_moved_from_another_snapshot_fails_its_tag() -> None:
    entries = fixed_entries()
    one = snapshot(entries, compress=False, block_size=500)
    other = snapshot(entries, compress=False, block_size=500)  # the same state: another salt, so another key
    (off, size) = _block_spans(one)[2]
    forged = reseal_snapshot(one[:off] + other[off:off + size] + one[off + size:])
    with pytest.raises(CorruptFile, match="sealed block 2 fails its authentication tag"):
        SnapshotReader(BytesSource(forged, "s.snap"), keys=KEYS).read_block(2)


def test_a_snapshot_re_dated_to_another_lsn_fails_to_open() -> None:
    """The LSN is in every block's associated data: a snapshot relabelled as another moment (its header
    CRC and file digest recomputed) does not open."""
    blob = bytearray(snapshot(fixed_entries()))
    struct.pack_into("<Q", blob, 32, 8)
    assert FIXED.unpack_from(blob)[5] == 8
    with pytest.raises(CorruptFile, match="fails its authentication tag"):
        SnapshotReader(BytesSource(reseal_snapshot(bytes(blob)), "s.snap"), keys=KEYS)


entries_strategy = st.dictionaries(st.binary(min_size=1, max_size=24), st.tuples(
    st.binary(max_size=300), st.none() | st.integers(0, 2**62)), max_size=60)


@given(entries_strategy, st.sampled_from([64, 300, 4096]), st.booleans())
def test_the_sealed_reader_reads_what_the_plaintext_reader_reads(
        state: dict[bytes, tuple[bytes, int | None]], block_size: int, compress: bool) -> None:
    entries = [(k, v, e) for k, (v, e) in sorted(state.items())]
    sealed = snapshot(entries, block_size=block_size, compress=compress)
    plain = snapshot(entries, keys=None, block_size=block_size, compress=compress)
    assert read_all(sealed) == read_all(plain, None) == entries
    sealed_reader = SnapshotReader(BytesSource(sealed, "s.snap"), keys=KEYS)
    sealed_reader.verify()
    plain_reader = SnapshotReader(BytesSource(plain, "p.snap"))
    assert sealed_reader.footer.state_digest == plain_reader.footer.state_digest
    for key in list(state)[:5]:
        assert sealed_reader.get(key) == plain_reader.get(key)


def test_the_backup_api_refuses_a_sealed_snapshot_as_sealed_not_damaged(tmp_path: Path) -> None:
    """`pitr.backup.verify` and `restore` take no key: a sealed snapshot is `WrongKey` pointing to the
    commands that take one, never "damaged" and never a restore."""
    path = tmp_path / "snapshots" / "00000000000000000007-20260101T000000Z.snap"
    path.parent.mkdir()
    path.write_bytes(snapshot(fixed_entries()))
    dest = tmp_path / "restored"

    async def attempts() -> None:
        with pytest.raises(WrongKey, match="sealed snapshot of an encrypted repository"):
            await backup.verify(str(path))
        with pytest.raises(WrongKey, match="sealed snapshot"):
            await backup.restore(str(path), dest=str(dest))

    trio.run(attempts)
    assert not dest.exists()
