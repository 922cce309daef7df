"""A restore's rows made in key order and read back (`pitr.datadir.build`): the pure-Python
references are the specification; the compiled module gives the same rows, finds the same first
bad row and sums the same state digest, with its own BLAKE3 of one chunk checked against the
blake3 package on every length it hashes itself."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pitr.datadir import _build as compiled  # type: ignore[attr-defined]  # built by `pip install -e .`
from pitr.datadir import build
from pitr.datadir.entries import encode_value
from segments.fold import Change
from segments.snapshot import encode_entry, encoded_digest

KEYS = st.binary(min_size=1, max_size=12)
EXPIRY = st.sampled_from([-1, 0, 1]) | st.integers(-(1 << 63), (1 << 63) - 1)  # some at the cutoff
CHANGES = st.none() | st.binary(max_size=24) | st.tuples(st.binary(max_size=24), EXPIRY)
CUTOFFS = st.sampled_from([0, -1, 1, None]) | st.integers(-(1 << 63), (1 << 63) - 1)  # None: nothing expires


@given(st.dictionaries(KEYS, CHANGES, max_size=40), CUTOFFS)
def test_compiled_rows_equal_the_reference(merged: dict[bytes, Change], cutoff: int | None) -> None:
    assert compiled.sorted_rows(dict(merged), cutoff) == build.sorted_rows_reference(dict(merged), cutoff)


def test_the_rows_refuse_what_is_not_a_change() -> None:
    for bad in ({b"a": 1}, {b"a": (b"v",)}, {b"a": (1, 2)}, {"a": b"v"}):
        for sort in (compiled.sorted_rows, build.sorted_rows_reference):
            with pytest.raises(TypeError):
                sort(dict(bad), 0)  # type: ignore[arg-type]


def damage(draw: st.DrawFn, raw: bytes) -> bytes:
    """`raw` with one kind of damage: a flipped bit, a cut, a bad flags byte."""
    how = draw(st.sampled_from(["flip", "cut", "flags"]))
    if how == "flip":
        at = draw(st.integers(0, len(raw) - 1))
        return raw[:at] + bytes([raw[at] ^ (1 << draw(st.integers(0, 7)))]) + raw[at + 1:]
    if how == "cut":
        return raw[:draw(st.integers(0, len(raw) - 1))]
    return bytes([draw(st.integers(2, 255))]) + raw[1:]


@st.composite
def read_backs(draw: st.DrawFn) -> tuple[list[tuple[bytes, bytes]], list[bytes], list[build.Live], int, bytes]:
    """Rows read back against the entries of a map: mostly intact, some with a damaged row, a row of
    another value or expiry (well-formed), rows swapped, entries out of order, rows missing or
    extra, a batch starting later."""
    merged = draw(st.dictionaries(KEYS, st.binary(max_size=24) | st.tuples(st.binary(max_size=24), EXPIRY),
                                  max_size=30))
    rows, keys, changes, _expiring, _expired = build.sorted_rows_reference(merged, -(1 << 63))
    batch = list(rows)
    how = draw(st.sampled_from(["intact", "intact", "damage", "other", "swap", "unordered", "missing", "extra"]))
    if batch and how == "damage":
        at = draw(st.integers(0, len(batch) - 1))
        batch[at] = (batch[at][0], damage(draw, batch[at][1]))
    elif batch and how == "other":
        at = draw(st.integers(0, len(batch) - 1))
        key = batch[at][0]
        batch[at] = (key, encode_value(key, draw(st.binary(max_size=24)), draw(st.none() | EXPIRY)))
    elif len(batch) > 1 and how == "swap":
        at = draw(st.integers(0, len(batch) - 2))
        batch[at], batch[at + 1] = batch[at + 1], batch[at]
    elif len(batch) > 1 and how == "unordered":  # the rows are the entries, but the entries are out of order
        at = draw(st.integers(0, len(batch) - 2))
        for items in (batch, keys, changes):
            items[at], items[at + 1] = items[at + 1], items[at]  # type: ignore[assignment]
    elif batch and how == "missing":
        del batch[draw(st.integers(0, len(batch) - 1))]
    elif how == "extra":
        key = draw(KEYS)
        batch.append((key, encode_value(key, b"x", None)))
    at = draw(st.integers(0, len(batch))) if draw(st.integers(0, 3)) == 0 else 0
    previous = batch[at - 1][0] if at else b""
    return batch[at:], keys, changes, at, previous


@given(read_backs())
def test_compiled_read_back_equals_the_reference(
        case: tuple[list[tuple[bytes, bytes]], list[bytes], list[build.Live], int, bytes]) -> None:
    assert compiled.read_back(*case) == build.read_back_reference(*case)


@pytest.mark.parametrize("expires", [None, -(1 << 63), 12_345])
def test_the_compiled_blake3_equals_the_package_on_every_entry_length_to_a_chunk_and_past(expires: int | None) -> None:
    """Entries whose encoding is 9 (or 17) .. 1,100 bytes long, across the one-chunk (1,024 bytes)
    boundary where the compiled BLAKE3 (segments/_blake3_c.h) starts its tree, and a few much longer;
    longer than 1,024 the entry is encoded on the heap instead of the stack."""
    key = b"k"
    head = 1 + 17 if expires is not None else 1 + 9
    for length in [*range(head, 1101), 2048, 3073, 70_001]:
        value = bytes((i * 7 + length) & 0xFF for i in range(length - head))
        want = encoded_digest(encode_entry(key, value, expires))
        change: build.Live = value if expires is None else (value, expires)
        got = compiled.read_back([(key, encode_value(key, value, expires))], [key], [change], 0, b"")
        assert got == (-1, 0, want, key), length


def test_the_digest_sum_wraps_at_2_256() -> None:
    """Many terms: the compiled 256-bit sum carries between its limbs and wraps as the reference's."""
    rows, keys, changes, _e, _x = build.sorted_rows_reference({f"{i:05}".encode(): b"v" * (i % 50)
                                                               for i in range(3000)}, 0)
    got = compiled.read_back(rows, keys, changes, 0, b"")
    assert got == build.read_back_reference(rows, keys, changes, 0, b"")
    assert got[2] == sum(encoded_digest(encode_entry(k, v, None)) for k, v in zip(keys, changes,  # type: ignore
                                                                                  strict=True)) % (1 << 256)


