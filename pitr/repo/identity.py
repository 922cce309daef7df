"""The repository's identity document and the watermark document (how far the archive is known complete).

Both are `documents` (magic, version, JSON body, CRC-32C); after the checksum
every field is checked for type and range, so a decoded document can be used
without further checks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pitr.crypto.keys import KEY_ID_BYTES, WRAPPED_BYTES, KdfParams
from pitr.errors import CorruptData
from pitr.repo.documents import Fields, decode_document, decode_versioned, encode_document

IDENTITY_MAGIC = "PITRREPO"
WATERMARK_MAGIC = "PITRWMK"
VERSION = 1
# An encrypted repository's identity is version 2, so that a pitr that knows no encryption refuses it
# ("upgrade pitr") rather than ignore the block and write plaintext into it.
ENCRYPTED_VERSION = 2
ENCRYPTION_VERSION = 1
CIPHER = "aes-256-gcm"
SOURCES = ("embedded", "etcd")
# The chain of an encrypted repository created since the keyed chain: links keyed under the data key
# (docs/format.md, "Keyed chain"). Absent: "unkeyed", the chain every plaintext repository keeps.
UNKEYED_CHAIN = "unkeyed"
KEYED_CHAIN = "keyed-v1"
CHAINS = (UNKEYED_CHAIN, KEYED_CHAIN)
WATERMARK_SKEW_NS = 10 * 60 * 10**9  # how far a watermark may run ahead of the reader's clock
WATERMARK_HINT = ("fix the archiver host's clock: watermarks are write-once objects (watermarks/*.wmk), and the "
                  "next one it publishes at a later LSN supersedes this one; or delete this object (the newest "
                  "older watermark is used, else restores end at the last archived commit)")


@dataclass(frozen=True, slots=True)
class EncryptionBlock:
    """How a repository's data key is sealed: its cipher, the KEK's id, the KDF (passphrase) and the wrap.

    The identity document holds the first one; `pitr key rotate` publishes
    more (pitr/repo/keyring.py), each the same data key under another KEK.
    """

    key_id: bytes
    wrapped_key: bytes
    kdf: KdfParams | None = None  # None: the KEK is a raw key file
    cipher: str = CIPHER

    def to_json(self) -> dict[str, Any]:
        kdf = None if self.kdf is None else {"name": "scrypt", "log2_n": self.kdf.log2_n, "r": self.kdf.r,
                                             "p": self.kdf.p, "salt": self.kdf.salt.hex()}
        return {"version": ENCRYPTION_VERSION, "cipher": self.cipher, "key_id": self.key_id.hex(),
                "kdf": kdf, "wrapped_key": self.wrapped_key.hex()}

    @classmethod
    def from_fields(cls, block: Fields) -> EncryptionBlock:
        """Checked field by field; KDF parameters beyond the bounds a reader accepts are damage."""
        version = block.integer("version", low=1)
        if version > ENCRYPTION_VERSION:
            raise CorruptData(f"encryption block version {version} is newer than supported {ENCRYPTION_VERSION}",
                              path=block.name, hint="upgrade pitr")
        if block.text("cipher") != CIPHER:
            block.bad("cipher", repr(CIPHER))
        kdf = block.nested("kdf")
        params = None
        if kdf is not None:
            if kdf.text("name") != "scrypt":
                kdf.bad("name", "'scrypt'")
            params = KdfParams(kdf.integer("log2_n", 1, KdfParams.MAX_LOG2_N), kdf.integer("r", 1, KdfParams.MAX_R),
                               kdf.integer("p", 1, KdfParams.MAX_P), kdf.hex_bytes("salt", KdfParams.SALT_BYTES))
            try:
                params.check()
            except ValueError as exc:
                kdf.bad("log2_n", f"within the reader's bounds ({exc})")
        return cls(block.hex_bytes("key_id", KEY_ID_BYTES), block.hex_bytes("wrapped_key", WRAPPED_BYTES), params)


@dataclass(frozen=True, slots=True)
class RepoIdentity:
    """Which history a repository holds: one store id, one LSN space."""

    store_id: uuid.UUID
    name: str
    created_ns: int
    first_lsn: int
    start_chain_digest: bytes
    source: str = "embedded"
    parent: dict[str, Any] | None = None
    encryption: EncryptionBlock | None = None  # None: a plaintext repository
    chain: str = UNKEYED_CHAIN  # KEYED_CHAIN: the links are keyed (encrypted repositories only)

    @property
    def keyed_chain(self) -> bool:
        return self.chain == KEYED_CHAIN

    def encode(self) -> bytes:
        body: dict[str, Any] = {
            "store_id": str(self.store_id), "name": self.name, "created_ns": self.created_ns,
            "first_lsn": self.first_lsn, "start_chain_digest": self.start_chain_digest.hex(),
            "source": self.source, "parent": self.parent}
        if self.encryption is None:
            return encode_document(IDENTITY_MAGIC, VERSION, body)
        body["encryption"] = self.encryption.to_json()
        if self.chain != UNKEYED_CHAIN:
            body["chain"] = self.chain
        return encode_document(IDENTITY_MAGIC, ENCRYPTED_VERSION, body)

    @classmethod
    def decode(cls, data: bytes, name: str) -> RepoIdentity:
        """Parse and validate an identity document; `CorruptData` naming `name` and the field if wrong."""
        version, doc = decode_versioned(IDENTITY_MAGIC, ENCRYPTED_VERSION, data, name)
        fields = Fields(doc, name, "identity")
        block = fields.nested("encryption")
        if (block is None) != (version == VERSION):  # version 1 is plaintext, version 2 encrypted: never mixed
            fields.bad("encryption", "an object in a version 2 identity, absent in version 1")
        source = fields.text("source", "embedded")
        if source not in SOURCES:
            fields.bad("source", " or ".join(repr(s) for s in SOURCES))
        chain = fields.text("chain", UNKEYED_CHAIN)
        if chain not in CHAINS or (chain != UNKEYED_CHAIN and block is None):
            fields.bad("chain", f"{KEYED_CHAIN!r} in an encrypted identity, or absent")
        parent = fields.nested("parent")
        if parent is not None:  # where a restored history branched off: checked, kept as read
            parent.store_id()
            parent.integer("lsn")
            parent.integer("ts_ns")
            if "target" in parent.doc:
                parent.text("target")
        return cls(fields.store_id(), fields.text("name"), fields.integer("created_ns"),
                   fields.integer("first_lsn", low=1), fields.digest("start_chain_digest"), source,
                   None if parent is None else dict(parent.doc),
                   None if block is None else EncryptionBlock.from_fields(block), chain)


@dataclass(frozen=True, slots=True)
class Watermark:
    """The archive holds every commit up to `lsn`, and none followed before `complete_through_ns`."""

    store_id: uuid.UUID
    lsn: int
    complete_through_ns: int

    def encode(self) -> bytes:
        return encode_document(WATERMARK_MAGIC, VERSION, {
            "store_id": str(self.store_id), "lsn": self.lsn, "complete_through_ns": self.complete_through_ns})

    @classmethod
    def decode(cls, data: bytes, name: str) -> Watermark:
        """Parse and validate a watermark; `CorruptData` naming `name` and the field if wrong."""
        fields = Fields(decode_document(WATERMARK_MAGIC, VERSION, data, name), name, "watermark")
        return cls(fields.store_id(), fields.integer("lsn"), fields.integer("complete_through_ns"))
