"""The repository's identity document and its watermark (how far the archive is known complete).

Both are `documents` (magic, version, JSON body, CRC-32C); after the checksum
every field is checked for type and range, so a decoded document can be used
without further checks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pitr.repo.documents import Fields, decode_document, encode_document

IDENTITY_MAGIC = "PITRREPO"
WATERMARK_MAGIC = "PITRWMK"
VERSION = 1
SOURCES = ("embedded", "etcd")
WATERMARK_SKEW_NS = 10 * 60 * 10**9  # how far a watermark may run ahead of the reader's clock
WATERMARK_HINT = ("delete the watermark file: the archiver writes a new one on its next cycle (until then "
                  "restores end at the last archived commit)")


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
        """Parse and validate an identity document; `CorruptData` naming `name` and the field if wrong."""
        fields = Fields(decode_document(IDENTITY_MAGIC, VERSION, data, name), name, "identity")
        source = fields.text("source", "embedded")
        if source not in SOURCES:
            fields.bad("source", " or ".join(repr(s) for s in SOURCES))
        parent = fields.nested("parent")
        if parent is not None:  # where a restored history branched off: checked, kept as read
            parent.store_id()
            parent.integer("lsn")
            parent.integer("ts_ns")
            if "target" in parent.doc:
                parent.text("target")
        return cls(fields.store_id(), fields.text("name"), fields.integer("created_ns"),
                   fields.integer("first_lsn", low=1), fields.digest("start_chain_digest"), source,
                   None if parent is None else dict(parent.doc))


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
