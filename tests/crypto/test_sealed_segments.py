"""Sealed archive segments (docs/format.md, "Encryption"): the records read back only through the
repository's keys, the file holds none of the keys and values written, and an adversary who knows the
format but not the key (rewriting blocks, swapping them, forging a plaintext segment, and recomputing
every unkeyed checksum each time) is caught, naming the file."""

from __future__ import annotations

import io
import random
import struct

import pytest

from pitr.crypto import DataKey
from segments import BytesSource, CorruptFile, SegmentReader, chain, genesis, read_meta
from segments import record as rec
from segments import segment_format as fmt
from segments.block_seal import SealedFile, SegmentKeys
from segments.checked_runs import checked_runs
from segments.merge import merge_segments
from segments.segment_reader import verify_segment
from segments.segment_writer import seal_segment
from tests.fuzz.reseal import reseal_segment
from tests.segments.strategies import STORE_ID

NAME = "segments/00000000000000000001-00000000000000000060.seg"


def secret_records(rng: random.Random, first_lsn: int, count: int) -> list[rec.Record]:
    """Commits with random (incompressible) keys and values, so plaintext zstd frames hold them verbatim."""
    return [rec.Record(lsn, 1_795_961_387_000_000_000 + 1000 * lsn,
                       (rec.put(rng.randbytes(16), rng.randbytes(48)),), None)
            for lsn in range(first_lsn, first_lsn + count)]


def sealed(records: list[rec.Record], keys: SegmentKeys | None, prev: bytes | None = None) -> bytes:
    buf = b"".join(rec.encode_record(r.lsn, r.ts_ns, r.ops) for r in records)
    spans = list(rec.scan_spans(buf))
    out = io.BytesIO()
    seal_segment(out, STORE_ID, genesis(STORE_ID) if prev is None else prev, buf, spans, spans[-1].ts_ns,
                 block_size=10 * len(rec.encode_record(records[0].lsn, records[0].ts_ns, records[0].ops)) - 1,
                 keys=keys)
    return out.getvalue()


def secrets_of(records: list[rec.Record]) -> list[bytes]:
    return [part for r in records for op in r.ops for part in (op.key, op.value or b"")]


def test_round_trip_through_the_keys(random_seed: int) -> None:
    rng = random.Random(random_seed)
    keys = DataKey.new().segment_keys()
    records = secret_records(rng, 1, 60)
    blob = sealed(records, keys)
    meta = read_meta(BytesSource(blob, NAME))  # the quick check needs no key
    assert meta.header.salt is not None
    assert len(meta.index) == 6
    assert blob[8:10] == struct.pack("<H", fmt.SEALED_VERSION)
    reader = SegmentReader(BytesSource(blob, NAME), keys=keys)
    reader.verify()
    assert list(reader.iter_records()) == records
    verify_segment(BytesSource(blob, NAME), meta, keys=keys)
    runs = list(checked_runs(reader, 0, len(meta.index), verify=True))
    assert b"".join(b for run in runs for b in run.blocks) == b"".join(
        rec.encode_record(r.lsn, r.ts_ns, r.ops) for r in records)


def test_no_key_or_value_is_in_the_file_and_the_digests_are_keyed(random_seed: int) -> None:
    rng = random.Random(random_seed)
    records = secret_records(rng, 1, 60)
    plain = sealed(records, None)
    # the control: plaintext frames hold nearly all of them verbatim (zstd may match a few bytes of one)
    assert sum(s in plain for s in secrets_of(records)) >= 0.9 * len(secrets_of(records))
    blob = sealed(records, DataKey.new().segment_keys())
    found = [s for s in secrets_of(records) if s in blob]
    assert not found, f"{len(found)} keys or values of the records are in the sealed segment"
    buf = b"".join(rec.encode_record(r.lsn, r.ts_ns, r.ops) for r in records)
    assert chain.records_digest(buf) not in blob  # a guessed plaintext cannot be confirmed by its digest


