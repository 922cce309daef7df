"""A restored state built whole: the merged map's rows made in key order, appended, then read back.

A restore whose base and changes fit in memory ends with one map of key -> change. `sorted_rows`
turns it into the state's data rows in key order (each encoded once, with its CRC-32C), with the
map's own keys and changes beside them; `StateDB.append_rows` appends the rows unhashed into the
empty state; `read_back_rows` then reads every row back through its checks, requires it to be
exactly the entry the map holds (key, value and expiry, byte for byte, none missing or extra) and
sums the state digest (BLAKE3 of each entry's snapshot encoding) of the rows read back, in one
pass. The restore receipt (`pitr.restore.receipt.receipt_of_append`) turns what it finds into a
refusal.

`sorted_rows` and `read_back` are the compiled twins in `pitr.datadir._build` (built at install,
with a BLAKE3 of one chunk in C, `_blake3_c.h`) when they are built, else the references below,
which state the rules one row at a time. tests/store/test_build_rows.py holds the two equal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, NamedTuple

import lmdb

from pitr.datadir.entries import RowDamage, decode_value, encode_value
from pitr.datadir.view import state_lmdb_error
from segments.compiled import compiled_module
from segments.fold import Change
from segments.snapshot import encode_entry, encoded_digest

if TYPE_CHECKING:
    from pitr.datadir.state import StateDB

MISMATCH = 1  # the row read back is not the entry the map holds
ROW_DAMAGED = 2  # the row fails its layout or its CRC-32C
OUT_OF_ORDER = 3  # the key does not sort after the one before it
READ_BATCH = 4096  # rows read back per compiled pass
_MOD = 1 << 256

Live = bytes | tuple[bytes, int]  # the change of a key that has a row
# (rows: (key, data row), keys, changes, expiring: (key, expiry), how many expired)
RowsResult = tuple[list[tuple[bytes, bytes]], list[bytes], list[Live], list[tuple[bytes, int]], int]
# (index of the first bad row or -1, MISMATCH | ROW_DAMAGED | OUT_OF_ORDER | 0, digest sum mod 2**256, last key)
ReadResult = tuple[int, int, int, bytes]


class SortedRows(NamedTuple):
    """A merged map as the rows of a fresh state, in key order (LMDB's: bytewise, a prefix first)."""

    rows: list[tuple[bytes, bytes]]  # (key, data row): what the append writes
    keys: list[bytes]  # the map's keys of those rows, in the same order
    changes: list[Live]  # and their changes: what each row must read back as
    expiring: list[tuple[bytes, int]]  # (key, expiry) of the rows that have one, in key order
    expired: int  # puts left out: their expiry is at or before the cutoff


def sorted_rows_reference(merged: dict[bytes, Change], cutoff_ns: int | None) -> RowsResult:
    """The rows of a state holding `merged` at the cutoff: deletes left out, puts whose expiry is at
    or before the cutoff counted and left out (with no cutoff, None, every put kept)."""
    rows: list[tuple[bytes, bytes]] = []
    keys: list[bytes] = []
    changes: list[Live] = []
    expiring: list[tuple[bytes, int]] = []
    expired = 0
    for key in sorted(merged):
        if type(key) is not bytes:
            raise TypeError(f"keys must be bytes, not {type(key).__name__}")
        if len(key) > 0xFFFF:
            raise OverflowError("a state key is longer than 65,535 bytes")
        change = merged[key]
        if change is None:
            continue
        if type(change) is bytes:
            rows.append((key, encode_value(key, change, None)))
        else:
            if type(change) is not tuple or len(change) != 2 or type(change[0]) is not bytes:
                raise TypeError(f"a change is bytes, (bytes, int) or None, not {change!r}")
            value, expires = change
            if cutoff_ns is not None and expires <= cutoff_ns:
                expired += 1
                continue
            rows.append((key, encode_value(key, value, expires)))
            expiring.append((key, expires))
        keys.append(key)
        changes.append(change)
    return rows, keys, changes, expiring, expired


def read_back_reference(batch: list[tuple[bytes, bytes]], keys: list[bytes] | None, changes: list[Live] | None,
                        at: int, previous: bytes) -> ReadResult:
    """Check rows read back, `batch`, against the entries `keys[at:]` / `changes[at:]` (rows past
    the entries are not looked at: the caller counts them). Each row must pass its checks, sort
    after `previous` and hold exactly the entry's key, value and expiry; the digest terms of the
    good rows are summed. Stops at the first bad row and says which and why. With `keys` None
    the rows are checked and hashed only."""
    total = 0
    for i, (key, raw) in enumerate(batch if keys is None else batch[:max(0, len(keys) - at)]):
        try:
            value, expires = decode_value(key, raw)
        except RowDamage:
            return i, ROW_DAMAGED, total, previous
        if key <= previous:
            return i, OUT_OF_ORDER, total, previous
        previous = key
        if keys is not None and changes is not None:
            want = changes[at + i]
            meant = (want, None) if type(want) is bytes else want
            if key != keys[at + i] or (value, expires) != meant:
                return i, MISMATCH, total, previous
        total = (total + encoded_digest(encode_entry(key, value, expires))) % _MOD
    return -1, 0, total, previous


@dataclass(frozen=True, slots=True)
class ReadBack:
    """What `read_back_rows` found: the rows read (up to the first bad one), the sum of their digest
    terms (unreduced), and the first bad row, if any (its index and key, and why)."""

    count: int
    digest_total: int
    bad: int = -1
    why: int = 0
    key: bytes | None = None


def read_back_rows(state: StateDB, built: SortedRows | None) -> ReadBack:
    """Read every data row of `state` back in key order against `built`'s entries (see the module);
    with `built` None, every row is checked (its layout, CRC-32C and key order) and hashed only."""
    keys, changes = (None, None) if built is None else (built.keys, built.changes)
    total = at = 0
    previous = b""  # below every key (keys are never empty)
    try:
        with state.env.begin(buffers=False) as txn:
            rows = iter(txn.cursor(state.data))
            while batch := list(islice(rows, READ_BATCH)):
                bad, why, part, previous = read_back(batch, keys, changes, at, previous)
                total += part
                if bad >= 0:
                    return ReadBack(at + bad, total, at + bad, why, batch[bad][0])
                if keys is not None and at + len(batch) > len(keys):  # more rows than entries
                    return ReadBack(len(keys), total, len(keys), MISMATCH, batch[len(keys) - at][0])
                at += len(batch)
    except lmdb.Error as exc:
        raise state_lmdb_error(exc, state.path, "read back the restored state") from exc
    return ReadBack(at, total)


SortRows = Callable[[dict[bytes, Change], int | None], RowsResult]
ReadBackBatch = Callable[[list[tuple[bytes, bytes]], list[bytes] | None, list[Live] | None, int, bytes], ReadResult]


def _load() -> tuple[SortRows, ReadBackBatch, bool]:
    compiled = compiled_module("pitr.datadir._build", 'restores build and read back their rows in pure Python')
    if compiled is None:
        return sorted_rows_reference, read_back_reference, False
    return compiled.sorted_rows, compiled.read_back, True


_sorted_rows, read_back, COMPILED = _load()


def sorted_rows(merged: dict[bytes, Change], cutoff_ns: int | None) -> SortedRows:
    """`merged` as the rows of a fresh state at the cutoff (compiled when built)."""
    return SortedRows._make(_sorted_rows(merged, cutoff_ns))
