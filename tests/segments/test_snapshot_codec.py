"""The state digest's hot loops: the compiled module (a C BLAKE3 and one loop per batch) gives what the
pure-Python references give, damaged input included; the references agree with the format's own
per-entry definitions (`encoded_digest`, `entry_spans`)."""

from __future__ import annotations

import struct

import pytest
from blake3 import blake3
from hypothesis import given
from hypothesis import strategies as st

from segments import _snapshot_codec as compiled  # built by `pip install -e .`: a missing build fails here
from segments import snapshot_codec as sc
from segments.block_replay import live_rows_reference
from segments.fold import Change
from segments.snapshot import encode_entry, encoded_digest

ENTRIES = st.lists(st.tuples(st.binary(min_size=1, max_size=40), st.binary(max_size=300),
                             st.none() | st.integers(-(2**63), 2**63 - 1)), max_size=40)


def sorted_entries(entries: list[tuple[bytes, bytes, int | None]]) -> list[tuple[bytes, bytes, int | None]]:
    return sorted({key: (key, value, exp) for key, value, exp in entries}.values())


@given(data=st.binary(max_size=5000) | st.integers(0, 40).map(lambda k: bytes(range(256)) * k))
def test_blake3_matches_the_binding(data: bytes) -> None:
    """Every length: one block, one chunk, chunk boundaries, and trees of several chunks (up to 10 KiB)."""
    assert compiled.blake3_256(data) == blake3(data).digest() == sc.blake3_256_reference(data)


def test_blake3_at_every_boundary() -> None:
    data = bytes((i * 7 + 3) & 0xFF for i in range(1024 * 33 + 5))
    for size in (0, 1, 63, 64, 65, 1023, 1024, 1025, 2048, 2049, 3072, 4096, 4097, 1024 * 17, 1024 * 32,
                 1024 * 33 + 5):
        assert compiled.blake3_256(data[:size]) == blake3(data[:size]).digest(), size


@given(entries=ENTRIES)
def test_digest_terms_equal_the_per_entry_sum(entries: list[tuple[bytes, bytes, int | None]]) -> None:
    encoded = [encode_entry(k, v, e) for k, v, e in entries]
    expected = sum(encoded_digest(data) for data in encoded)  # unreduced, as callers add it up
    assert compiled.digest_terms(encoded) == sc.digest_terms_reference(encoded) == expected


@given(entries=ENTRIES, previous=st.none() | st.binary(max_size=8), flip=st.integers(0, 2**20))
def test_check_encoded_matches_the_reference(entries: list[tuple[bytes, bytes, int | None]],
                                             previous: bytes | None, flip: int) -> None:
    encoded = [encode_entry(k, v, e) for k, v, e in sorted_entries(entries)]
    assert compiled.check_encoded(encoded, previous) == sc.check_encoded_reference(encoded, previous)
    if encoded:  # damage: a byte flipped, an entry cut short or stretched, two entries swapped
        i = flip % len(encoded)
        data = bytearray(encoded[i])
        data[flip % len(data)] ^= 1 + (flip >> 8) % 255
        for bad in (bytes(data), encoded[i][:-1], encoded[i] + b"x"):
            damaged = [*encoded[:i], bad, *encoded[i + 1:]]
            got = compiled.check_encoded(damaged, previous)
            assert got == sc.check_encoded_reference(damaged, previous)
        swapped = encoded[::-1]
        assert compiled.check_encoded(swapped, previous) == sc.check_encoded_reference(swapped, previous)


@given(entries=ENTRIES)
def test_check_encoded_sums_what_the_format_defines(entries: list[tuple[bytes, bytes, int | None]]) -> None:
    rows = sorted_entries(entries)
    encoded = [encode_entry(k, v, e) for k, v, e in rows]
    status, index, total, logical, last = compiled.check_encoded(encoded, None)
    assert (status, index) == (sc.OK, -1)
    assert total == sum(map(encoded_digest, encoded))
    assert logical == sum(len(k) + len(v) for k, v, _e in rows)
    assert last == (rows[-1][0] if rows else None)


def block_of(rows: list[tuple[bytes, bytes, int | None]]) -> bytes:
    return b"".join(encode_entry(k, v, e) for k, v, e in rows)


@given(entries=ENTRIES, previous=st.none() | st.binary(max_size=8), decode=st.booleans(),
       cut=st.integers(0, 2**20), extra=st.integers(-2, 2))
