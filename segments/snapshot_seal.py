"""Sealed snapshots (snapshot version 2): what sealing changes in a snapshot file (docs/format.md,
"Sealed snapshots (snapshot version 2)").

A version 2 snapshot carries a random 32-byte salt after the fixed header;
each block is `sealed(i)` (segments.block_seal) of its stored bytes, with
`kind = 2` and the LSN range `lsn..lsn`, and every block's first LSN is the
snapshot's `lsn`. The block index keeps offsets, sizes, counts and CRCs in
the clear (the quick check needs no key) but no first keys: they, with the
state digest, are in the **key table**, sealed as block number
`block_count` and stored after the index entries:

    key table = state_digest (32 bytes) ‖ per block: u32 first_key_len ‖ first key

The footer's `state_digest` field is zero in version 2, so the file alone
confirms no guess of its contents.
"""

from __future__ import annotations

import struct

from segments import record as rec
from segments._errors import CorruptFile
from segments.block_seal import KIND_SNAPSHOT, TAG_BYTES, BlockPlace, BlockSealer, SegmentKeys

PLAIN_VERSION = 1
SEALED_VERSION = 2
SALT_BYTES = 32
DIGEST_BYTES = 32
_KEY_LEN = struct.Struct("<I")


def snapshot_sealer(keys: SegmentKeys, salt: bytes, lsn: int) -> BlockSealer:
    """The sealer of a version 2 snapshot at `lsn` whose header holds `salt`."""
    return keys.sealer(salt, BlockPlace(KIND_SNAPSHOT, lsn, lsn))


def encode_key_table(state_digest: bytes, first_keys: list[bytes]) -> bytes:
    """The plaintext of the key table: the state digest, then each block's first key."""
    return state_digest + b"".join(_KEY_LEN.pack(len(k)) + k for k in first_keys)


def decode_key_table(raw: bytes, block_count: int, *, path: str | None, offset: int) -> tuple[bytes, list[bytes]]:
    """(state digest, first keys) of an opened key table, every length checked against what remains."""
    if len(raw) < DIGEST_BYTES:
        raise CorruptFile("sealed snapshot key table is shorter than its state digest", path=path, offset=offset)
    keys: list[bytes] = []
    pos = DIGEST_BYTES
    for i in range(block_count):
        if len(raw) - pos < _KEY_LEN.size:
            raise CorruptFile(f"sealed snapshot key table ends before block {i}'s first key", path=path,
                              offset=offset)
        (klen,) = _KEY_LEN.unpack_from(raw, pos)
        pos += _KEY_LEN.size
        if klen > rec.MAX_KEY or klen > len(raw) - pos:
            raise CorruptFile(f"sealed snapshot key table: block {i}'s first key of {klen} bytes runs past it",
                              path=path, offset=offset)
        keys.append(raw[pos : pos + klen])
        pos += klen
    if pos != len(raw):
        raise CorruptFile("sealed snapshot key table has stray bytes", path=path, offset=offset)
    return raw[:DIGEST_BYTES], keys


def open_key_table(sealer: BlockSealer, lsn: int, sealed: bytes, block_count: int, *, path: str | None,
                   offset: int) -> tuple[bytes, list[bytes]]:
    """Open and decode the sealed key table (block number `block_count`)."""
    if len(sealed) < TAG_BYTES + DIGEST_BYTES:
        raise CorruptFile("sealed snapshot key table is too short", path=path, offset=offset)
    raw = sealer.open(block_count, lsn, sealed, path=path, offset=offset)
    return decode_key_table(raw, block_count, path=path, offset=offset)
