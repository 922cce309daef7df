"""Encoding and hashing snapshot entries a batch at a time, in C-level loops.

`SnapshotWriter.add` encodes and hashes one entry per call; a state of a
million keys then spends most of its time in the interpreter. `encode_entries`
produces the same bytes for a whole batch with `map` over C functions (no
Python bytecode per entry), and `digest_terms` hashes them in one compiled
loop (`segments.snapshot_codec`).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from itertools import repeat
from operator import add, lt

from segments import record as rec
from segments.snapshot_codec import digest_terms as _digest_terms

# u8 flags | u32 key_len | u32 value_len [| i64 expires_at_ns]: segments.snapshot's ENTRY (docs/format.md)
_HEADER = struct.Struct("<BII")
_HEADER_EXPIRY = struct.Struct("<BIIq")
_FLAG_EXPIRY = 0x01


def _encode_entry(key: bytes, value: bytes, expires_at_ns: int | None) -> bytes:
    if expires_at_ns is None:
        return _HEADER.pack(0, len(key), len(value)) + key + value
    return _HEADER_EXPIRY.pack(_FLAG_EXPIRY, len(key), len(value), expires_at_ns) + key + value


def encode_entries(keys: Sequence[bytes], values: Sequence[bytes], expiries: Sequence[int | None]
                   ) -> list[bytes]:
    """Every entry's encoding (`segments.snapshot.encode_entry`), in order."""
    if expiries.count(None) == len(expiries):
        heads = map(_HEADER.pack, repeat(0), map(len, keys), map(len, values))
        return list(map(add, map(add, heads, keys), values))
    return list(map(_encode_entry, keys, values, expiries))


def digest_terms(encoded: Sequence[bytes]) -> int:
    """The sum of the entries' state-digest terms (`segments.snapshot.encoded_digest`), unreduced:
    one C loop over a C BLAKE3 when `segments._snapshot_codec` is built (`segments.snapshot_codec`
    holds the reference)."""
    return _digest_terms(encoded)


def batch_in_order(keys: Sequence[bytes], after: bytes | None) -> bool:
    """Whether the keys increase strictly, starting after `after`, and fit the key limit."""
    if not keys or (after is not None and keys[0] <= after):
        return False
    return all(map(lt, keys, keys[1:])) and max(map(len, keys)) <= rec.MAX_KEY