@given(read_backs())
def test_compiled_check_and_hash_only_equals_the_reference(
        case: tuple[list[tuple[bytes, bytes]], list[bytes], list[build.Live], int, bytes]) -> None:
    """Without entries to compare with (the spilled build's receipt), the rows are checked and hashed."""
    batch, _keys, _changes, at, previous = case
    assert compiled.read_back(batch, None, None, at, previous) == build.read_back_reference(batch, None, None, at,
                                                                                            previous)


def test_the_hash_equals_the_reference_on_mixed_lengths() -> None:
    """Entries of different block counts in one read-back, short and long (a chunk and more) mixed."""
    import random

    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    for _round in range(20):
        merged: dict[bytes, Change] = {}
        for i in range(rng.randrange(1, 40)):
            value = rng.randbytes(rng.choice([0, 1, 40, 47, 48, 63, 64, 100, 500, 1000, 1007, 1008, 1009, 3000]))
            merged[f"k{i:03}".encode()] = value if rng.random() < 0.5 else (value, rng.randrange(-9, 9))
        rows, keys, changes, _e, _x = build.sorted_rows_reference(merged, None)
        want = build.read_back_reference(rows, keys, changes, 0, b"")
        assert compiled.read_back(rows, keys, changes, 0, b"") == want, seed
        assert compiled.read_back(rows, None, None, 0, b"") == want, seed


@pytest.mark.parametrize("bad", [{b"k" * 65_536: b"v"}, {"text": b"v"}])
def test_a_key_no_state_row_can_hold_is_refused_by_both(bad: dict[bytes, Change]) -> None:
    """A key longer than 65,535 bytes (OverflowError) or not bytes (TypeError): the same refusal from
    the compiled loop as from the reference, before any row is made."""
    with pytest.raises((OverflowError, TypeError)) as reference:
        build.sorted_rows_reference(bad, None)
    with pytest.raises(reference.type):
        compiled.sorted_rows(bad, None)