def test_without_the_key_the_blocks_do_not_read(random_seed: int) -> None:
    blob = sealed(secret_records(random.Random(random_seed), 1, 60), DataKey.new().segment_keys())
    reader = SegmentReader(BytesSource(blob, NAME))
    with pytest.raises(SealedFile, match="needs the repository's key"):
        reader.read_block(0)
    with pytest.raises(SealedFile):
        reader.verify()
    with pytest.raises(CorruptFile, match="fails its authentication tag"):
        SegmentReader(BytesSource(blob, NAME), keys=DataKey.new().segment_keys()).read_block(0)


def test_a_plaintext_segment_in_an_encrypted_repository_is_refused(random_seed: int) -> None:
    """The forgery needing no key at all: a well-formed plaintext segment, every checksum valid."""
    blob = sealed(secret_records(random.Random(random_seed), 1, 60), None)
    with pytest.raises(CorruptFile, match="not sealed, but the repository is encrypted") as err:
        SegmentReader(BytesSource(blob, NAME), keys=DataKey.new().segment_keys())
    assert err.value.path == NAME
    with pytest.raises(CorruptFile, match="not sealed"):
        verify_segment(BytesSource(blob, NAME), read_meta(BytesSource(blob, NAME)), keys=DataKey.new().segment_keys())


def swapped(blob: bytes, a: int, b: int) -> bytes:
    """The segment with stored blocks `a` and `b` exchanged, the index rewritten to tile them and every
    unkeyed checksum recomputed (each block's CRC, the tables CRC, the file digest)."""
    meta = read_meta(BytesSource(blob))
    stored = [blob[e.offset:e.offset + e.compressed_size] for e in meta.index]
    stored[a], stored[b] = stored[b], stored[a]
    out = bytearray(blob[:fmt.HEADER_SIZE])
    index = []
    for entry, data in zip(meta.index, stored, strict=True):
        index.append(fmt.BlockEntry(entry.first_lsn, entry.first_ts_ns, len(out), len(data), entry.raw_size,
                                    entry.record_count, 0))
        out += data
    t = meta.trailer
    fields = (len(out), len(index), len(meta.pieces), t.last_lsn, t.last_ts_ns, t.record_count,
              t.complete_through_ns, t.raw_bytes)
    out += fmt.encode_tail(index, meta.pieces, fields, t.chain_digest)
    out += bytes(32) + fmt.END_MAGIC
    return reseal_segment(bytes(out))


def test_swapped_blocks_with_every_checksum_recomputed_are_caught(random_seed: int) -> None:
    keys = DataKey.new().segment_keys()
    blob = swapped(sealed(secret_records(random.Random(random_seed), 1, 60), keys), 1, 2)
    read_meta(BytesSource(blob, NAME))  # every unkeyed check passes
    with pytest.raises(CorruptFile, match="sealed block 1 fails its authentication tag") as err:
        SegmentReader(BytesSource(blob, NAME), keys=keys).verify()
    assert err.value.path == NAME
    assert err.value.lsn == 11
    with pytest.raises(CorruptFile, match="sealed block 1 fails") as err:
        verify_segment(BytesSource(blob, NAME), read_meta(BytesSource(blob, NAME)), keys=keys)
    reader = SegmentReader(BytesSource(blob, NAME), keys=keys)
    with pytest.raises(CorruptFile, match="block 1 fails"):
        list(checked_runs(reader, 0, 6, verify=False))  # what a restore reads


def test_a_rewritten_block_with_every_checksum_recomputed_is_caught(random_seed: int) -> None:
    rng = random.Random(random_seed)
    keys = DataKey.new().segment_keys()
    blob = bytearray(sealed(secret_records(rng, 1, 60), keys))
    entry = read_meta(BytesSource(bytes(blob))).index[3]
    blob[entry.offset + rng.randrange(entry.compressed_size)] ^= 1 << rng.randrange(8)
    forged = reseal_segment(bytes(blob))
    read_meta(BytesSource(forged, NAME))
    with pytest.raises(CorruptFile, match="sealed block 3 fails its authentication tag"):
        SegmentReader(BytesSource(forged, NAME), keys=keys).verify()


