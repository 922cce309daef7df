"""The state digest's hot loops over snapshot entries, with their pure-Python references.

A snapshot's state digest is the sum of one BLAKE3-256 per entry (docs/format.md, "Snapshot"), so
a million-key state costs a million hashes: through the Python binding each costs more than the
hashing itself. The compiled twins in `segments._snapshot_codec` (Cython over a C BLAKE3,
segments/_blake3_c.h, built at install as `segments._block_scan` is) do the same work in one C
loop per batch:

- `digest_terms`: the unreduced sum of the entries' terms (the writer, the restore receipt, the
  state digest of a store);
- `check_encoded`: a run of entry encodings, each checked for its own layout and limits and
  for sorting strictly after the one before, summed (the snapshot writer);
- `scan_block`: a decompressed snapshot block's entries walked as `SnapshotReader.entry_spans`
  walks them, checked in strictly increasing key order, summed, and with `decode` returned as
  (key, change) pairs (full verification, and a restore that checks its base as it reads it);
- `block_terms`: the same block's terms alone, without the interpreter's lock (a read-ahead
  thread hashes one block while the decoding of the one before goes on);
- `merge_live`: a restore's base entries, already in key order, merged with the sorted changes
  the log made after it into the rows of the restored state (no dictionary of every key, no
  sort of them).

The names without the suffix are the compiled ones when the extension is built; without it, the
references after one warning, and a run under CI (`CI=true`) refuses to start. A status other
than `OK` only says where the first bad entry is: the caller asks the reference decoder
(`SnapshotReader.entry_spans`) why, so both paths give the same message.
tests/segments/test_snapshot_codec.py holds the two equal, damage included.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Literal, TypeAlias

from blake3 import blake3

from segments import record as rec
from segments.block_replay import Rows, live_rows_reference
from segments.compiled import compiled_module
from segments.fold import Change

OK = 0
DAMAGED = 1  # an entry does not fit its block (or its encoding), or stray bytes follow the last one
OUT_OF_ORDER = 2  # a key does not sort strictly after the one before it

_HEAD = struct.Struct("<BII")  # u8 flags | u32 key_len | u32 value_len: segments.snapshot's ENTRY
_EXPIRY = struct.Struct("<q")
_FLAG_EXPIRY = 0x01

CheckResult: TypeAlias = tuple[int, int, int, int, "bytes | None"]
"""(status, index of the first bad entry or -1, sum of the terms, logical bytes, last key)."""
ScanResult: TypeAlias = tuple[int, int, int, int, "bytes | None", "bytes | None", "list[tuple[bytes, Change]] | None"]
"""(status, index of the first bad entry or -1, sum of the terms, logical bytes, first key, last key,
(key, change) per entry with `decode`)."""


def blake3_256_reference(data: bytes) -> bytes:
    """BLAKE3-256 of `data` (the compiled twin is the C hash the other loops use)."""
    return blake3(data).digest()


def digest_terms_reference(encoded: Iterable[bytes]) -> int:
    """The sum of the entries' state-digest terms (`segments.snapshot.encoded_digest`), unreduced.

    One hasher is reset between entries: creating a blake3 object costs more than hashing an
    entry of a hundred bytes."""
    hasher = blake3()
    update, digest, reset = hasher.update, hasher.digest, hasher.reset
    digests: list[bytes] = []
    append = digests.append
    for data in encoded:
        update(data)
        append(digest())
        reset()
    little: Iterable[Literal["little"]] = ["little"] * len(digests)
    return sum(map(int.from_bytes, digests, little))


def check_encoded_reference(encoded: list[bytes], previous: bytes | None) -> CheckResult:
    """Check entry encodings in order: each exactly its layout (flags 0 or 1, key and value within
    their limits, nothing after the value) and its key strictly after the one before (`previous`,
    then each other). Returns the sum of their terms, their logical bytes and the last key."""
    total = logical = 0
    after, last = previous, previous  # a refusal returns `previous` as given
    for index, data in enumerate(encoded):
        if len(data) < _HEAD.size or data[0] > _FLAG_EXPIRY:
            return DAMAGED, index, 0, 0, after
        flags, klen, vlen = _HEAD.unpack_from(data)
        head = _HEAD.size + (8 if flags else 0)
        if klen > rec.MAX_KEY or vlen > rec.MAX_VALUE or len(data) != head + klen + vlen:
            return DAMAGED, index, 0, 0, after
        key = data[head : head + klen]
        if last is not None and key <= last:
            return OUT_OF_ORDER, index, 0, 0, after
        last = key
        total += int.from_bytes(blake3(data).digest(), "little")
        logical += klen + vlen
    return OK, -1, total, logical, last


def scan_block_reference(raw: bytes, entry_count: int, previous: bytes | None, decode: bool,
                         terms: bool = True) -> ScanResult:
    """Walk the `entry_count` entries of a decompressed snapshot block as `SnapshotReader.entry_spans`
    does (each fits what remains, nothing after the last), each key strictly after the one before
    (`previous`, then each other); sum their terms (each entry's bytes as they are in the block)
    and their logical bytes (without `terms`, the sum is left at 0: `block_terms` made it). With
    `decode`, also every entry as (key, change): the value, or (value, expiry)."""
    pos, end = 0, len(raw)
    total = logical = 0
    first: bytes | None = None
    out: list[tuple[bytes, Change]] | None = [] if decode else None
    for index in range(entry_count):
        start = pos
        if end - pos < _HEAD.size:
            return DAMAGED, index, 0, 0, None, None, None
        flags, klen, vlen = _HEAD.unpack_from(raw, pos)
        head = _HEAD.size + (8 if flags & _FLAG_EXPIRY else 0)
        if end - pos < head or klen + vlen > end - pos - head:
            return DAMAGED, index, 0, 0, None, None, None
        pos += head
        key = raw[pos : pos + klen]
        if previous is not None and key <= previous:
            return OUT_OF_ORDER, index, 0, 0, None, None, None
        previous = key
        if first is None:
            first = key
        value = raw[pos + klen : pos + klen + vlen]
        pos += klen + vlen
        if terms:
            total += int.from_bytes(blake3(raw[start:pos]).digest(), "little")
        logical += klen + vlen
        if out is not None:
            if flags & _FLAG_EXPIRY:
                out.append((key, (value, _EXPIRY.unpack_from(raw, start + _HEAD.size)[0])))
            else:
                out.append((key, value))
    if pos != end:
        return DAMAGED, entry_count, 0, 0, None, None, None
    return OK, -1, total, logical, first, previous, out


def block_terms_reference(raw: bytes, entry_count: int) -> tuple[int, int]:
    """(status, sum of the terms) of a block's entries, walked as `scan_block` walks them (bounds,
    nothing after the last) but without the key order, which `scan_block` checks: the hashing
    alone, so that a read-ahead thread can do it beside the decoding (the compiled twin releases
    the interpreter's lock)."""
    pos, end, total = 0, len(raw), 0
    for _ in range(entry_count):
        if end - pos < _HEAD.size:
            return DAMAGED, 0
        flags, klen, vlen = _HEAD.unpack_from(raw, pos)
        head = _HEAD.size + (8 if flags & _FLAG_EXPIRY else 0)
        if end - pos < head or klen + vlen > end - pos - head:
            return DAMAGED, 0
        stop = pos + head + klen + vlen
        total += int.from_bytes(blake3(raw[pos:stop]).digest(), "little")
        pos = stop
    return (OK, total) if pos == end else (DAMAGED, 0)


def merge_live_reference(blocks: Iterable[list[tuple[bytes, Change]]], changes: list[tuple[bytes, Change]],
                         cutoff_ns: int) -> Rows:
    """The rows of a base's entries (`blocks`, keys strictly increasing: ValueError if not) with
    `changes` (sorted by key, each key once) applied over them, as `block_replay.live_rows` gives
    them for the merged state: in key order, deletes left out, puts expired at the cutoff counted."""
    merged: dict[bytes, Change] = {}
    last: bytes | None = None
    for entries in blocks:
        for key, change in entries:
            if last is not None and key <= last:
                raise ValueError(f"base keys out of order: {key!r} after {last!r}")
            last = key
            merged[key] = change
    merged.update(changes)
    return live_rows_reference(merged, cutoff_ns)


Blake3 = Callable[[bytes], bytes]
DigestTerms = Callable[[Iterable[bytes]], int]
CheckEncoded = Callable[[list[bytes], "bytes | None"], CheckResult]
ScanBlock = Callable[[bytes, int, "bytes | None", bool, bool], ScanResult]
BlockTerms = Callable[[bytes, int], tuple[int, int]]
MergeLive = Callable[[Iterable[list[tuple[bytes, Change]]], list[tuple[bytes, Change]], int], Rows]


def _load() -> tuple[Blake3, DigestTerms, CheckEncoded, ScanBlock, BlockTerms, MergeLive, bool]:
    compiled = compiled_module("segments._snapshot_codec", 'snapshots and state digests hash their entries in pure Python')
    if compiled is None:
        return (blake3_256_reference, digest_terms_reference, check_encoded_reference, scan_block_reference,
                block_terms_reference, merge_live_reference, False)
    return (compiled.blake3_256, compiled.digest_terms, compiled.check_encoded, compiled.scan_block,
            compiled.block_terms, compiled.merge_live, True)


blake3_256, digest_terms, check_encoded, scan_block, block_terms, merge_live, COMPILED = _load()