def test_scan_block_matches_the_reference(entries: list[tuple[bytes, bytes, int | None]], previous: bytes | None,
                                          decode: bool, cut: int, extra: int) -> None:
    rows = sorted_entries(entries)
    raw = block_of(rows)
    count = max(0, len(rows) + extra)
    for block in (raw, raw[: cut % (len(raw) + 1)], raw + b"\0" * (cut % 3), block_of(rows[::-1])):
        for terms in (True, False):
            assert compiled.scan_block(block, count, previous, decode, terms) == \
                sc.scan_block_reference(block, count, previous, decode, terms)
        assert compiled.block_terms(block, count) == sc.block_terms_reference(block, count)


@given(entries=ENTRIES)
def test_scan_block_reads_what_was_written(entries: list[tuple[bytes, bytes, int | None]]) -> None:
    rows = sorted_entries(entries)
    raw = block_of(rows)
    status, index, total, logical, first, last, out = compiled.scan_block(raw, len(rows), None, True)
    assert (status, index) == (sc.OK, -1)
    assert total == sum(encoded_digest(encode_entry(*row)) for row in rows)
    assert logical == sum(len(k) + len(v) for k, v, _e in rows)
    assert (first, last) == ((rows[0][0], rows[-1][0]) if rows else (None, None))
    assert out == [(k, v if e is None else (v, e)) for k, v, e in rows]


@given(entries=ENTRIES)
def test_block_terms_are_the_scans_terms(entries: list[tuple[bytes, bytes, int | None]]) -> None:
    """Hashed apart (in a read-ahead thread) or in the scan, a block's terms are the same sum."""
    rows = sorted_entries(entries)
    raw = block_of(rows)
    scanned = compiled.scan_block(raw, len(rows), None, False)
    assert compiled.block_terms(raw, len(rows)) == (sc.OK, scanned[2])
    assert compiled.scan_block(raw, len(rows), None, False, False)[2] == 0
    shuffled = block_of(rows[::-1])  # order is the scan's concern, not the hashing's
    assert compiled.block_terms(shuffled, len(rows)) == (sc.OK, scanned[2])


def test_scan_block_hashes_the_entry_bytes_as_they_are() -> None:
    """A flag bit other than the expiry changes the term (the digest then refuses the block)."""
    raw = bytearray(encode_entry(b"k", b"v", None))
    raw[0] |= 0x04
    term = compiled.scan_block(bytes(raw), 1, None, False)[2]
    assert term == int.from_bytes(blake3(bytes(raw)).digest(), "little") != encoded_digest(encode_entry(b"k", b"v", None))
    assert struct.unpack_from("<B", raw)[0] == 4


CHANGES = st.dictionaries(st.binary(min_size=1, max_size=40),
                          st.none() | st.binary(max_size=20) | st.tuples(st.binary(max_size=20),
                                                                         st.integers(-(2**63), 2**63 - 1)),
                          max_size=30)


def base_blocks(rows: list[tuple[bytes, bytes, int | None]], cuts: list[int]) -> list[list[tuple[bytes, Change]]]:
    """The base's (key, change) entries cut into blocks at `cuts` (as scan_block decodes them)."""
    entries: list[tuple[bytes, Change]] = [(k, v if e is None else (v, e)) for k, v, e in rows]
    bounds = sorted({0, len(entries), *(c % (len(entries) + 1) for c in cuts)})
    return [entries[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@given(entries=ENTRIES, changes=CHANGES, cuts=st.lists(st.integers(0, 100), max_size=4),
       cutoff=st.integers(-(2**63), 2**63 - 1) | st.sampled_from([0, 2**62]))
def test_merge_live_matches_the_reference(entries: list[tuple[bytes, bytes, int | None]],
                                          changes: dict[bytes, Change], cuts: list[int], cutoff: int) -> None:
    rows = sorted_entries(entries)
    blocks = base_blocks(rows, cuts)
    for k, _v, _e in rows[::3]:  # changes to some of the base's own keys too
        changes.setdefault(k, None)
    ordered = sorted(changes.items())
    got = compiled.merge_live(iter(blocks), ordered, cutoff)
    assert got == sc.merge_live_reference(iter(blocks), ordered, cutoff)
    merged = {k: c for block in blocks for k, c in block}
    merged.update(changes)
    assert got == live_rows_reference(merged, cutoff), "what the restore built from a dictionary before"


@given(entries=ENTRIES.filter(lambda e: len({k for k, _v, _x in e}) >= 2), changes=CHANGES)
def test_merge_live_refuses_a_base_out_of_order(entries: list[tuple[bytes, bytes, int | None]],
                                               changes: dict[bytes, Change]) -> None:
    rows = sorted_entries(entries)
    blocks = [base_blocks(rows, [])[0][::-1]]
    for fn in (compiled.merge_live, sc.merge_live_reference):
        with pytest.raises(ValueError, match="base keys out of order"):
            fn(iter(blocks), sorted(changes.items()), 0)
