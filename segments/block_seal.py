"""Sealing one block of a file with AES-256-GCM, bound to its place (docs/format.md, "Encryption").

A file sealed under a repository's data key carries a random 32-byte salt;
its file key is `BLAKE3-keyed(sealing subkey, salt)`, so no two files share a
key. Block `i` of the file is sealed with

    nonce = u32 0 ‖ u64be(i)                      (unique per file key: never repeats)
    AAD   = "pitr-block-v1" ‖ u8 kind ‖ u64le first_lsn ‖ u64le last_lsn
            ‖ u64le i ‖ u64le block_first_lsn      (46 bytes)

where `kind`, `first_lsn` and `last_lsn` are the file's `BlockPlace` (fixed
for the whole file) and `block_first_lsn` the block's first LSN. A block
therefore opens only under its own file's key, at its own index, in a file of
its own kind and LSN range: a swapped, replayed, moved or truncated block
fails its tag.

This module holds the block format only; keys are made and kept by
`pitr.crypto` (which passes a `BlockSealer` in), so `segments` never imports
`pitr`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from blake3 import blake3

from segments._errors import CorruptFile, SegmentsError

AAD_TAG = b"pitr-block-v1"
AAD = struct.Struct("<13sBQQQQ")  # tag, kind, file first/last LSN, block index, block first LSN
NONCE = struct.Struct(">IQ")  # u32 0, u64 block index, big-endian
KEY_BYTES = 32
SALT_BYTES = 32
TAG_BYTES = 16  # what sealing adds to each block
MAX_U64 = (1 << 64) - 1

# File kinds (the u8 `kind` of the AAD). A value is never reused for another kind.
KIND_SEGMENT = 1
KIND_SNAPSHOT = 2
KIND_WATERMARK = 3
KINDS = (KIND_SEGMENT, KIND_SNAPSHOT, KIND_WATERMARK)


@dataclass(frozen=True, slots=True)
class BlockPlace:
    """What every block of one file is bound to: the file's kind and LSN range."""

    kind: int
    first_lsn: int
    last_lsn: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown file kind {self.kind}")
        if not 0 <= self.first_lsn <= self.last_lsn <= MAX_U64:
            raise ValueError(f"LSN range {self.first_lsn}..{self.last_lsn} is not a range of u64")

    def aad(self, index: int, block_first_lsn: int) -> bytes:
        """The associated data of block `index` whose first record has LSN `block_first_lsn`."""
        return AAD.pack(AAD_TAG, self.kind, self.first_lsn, self.last_lsn, index, block_first_lsn)


def file_key(sealing_key: bytes, salt: bytes) -> bytes:
    """The key of one file: keyed BLAKE3 of its salt under the repository's sealing subkey."""
    if len(sealing_key) != KEY_BYTES or len(salt) != SALT_BYTES:
        raise ValueError(f"a sealing key and a salt are {KEY_BYTES} and {SALT_BYTES} bytes")
    return blake3(salt, key=sealing_key).digest()


def block_nonce(index: int) -> bytes:
    """The 12-byte GCM nonce of block `index` (u32 zero, then the index as u64 big-endian)."""
    return NONCE.pack(0, index)


class BlockSealer:
    """Seals and opens the blocks of one file (its key derived from `sealing_key` and `salt`)."""

    def __init__(self, sealing_key: bytes, salt: bytes, place: BlockPlace) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # only files that are sealed need it

        self.salt = bytes(salt)
        self.place = place
        self._aead = AESGCM(file_key(sealing_key, salt))

    def seal(self, index: int, block_first_lsn: int, data: bytes | memoryview) -> bytes:
        """Ciphertext and 16-byte tag of block `index` (TAG_BYTES longer than `data`)."""
        return self._aead.encrypt(block_nonce(index), data, self.place.aad(index, block_first_lsn))

    def open(self, index: int, block_first_lsn: int, sealed: bytes | memoryview, *,
             path: str | None = None, offset: int | None = None) -> bytes:
        """The plaintext of block `index`; `CorruptFile` naming the block when its tag fails."""
        if len(sealed) < TAG_BYTES:
            raise CorruptFile(f"sealed block {index} is {len(sealed)} bytes, shorter than its tag",
                              path=path, offset=offset, lsn=block_first_lsn)
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(block_nonce(index), sealed, self.place.aad(index, block_first_lsn))
        except InvalidTag as exc:
            raise CorruptFile(
                f"sealed block {index} fails its authentication tag: altered, moved from another place or file, "
                "or sealed under another data key", path=path, offset=offset, lsn=block_first_lsn,
                hint="restore from another copy of this file; the repository's key cannot repair it") from exc


class SealedFile(SegmentsError):
    """A sealed file's blocks were asked for without the repository's keys."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        super().__init__(f"{path}: its blocks are sealed (encrypted); reading them needs the repository's key")


@dataclass(frozen=True, slots=True)
class SegmentKeys:
    """What reading or writing sealed files needs from a repository's data key (made by `pitr.crypto`):
    the sealing subkey (per-file block keys), the key of the records digests, the index subkey that
    keys the catalog's key digests (built beside the segment) and, for a keyed chain (segment
    version 3), the key of the chain's links (None: the links are unkeyed BLAKE3)."""

    sealing_key: bytes
    digest_key: bytes
    index_key: bytes
    link_key: bytes | None = None

    def __repr__(self) -> str:  # a traceback never shows a key
        return "SegmentKeys(<secret>)"

    def sealer(self, salt: bytes, place: BlockPlace) -> BlockSealer:
        return BlockSealer(self.sealing_key, salt, place)

    def records_hasher(self) -> blake3:
        """BLAKE3 keyed with the digest key: a sealed file's piece digests reveal nothing of its records."""
        return blake3(key=self.digest_key, max_threads=1)
