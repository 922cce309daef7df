"""`verify_blocks`, the one-read full check of a segment, against `SegmentReader.verify`, its reference.

The fast path checks each block's commit records in one loop and hands any
block it would refuse to the reference checks, which name the damage. These
tests hold the two equal: the same files pass, and a damaged file fails both
with the same reason, file, offset and LSN.
"""

from __future__ import annotations

import io
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segments import BytesSource, CorruptFile, SegmentBuilder, SegmentReader, SegmentsError, chain, read_meta
from segments import record as rec
from segments.segment_reader import verify_blocks, verify_segment
from tests.fuzz.reseal import mutate_bytes, rebuild_segment, reseal_segment
from tests.segments.strategies import STORE_ID, encode_all, plain_records, record_runs, seal

NAME = "00000000000000000001-00000000000000000060.seg"


def outcome(check: object, data: bytes) -> tuple[str, ...] | None:
    """None when the check passes, else what its error says and where."""
    try:
        source = BytesSource(data, NAME)
        meta = read_meta(source)
        if check == "reference":
            SegmentReader(source, meta).verify()
        else:
            verify_segment(source, meta)
    except CorruptFile as exc:
        return (type(exc).__name__, exc.reason, str(exc.path), str(exc.offset), str(exc.lsn), str(exc.hint))
    except SegmentsError as exc:
        return (type(exc).__name__, str(exc))
    return None


def agree(data: bytes, what: str) -> tuple[str, ...] | None:
    fast, reference = outcome("fast", data), outcome("reference", data)
    assert fast == reference, f"{what}: verify_segment {fast} but SegmentReader.verify {reference}"
    return fast


@settings(deadline=None)
@given(records=record_runs(min_size=1, max_size=40), block_size=st.integers(32, 1024))
def test_an_intact_segment_passes_and_yields_every_block(records: list[rec.Record], block_size: int) -> None:
    blob, _ = seal(records, block_size=block_size)
    assert agree(blob, "intact") is None
    source = BytesSource(blob, NAME)
    meta = read_meta(source)
    reader = SegmentReader(source, meta)
    blocks = list(verify_blocks(source, meta, run_bytes=block_size))  # several runs of blocks
    assert [b.index for b in blocks] == list(range(len(meta.index)))
    for block in blocks:
        raw = reader.read_block(block.index)
        spans = reader.block_spans(block.index, raw)
        assert block.raw == raw
        assert block.ends == [s.end for s in spans]
        assert block.last_ts_ns == spans[-1].ts_ns


def test_damaged_segments_fail_as_the_reference_does(random_seed: int) -> None:
    """Raw damage, re-sealed damage and rebuilt blocks (records changed, CRCs and digests recomputed)."""
    rng = random.Random(random_seed)
    records = plain_records(1, 60, value_size=30) + [
        rec.Record(61, 1_795_961_387_000_100_000, (rec.put(b"ttl", b"v", 1_795_961_400_000_000_000),
                                                   rec.delete(b"gone")), 7)]
    blob, _ = seal(records, block_size=400)
    refused = 0
    for case in range(300):
        mode = rng.choice(["raw", "reseal", "rebuild"])
        if mode == "rebuild":
            data, what = rebuild_segment(rng, blob)
        else:
            data, what = mutate_bytes(rng, blob)
            data = reseal_segment(data) if mode == "reseal" else data
        refused += agree(data, f"seed {random_seed} case {case}: {mode} {what}") is not None
    assert refused > 150  # the damage reached the checks


def test_a_flipped_record_byte_is_named_with_its_lsn_range() -> None:
    """A byte changed in the middle of a block, with its record CRC and the block recomputed: only the
    piece's records digest can tell, and the error names the file and the piece's LSN range."""
    records = plain_records(1, 60, value_size=30)
    blob, sealed = seal(records, block_size=400)
    meta = read_meta(BytesSource(blob, NAME))
    assert len(meta.index) >= 4
    rng = random.Random(0)
    while True:  # rebuild_segment draws its change; keep one that changes a value byte, CRCs repaired
        data, what = rebuild_segment(rng, blob, digests=False)
        found = outcome("reference", data)
        if "+record crcs" in what and found is not None and "records digest" in found[1]:
            break
    with pytest.raises(CorruptFile) as caught:
        verify_segment(BytesSource(data, NAME), read_meta(BytesSource(data, NAME)))
    assert caught.value.path == NAME
    assert caught.value.reason == "records digest of LSNs 1..60 does not match"
    assert caught.value.lsn == sealed.first_lsn


def test_a_damaged_block_is_named_by_offset_and_first_lsn() -> None:
    records = plain_records(1, 60, value_size=30)
    blob, _ = seal(records, block_size=400)
    meta = read_meta(BytesSource(blob, NAME))
    victim = meta.index[len(meta.index) // 2]
    damaged = bytearray(blob)
    damaged[victim.offset + victim.compressed_size // 2] ^= 0x20
    with pytest.raises(CorruptFile) as caught:
        verify_segment(BytesSource(bytes(damaged), NAME), meta)
    assert (caught.value.path, caught.value.offset, caught.value.lsn) == (NAME, victim.offset, victim.first_lsn)
    assert "CRC-32C" in caught.value.reason


def test_records_the_builder_trusted_are_refused_by_both() -> None:
    """Commits out of LSN order, sealed by a builder that trusts its caller's spans."""
    base = plain_records(1, 6)
    shuffled = [base[0], base[2]._replace(ts_ns=base[1].ts_ns), base[1]._replace(ts_ns=base[2].ts_ns), *base[3:]]
    buf = encode_all(shuffled)
    out = io.BytesIO()
    builder = SegmentBuilder(out, STORE_ID, chain.genesis(STORE_ID))
    builder.add_piece(buf, list(rec.scan_spans(buf)))
    builder.finish(0)
    found = agree(out.getvalue(), "out of order")
    assert found is not None
    assert "expected LSN 2, found 3" in found[1]


def test_every_byte_of_a_small_segment_is_covered() -> None:
    """A change to any byte, the reserved trailer word included (only the file digest covers it)."""
    blob, sealed = seal(plain_records(1, 6, value_size=5), block_size=64)
    assert len(sealed.blocks) >= 3
    for offset in range(len(blob)):
        damaged = bytearray(blob)
        damaged[offset] ^= 0x04
        assert agree(bytes(damaged), f"byte {offset}") is not None, f"a change at offset {offset} passed"
