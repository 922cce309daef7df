"""The repository's data key, its purpose subkeys, and sealing a file's blocks (`FileCipher`).

One random 32-byte data key per repository (wrapped by the KEK in the
identity document). Each use gets its own subkey, BLAKE3 derive_key with a
distinct context, so no key serves two purposes:

    file sealing   "pitr file sealing v1"   per-file keys of FileCipher
    index digests  "pitr index digest v1"   keyed key digests of the catalog
    chain          "pitr chain v1"          keyed records digests of sealed segments
    chain links    "pitr chain link v1"     the keyed chain's links (segment version 3)
    checkpoints    see pitr/repo/checkpoints.py (signed with a separate Ed25519 key)

A `FileCipher` seals the blocks of one file under a per-file key derived from
a random salt stored in the file (docs/format.md, "Encryption"); the block
layout itself is `segments.block_seal`, so the `segments` writers and readers
take a sealer without importing pitr.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from blake3 import blake3

from pitr.errors import to_corrupt
from segments import CorruptFile
from segments.block_seal import SALT_BYTES, BlockPlace, BlockSealer, SegmentKeys

DATA_KEY_BYTES = 32
CONTEXT_FILE_SEALING = "pitr file sealing v1"
CONTEXT_INDEX_DIGEST = "pitr index digest v1"
CONTEXT_CHAIN = "pitr chain v1"
CONTEXT_CHAIN_LINK = "pitr chain link v1"


@dataclass(frozen=True, slots=True)
class DataKey:
    """A repository's data key (never stored in the clear) and the subkeys derived from it."""

    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != DATA_KEY_BYTES:
            raise ValueError(f"a data key is {DATA_KEY_BYTES} bytes")

    def __repr__(self) -> str:  # a traceback or a log line never shows the key
        return "DataKey(<secret>)"

    @classmethod
    def new(cls) -> DataKey:
        return cls(os.urandom(DATA_KEY_BYTES))

    def subkey(self, context: str) -> bytes:
        """BLAKE3 derive_key(context, data key): 32 bytes for one purpose."""
        return blake3(self.key, derive_key_context=context).digest()

    @property
    def sealing_key(self) -> bytes:
        return self.subkey(CONTEXT_FILE_SEALING)

    @property
    def index_key(self) -> bytes:
        return self.subkey(CONTEXT_INDEX_DIGEST)

    @property
    def chain_key(self) -> bytes:
        return self.subkey(CONTEXT_CHAIN)

    @property
    def chain_link_key(self) -> bytes:
        return self.subkey(CONTEXT_CHAIN_LINK)

    def segment_keys(self, *, keyed_chain: bool = False) -> SegmentKeys:
        """What the `segments` writers and readers need to seal and open files: the sealing subkey, the
        chain subkey that keys the piece records digests, the index subkey of the catalog's digests and,
        for a keyed chain, the links' subkey."""
        return SegmentKeys(self.sealing_key, self.chain_key, self.index_key,
                           self.chain_link_key if keyed_chain else None)


class FileCipher:
    """Seals or opens the blocks of one file: a per-file key from a salt, blocks bound to their place."""

    def __init__(self, data_key: DataKey, salt: bytes, place: BlockPlace, *, path: str | None = None) -> None:
        if len(salt) != SALT_BYTES:
            raise ValueError(f"a file salt is {SALT_BYTES} bytes")
        self.path = path
        self.sealer = BlockSealer(data_key.sealing_key, salt, place)

    @classmethod
    def for_new_file(cls, data_key: DataKey, place: BlockPlace, *, path: str | None = None) -> FileCipher:
        """A cipher for a file about to be written, with a fresh random salt (stored in its header)."""
        return cls(data_key, os.urandom(SALT_BYTES), place, path=path)

    @property
    def salt(self) -> bytes:
        return self.sealer.salt

    def seal(self, index: int, block_first_lsn: int, data: bytes | memoryview) -> bytes:
        return self.sealer.seal(index, block_first_lsn, data)

    def open(self, index: int, block_first_lsn: int, sealed: bytes | memoryview, *,
             offset: int | None = None) -> bytes:
        """The plaintext of a block; `CorruptData` naming the file, block and LSN when it fails its tag."""
        try:
            return self.sealer.open(index, block_first_lsn, sealed, path=self.path, offset=offset)
        except CorruptFile as exc:
            raise to_corrupt(exc, self.path) from exc
