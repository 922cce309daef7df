"""Full verification's block scan: the pure-Python reference is the specification, and the compiled
module gives the same results and the same refusals, damaged input included; its key-table entries
are the catalog's (`pitr.catalog.keytable`) for the same records."""

from __future__ import annotations

import hashlib
import random
import struct

import pytest
from crc32c import crc32c
from hypothesis import given
from hypothesis import strategies as st

from pitr.catalog.keytable import ENTRY_SIZE, table_entries
from pitr.repo.indexing import key_rows_of
from pitr.verify.repository import KEY_PERSON, key_table_person
from segments import BytesSource, CorruptFile, read_meta
from segments import _block_scan as compiled  # built by `pip install -e .`: a missing build fails here
from segments import block_scan as bs
from segments import record as rec
from segments.segment_reader import verify_blocks
from tests.segments.strategies import encode_all, record_runs, seal
from tests.segments.test_block_replay import damaged_blocks, single_put_runs
from tests.segments.test_record import checksummed_garbage

PERSONS = st.sampled_from([None, KEY_PERSON])
NAME = "00000000000000000001-00000000000000000005.seg"


def outcome(fn: bs.ScanBlock, buf: bytes, first_lsn: int, after_ts: int, person: bytes | None) -> tuple[object, ...]:
    """What one implementation does: its result, or the refusal it raises."""
    try:
        return ("scanned", fn(buf, first_lsn, after_ts, person))
    except CorruptFile as exc:
        return ("refused", exc.reason, exc.offset, exc.lsn, exc.hint)


@given(key=st.binary(max_size=400), person=st.binary(max_size=16))
def test_the_compiled_digest_is_blake2b_of_eight_bytes(key: bytes, person: bytes) -> None:
    want = hashlib.blake2b(key, digest_size=8, person=person).digest()
    assert bs.key_digest_reference(key, person) == want
    assert compiled.key_digest(key, person) == want


def test_the_digest_is_the_catalogs() -> None:
    assert key_table_person() == KEY_PERSON  # else verify would compare key by key: slower, never wrong


@given(records=st.one_of(record_runs(max_size=10), single_put_runs()), person=PERSONS)
def test_intact_blocks_scan_the_same_in_both_and_give_the_catalogs_entries(
        records: list[rec.Record], person: bytes | None) -> None:
    buf = encode_all(records)
    first, after = records[0].lsn, records[0].ts_ns - 1
    ref = outcome(bs.scan_block_reference, buf, first, after, person)
    assert outcome(compiled.scan_block, buf, first, after, person) == ref
    assert ref[0] == "scanned"
    count, first_ts, last_ts, ends, entries, gaps = ref[1]  # type: ignore[misc]
    spans = list(rec.scan_spans(buf))
    assert (count, first_ts, last_ts, ends) == (len(records), records[0].ts_ns, records[-1].ts_ns,
                                                [s.end for s in spans])
    if person is None:
        assert (entries, gaps) == (b"", [])
        return
    found: list[tuple[int, int]] = []
    rows = key_rows_of(buf, spans, found)
    assert gaps == [lsn for lsn, _before in found] == [r.lsn for r in records if r.gap]
    assert bs.sort_entries_reference(entries) == b"".join(table_entries(rows))
    assert compiled.sort_entries(entries) == b"".join(table_entries(rows))


@given(block=st.one_of(damaged_blocks(), checksummed_garbage().map(lambda d: (d, rec.U64.unpack_from(
    d, rec.LSN_OFFSET)[0], rec.MIN_I64))), person=PERSONS)
def test_damaged_blocks_are_refused_the_same_way_by_both(block: tuple[bytes, int, int], person: bytes | None) -> None:
    buf, first, after = block
    ref = outcome(bs.scan_block_reference, buf, first, after, person)
    assert outcome(compiled.scan_block, buf, first, after, person) == ref
    if ref[0] == "scanned" and person is not None:  # accepted: exactly what a decoder reads there
        records = list(rec.decode_records(buf))
        assert [r.lsn for r in records] == list(range(first, first + len(records)))


