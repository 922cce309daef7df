"""Signed checkpoints: "this history reached LSN n with chain digest d", signed with Ed25519.

A checkpoint (docs/format.md, "Checkpoints") is a small write-once document
`checkpoints/<16 hex digits of the LSN>.ckpt`, framed like the other repository
documents, that the archiver publishes after a watermark and copies to the
witnesses the operator names. It signs, under the repository's signing key:

    message = "pitr-checkpoint-v1" || store_id (16) || u64le lsn || i64le ts_ns
              || chain_digest (32) || identity_digest (32)          (114 bytes)
    identity_digest = BLAKE3-256 of the identity document's bytes as stored

The signing key is an Ed25519 key whose 32-byte seed is
BLAKE3 derive_key("pitr checkpoint signing v1", raw key) of a raw key file
(`pitr key create FILE`, then `pitr archive --signing-key FILE`); its public key
is published beside the checkpoints (`checkpoints/signing-key.pub`) and beside
every witness's copy, where verification takes it from.

`cryptography` is imported only when a key signs or a signature is checked.
"""

from __future__ import annotations

import re
import struct
import uuid
from dataclasses import dataclass

from blake3 import blake3

from pitr.errors import CorruptData, ObjectExists, ObjectNotFound, WrongKey
from pitr.repo.documents import Fields, decode_document, encode_document
from pitr.storage.base import Storage

MAGIC = "PITRCKPT"
PUBLIC_KEY_MAGIC = "PITRSIGN"
VERSION = 1
PREFIX = "checkpoints/"
SUFFIX = ".ckpt"
PUBLIC_KEY_NAME = "signing-key.pub"
REPOSITORY_PUBLIC_KEY = PREFIX + PUBLIC_KEY_NAME  # where a repository keeps its signer's public key
SIGNING_CONTEXT = "pitr checkpoint signing v1"
SIGNED_TAG = b"pitr-checkpoint-v1"
_SIGNED = struct.Struct("<16sQq32s32s")  # store id, lsn, ts_ns, chain digest, identity digest
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
_NAME = re.compile(r"([0-9a-f]{16})\.ckpt")


def checkpoint_name(lsn: int) -> str:
    """The object name of the checkpoint at `lsn`, under a repository or a witness's store prefix."""
    return f"{PREFIX}{lsn:016x}{SUFFIX}"


def parse_checkpoint_name(name: str) -> int | None:
    """The LSN a checkpoint's object name says (`checkpoints/` stripped or not); None if it is not one."""
    match = _NAME.fullmatch(name.rsplit("/", 1)[-1])
    return int(match.group(1), 16) if match else None


def identity_digest(identity_document: bytes) -> bytes:
    return blake3(identity_document).digest()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What one checkpoint says: the history of `store_id` held every commit through `lsn`, and the chain
    digest after it was `chain_digest`, when the archiver published it at `ts_ns`."""

    store_id: uuid.UUID
    lsn: int
    ts_ns: int
    chain_digest: bytes
    identity_digest: bytes

    def message(self) -> bytes:
        """The exact bytes signed."""
        return SIGNED_TAG + _SIGNED.pack(self.store_id.bytes, self.lsn, self.ts_ns, self.chain_digest,
                                         self.identity_digest)


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    signature: bytes

    def encode(self) -> bytes:
        c = self.checkpoint
        return encode_document(MAGIC, VERSION, {
            "store_id": str(c.store_id), "lsn": c.lsn, "ts_ns": c.ts_ns, "chain_digest": c.chain_digest.hex(),
            "identity_digest": c.identity_digest.hex(), "signature": self.signature.hex()})

    @classmethod
    def decode(cls, data: bytes, name: str) -> SignedCheckpoint:
        """Parse and check a checkpoint's fields (not its signature: `verify`); `CorruptData` naming `name`."""
        fields = Fields(decode_document(MAGIC, VERSION, data, name), name, "checkpoint")
        checkpoint = Checkpoint(fields.store_id(), fields.integer("lsn"), fields.integer("ts_ns"),
                                fields.digest("chain_digest"), fields.digest("identity_digest"))
        return cls(checkpoint, fields.hex_bytes("signature", SIGNATURE_BYTES))

    def verify(self, public_key: bytes) -> bool:
        """Whether the signature is `public_key`'s over this checkpoint."""
        return verify_signature(public_key, self.checkpoint.message(), self.signature)


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class SigningKey:
    """The Ed25519 key that signs a repository's checkpoints, derived from a raw key file."""

    def __init__(self, seed: bytes, path: str) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self.path = path
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._key.public_key().public_bytes(serialization.Encoding.Raw,
                                                              serialization.PublicFormat.Raw)

    def __repr__(self) -> str:  # a traceback never shows the key
        return f"SigningKey({self.path!r}, public {self.public_key.hex()[:16]}…)"

    @classmethod
    def from_file(cls, path: str) -> SigningKey:
        """The signing key of a raw key file (private to its owner: `read_key_file`'s checks); a passphrase
        file is refused, since it has no salt to derive a key from."""
        from pitr.crypto.keys import read_key_file

        key_file = read_key_file(path)
        if key_file.raw_key is None:
            raise WrongKey(f"{path} holds a passphrase; a signing key must be a raw key file",
                           hint=f"create one with `pitr key create {path}.sign` and pass it to --signing-key")
        return cls(blake3(key_file.raw_key, derive_key_context=SIGNING_CONTEXT).digest(), path)

    def sign(self, checkpoint: Checkpoint) -> SignedCheckpoint:
        return SignedCheckpoint(checkpoint, self._key.sign(checkpoint.message()))


