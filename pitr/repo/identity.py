"""The repository's identity document and its watermark (how far the archive is known complete)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pitr.errors import CorruptData
from pitr.repo.documents import decode_document, encode_document

IDENTITY_MAGIC = "PITRREPO"
WATERMARK_MAGIC = "PITRWMK"
VERSION = 1


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

    def encode(self) -> bytes:
        return encode_document(IDENTITY_MAGIC, VERSION, {
            "store_id": str(self.store_id), "name": self.name, "created_ns": self.created_ns,
            "first_lsn": self.first_lsn, "start_chain_digest": self.start_chain_digest.hex(),
            "source": self.source, "parent": self.parent})

    @classmethod
    def decode(cls, data: bytes, name: str) -> RepoIdentity:
        doc = decode_document(IDENTITY_MAGIC, VERSION, data, name)
        try:
            return cls(uuid.UUID(doc["store_id"]), str(doc["name"]), int(doc["created_ns"]),
                       int(doc["first_lsn"]), bytes.fromhex(doc["start_chain_digest"]),
                       str(doc.get("source", "embedded")), doc.get("parent"))
        except (KeyError, ValueError, TypeError) as exc:
            raise CorruptData(f"{name}: identity document is missing a field: {exc}", path=name) from exc


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
        doc = decode_document(WATERMARK_MAGIC, VERSION, data, name)
        try:
            return cls(uuid.UUID(doc["store_id"]), int(doc["lsn"]), int(doc["complete_through_ns"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise CorruptData(f"{name}: watermark is missing a field: {exc}", path=name) from exc