def test_a_flipped_byte_in_a_block_is_refused_by_both(random_seed: int) -> None:
    rng = random.Random(random_seed)
    records = [rec.Record(10 + i, 5_000 + i, (rec.put(b"key:%d" % i, b"v" * rng.randint(0, 30)),)) for i in range(20)]
    buf = encode_all(records)
    for _ in range(200):
        at = rng.randrange(len(buf))
        damaged = bytearray(buf)
        damaged[at] ^= 1 << rng.randrange(8)
        for person in (None, KEY_PERSON):
            ref = outcome(bs.scan_block_reference, bytes(damaged), 10, 4_999, person)
            assert ref[0] == "refused", f"byte {at} flipped passed the reference"
            assert outcome(compiled.scan_block, bytes(damaged), 10, 4_999, person) == ref


def test_operations_are_checked_when_entries_are_asked_for() -> None:
    """A record whose CRC is right but whose operation kind is unknown: the entries would name a kind
    no reader knows, so the scan that computes them refuses it (the framing-only scan does not look)."""
    data = bytearray(encode_all([rec.Record(1, 10, (rec.put(b"k", b"v"),))]))
    data[rec.HEADER_SIZE] = 7  # the operation's kind
    struct.pack_into("<I", data, 0, crc32c(bytes(data[4:])))
    for fn in (bs.scan_block_reference, compiled.scan_block):
        assert fn(bytes(data), 1, 9, None)[0] == 1
        with pytest.raises(CorruptFile, match="unknown operation kind 7"):
            fn(bytes(data), 1, 9, KEY_PERSON)


def test_a_commit_touching_a_key_twice_keeps_its_last_operation() -> None:
    record = rec.Record(3, 100, (rec.put(b"a", b"1"), rec.put(b"b", b"2"), rec.delete(b"a")))
    buf = encode_all([record])
    want = b"".join(table_entries([(b"a", 100, 3, rec.DELETE, False), (b"b", 100, 3, rec.PUT, False)]))
    for fn in (bs.scan_block_reference, compiled.scan_block):
        entries = fn(buf, 3, 99, KEY_PERSON)[4]
        assert len(entries) == 2 * ENTRY_SIZE
        assert bs.sort_entries_reference(entries) == want


entries_st = st.lists(st.tuples(st.sampled_from([b"\0" * 8, b"\xff" * 8, b"abcdefgh"]) | st.binary(min_size=8,
                                                                                                     max_size=8),
                                st.binary(min_size=17, max_size=17)), max_size=300)


@given(entries=entries_st)
def test_entries_sort_the_same_in_both(entries: list[tuple[bytes, bytes]]) -> None:
    joined = b"".join(a + b for a, b in entries)
    assert compiled.sort_entries(joined) == bs.sort_entries_reference(joined)


def test_a_partial_entry_is_refused_by_both() -> None:
    for fn in (bs.sort_entries_reference, compiled.sort_entries):
        with pytest.raises(ValueError, match="not whole"):
            fn(b"x" * (ENTRY_SIZE + 1))


def test_a_segment_starting_at_the_earliest_time_is_verified_not_a_traceback() -> None:
    """The time before the first commit does not fit 64 bits there: that block takes the reference."""
    records = [rec.Record(1 + i, rec.MIN_I64 + i, (rec.put(b"k%d" % i, b"v"),)) for i in range(5)]
    blob, _ = seal(records, block_size=64)
    source = BytesSource(blob, NAME)
    blocks = list(verify_blocks(source, read_meta(source), person=KEY_PERSON))
    assert sum(len(b.ends) for b in blocks) == 5
    with pytest.raises(OverflowError):
        compiled.scan_block(blocks[0].raw, 1, rec.MIN_I64 - 1, None)