def test_a_block_moved_from_another_segment_is_caught(random_seed: int) -> None:
    """Two segments of the same LSN range (another history's file, or an older copy): a block of one
    put in the other's place, everything recomputed, does not open (another salt, so another key)."""
    rng = random.Random(random_seed)
    keys = DataKey.new().segment_keys()
    records = secret_records(rng, 1, 60)
    mine, theirs = sealed(records, keys), sealed(records, keys)
    entry = read_meta(BytesSource(mine)).index[0]
    d = bytearray(mine)
    d[entry.offset:entry.offset + entry.compressed_size] = theirs[entry.offset:entry.offset + entry.compressed_size]
    with pytest.raises(CorruptFile, match="sealed block 0 fails"):
        SegmentReader(BytesSource(reseal_segment(bytes(d)), NAME), keys=keys).verify()


def test_a_forged_piece_digest_with_the_chain_recomputed_is_caught(random_seed: int) -> None:
    """The keyed records digest: a forger who recomputes the chain over a digest of its choosing passes
    the quick check, and full verification (which knows the key) refuses it."""
    keys = DataKey.new().segment_keys()
    blob = bytearray(sealed(secret_records(random.Random(random_seed), 1, 60), keys))
    t0 = len(blob) - fmt.TRAILER_SIZE
    index_offset, block_count = struct.unpack_from("<QI", blob, t0)
    piece_at = index_offset + block_count * fmt.INDEX_ENTRY.size + 16
    blob[piece_at:piece_at + 32] = bytes(32)
    forged = reseal_segment(bytes(blob))
    read_meta(BytesSource(forged, NAME))
    with pytest.raises(CorruptFile, match="records digest of LSNs 1..60 does not match"):
        SegmentReader(BytesSource(forged, NAME), keys=keys).verify()


def test_merged_sealed_segments_stay_sealed_and_keep_the_chain(random_seed: int) -> None:
    rng = random.Random(random_seed)
    keys = DataKey.new().segment_keys()
    first, second = secret_records(rng, 1, 30), secret_records(rng, 31, 30)
    a = sealed(first, keys)
    b = sealed(second, keys, prev=read_meta(BytesSource(a)).chain_digest)
    readers = [SegmentReader(BytesSource(x), keys=keys) for x in (a, b)]
    out = io.BytesIO()
    merged = merge_segments(readers, out, keys=keys)
    assert merged.chain_digest == readers[1].meta.chain_digest
    blob = out.getvalue()
    assert read_meta(BytesSource(blob)).header.salt is not None
    reader = SegmentReader(BytesSource(blob, NAME), keys=keys)
    reader.verify()
    assert list(reader.iter_records()) == first + second
    assert not [s for s in secrets_of(first + second) if s in blob]
    with pytest.raises(ValueError, match="never merged"):
        merge_segments([SegmentReader(BytesSource(sealed(first, None)))], io.BytesIO(), keys=keys)


@pytest.mark.parametrize("full", [False, True])
def test_verify_names_a_plaintext_segment_under_keys_quick_or_full(random_seed: int, full: bool) -> None:
    from pitr.verify.checks import check_segment

    blob = sealed(secret_records(random.Random(random_seed), 1, 60), None)
    meta, finding = check_segment(NAME, BytesSource(blob, NAME), full=full, keys=DataKey.new().segment_keys())
    assert meta is None
    assert finding is not None
    assert finding.file == NAME
    assert "not sealed, but the repository is encrypted" in finding.message
    assert check_segment(NAME, BytesSource(blob, NAME), full=full)[1] is None  # in a plaintext repository: fine