def encode_public_key(store_id: uuid.UUID, public_key: bytes) -> bytes:
    return encode_document(PUBLIC_KEY_MAGIC, VERSION, {"store_id": str(store_id), "public_key": public_key.hex()})


def decode_public_key(data: bytes, name: str, store_id: uuid.UUID) -> bytes:
    """The public key of a `signing-key.pub` document of `store_id`'s history; `CorruptData` otherwise."""
    fields = Fields(decode_document(PUBLIC_KEY_MAGIC, VERSION, data, name), name, "signing key")
    if fields.store_id() != store_id:
        fields.bad("store_id", f"the history's store id {store_id}")
    return fields.hex_bytes("public_key", PUBLIC_KEY_BYTES)


async def read_public_key(storage: Storage, name: str, store_id: uuid.UUID, where: str) -> bytes | None:
    """The public key stored at `name`, None if there is none."""
    try:
        data = await storage.read(name)
    except ObjectNotFound:
        return None
    return decode_public_key(data, where, store_id)


async def publish_public_key(storage: Storage, name: str, store_id: uuid.UUID, public_key: bytes,
                             where: str) -> None:
    """Publish the public key once; one already there must be the same key (a history has one signer)."""
    try:
        await storage.publish(name, encode_public_key(store_id, public_key))
    except ObjectExists:
        known = await read_public_key(storage, name, store_id, where)
        if known != public_key:
            raise WrongKey(f"{where} holds another signing key ({(known or b'').hex()[:16]}…) than the one "
                           f"given ({public_key.hex()[:16]}…): checkpoints of one history have one signer",
                           hint="pass the signing key this history's checkpoints were made with") from None


async def publish_checkpoint(storage: Storage, name: str, signed: SignedCheckpoint, where: str) -> None:
    """Publish a checkpoint once. One already there for the LSN (a retry) must say the same chain digest:
    another means two histories claim the same LSNs here, which is refused, never overwritten."""
    try:
        await storage.publish(name, signed.encode())
    except ObjectExists:
        known = SignedCheckpoint.decode(await storage.read(name), where).checkpoint
        ours = signed.checkpoint
        if known.store_id != ours.store_id or known.chain_digest != ours.chain_digest:
            raise CorruptData(f"a checkpoint of LSN {ours.lsn} is already there with another chain digest: the "
                              "history was rewritten or rolled back and archived again", path=where,
                              hint="run `pitr verify --witness` on the repository before archiving into it"
                              ) from None


async def newest_checkpoint(storage: Storage, store_id: uuid.UUID, where: str) -> tuple[str, Checkpoint] | None:
    """The newest checkpoint a repository holds (its object name, what it says), its signature checked under
    the public key beside it; None when it holds none (`pitr status`). `CorruptData` naming the object when
    it is damaged, moved, or not signed by that key; `ObjectNotFound` when it is gone before it is read
    (nothing but cleanup deletes a checkpoint, and never the newest)."""
    named = [(lsn, i.name) for i in await storage.list(PREFIX) if (lsn := parse_checkpoint_name(i.name)) is not None]
    if not named:
        return None
    lsn, name = max(named)
    file = f"{where.rstrip('/')}/{name}"
    checkpoint = SignedCheckpoint.decode(await storage.read(name), file)
    c = checkpoint.checkpoint
    if c.lsn != lsn or c.store_id != store_id:
        raise CorruptData(f"{file} says LSN {c.lsn} of store {c.store_id}, not what its name and place say: "
                          "moved or forged", path=file, hint="run `pitr verify` for every finding")
    public_key = await read_public_key(storage, REPOSITORY_PUBLIC_KEY, store_id, f"{where.rstrip('/')}/"
                                       f"{REPOSITORY_PUBLIC_KEY}")
    if public_key is None or not checkpoint.verify(public_key):
        why = f"there is no {REPOSITORY_PUBLIC_KEY} to check it against" if public_key is None else \
            f"its signature does not verify under {REPOSITORY_PUBLIC_KEY}: forged or altered"
        raise CorruptData(f"{file}: {why}", path=file, lsn=c.lsn,
                          hint="run `pitr verify --witness` with the witness the archiver writes to")
    return name, c
