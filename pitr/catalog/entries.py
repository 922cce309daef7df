"""Catalog rows: what the catalog records about segments, blocks, snapshots and key versions."""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass, field
from typing import Any

from pitr.catalog.rows import I64_MIN, dump_json, load_json, want_dict, want_digest, want_int, want_str
from segments.chain import Piece

U64BE = struct.Struct(">Q")
BLOCK_ROW = struct.Struct(">QqQIIII")  # segment first_lsn, first_ts, offset, csize, rsize, records, crc
KEY_VALUE = struct.Struct(">QBB")  # lsn, kind, flags: how verify compares key-index entries
KEY_FLAG_EXPIRY = 0x01


@dataclass(frozen=True, slots=True)
class SegmentEntry:
    """A published archive segment as the catalog knows it."""

    name: str
    first_lsn: int
    last_lsn: int
    first_ts_ns: int
    last_ts_ns: int
    complete_through_ns: int
    size: int
    record_count: int
    raw_bytes: int
    block_count: int
    prev_chain_digest: bytes
    chain_digest: bytes
    pieces: tuple[Piece, ...] = field(default=())

    def encode(self) -> bytes:
        doc = asdict(self)
        doc["prev_chain_digest"] = self.prev_chain_digest.hex()
        doc["chain_digest"] = self.chain_digest.hex()
        doc["pieces"] = [[p.first_lsn, p.last_lsn, p.records_digest.hex()] for p in self.pieces]
        return dump_json(doc)

    @classmethod
    def decode(cls, raw: bytes) -> SegmentEntry:
        """Parse a row payload, checking every field's type and range (ValueError otherwise)."""
        doc = want_dict(load_json(raw), "segment row")
        pieces = doc["pieces"]
        if not isinstance(pieces, list):
            raise ValueError("field 'pieces' is not a list")
        parsed = []
        for piece in pieces:
            if not isinstance(piece, list) or len(piece) != 3:
                raise ValueError("a piece is not [first_lsn, last_lsn, digest]")
            p = dict(zip(("first_lsn", "last_lsn", "digest"), piece, strict=True))
            parsed.append(Piece(want_int(p, "first_lsn"), want_int(p, "last_lsn"), want_digest(p, "digest")))
        entry = cls(want_str(doc, "name"), want_int(doc, "first_lsn"), want_int(doc, "last_lsn"),
                    want_int(doc, "first_ts_ns", low=I64_MIN), want_int(doc, "last_ts_ns", low=I64_MIN),
                    want_int(doc, "complete_through_ns", low=I64_MIN), want_int(doc, "size"),
                    want_int(doc, "record_count"), want_int(doc, "raw_bytes"), want_int(doc, "block_count"),
                    want_digest(doc, "prev_chain_digest"), want_digest(doc, "chain_digest"), tuple(parsed))
        if entry.last_lsn < entry.first_lsn or len(doc) != 13:
            raise ValueError("segment row has an empty LSN range or unknown fields")
        return entry


@dataclass(frozen=True, slots=True)
class BlockRow:
    """One block of a segment: where it is and which LSNs and times it starts with."""

    first_lsn: int
    segment_first_lsn: int
    first_ts_ns: int
    offset: int
    compressed_size: int
    raw_size: int
    record_count: int
    crc: int

    def encode(self) -> bytes:
        return BLOCK_ROW.pack(self.segment_first_lsn, self.first_ts_ns, self.offset, self.compressed_size,
                              self.raw_size, self.record_count, self.crc)

    @classmethod
    def decode(cls, first_lsn: int, raw: bytes) -> BlockRow:
        return cls(first_lsn, *BLOCK_ROW.unpack(raw))


@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    """A published snapshot as the catalog knows it (its header and footer facts)."""

    name: str
    lsn: int
    ts_ns: int
    size: int
    entry_count: int
    logical_bytes: int
    created_ns: int
    chain_digest: bytes
    state_digest: bytes
    metadata: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        doc = asdict(self)
        doc["chain_digest"] = self.chain_digest.hex()
        doc["state_digest"] = self.state_digest.hex()
        return dump_json(doc)

    @classmethod
    def decode(cls, raw: bytes) -> SnapshotEntry:
        """Parse a row payload, checking every field's type and range (ValueError otherwise)."""
        doc = want_dict(load_json(raw), "snapshot row")
        if len(doc) != 10:
            raise ValueError("snapshot row has missing or unknown fields")
        return cls(want_str(doc, "name"), want_int(doc, "lsn"), want_int(doc, "ts_ns", low=I64_MIN),
                   want_int(doc, "size"), want_int(doc, "entry_count"), want_int(doc, "logical_bytes"),
                   want_int(doc, "created_ns", low=I64_MIN), want_digest(doc, "chain_digest"),
                   want_digest(doc, "state_digest"), want_dict(doc["metadata"], "field 'metadata'"))


FILE_STATUSES = ("unindexed", "damaged", "ok")


@dataclass(frozen=True, slots=True)
class FileCheck:
    """What the catalog knows about one file beyond its rows: it could not be indexed, or a verify result."""

    name: str
    kind: str  # "segment" or "snapshot"
    first_lsn: int
    last_lsn: int
    status: str  # "unindexed" (indexing failed), "damaged" (verify found it broken), "ok" (verify passed)
    detail: str
    checked_ns: int
    mode: str  # verify mode ("quick", "full", "replay"), or "index"

    def encode(self) -> bytes:
        return dump_json(asdict(self))

    @classmethod
    def decode(cls, raw: bytes) -> FileCheck:
        doc = want_dict(load_json(raw), "file row")
        if len(doc) != 8:
            raise ValueError("file row has missing or unknown fields")
        check = cls(want_str(doc, "name"), want_str(doc, "kind"), want_int(doc, "first_lsn"),
                    want_int(doc, "last_lsn"), want_str(doc, "status"), want_str(doc, "detail"),
                    want_int(doc, "checked_ns", low=I64_MIN), want_str(doc, "mode"))
        if check.kind not in ("segment", "snapshot") or check.status not in FILE_STATUSES:
            raise ValueError("file row has an unknown kind or status")
        return check


@dataclass(frozen=True, slots=True)
class KeyVersion:
    """One change of a key: when, at which LSN, and whether it was a put or a delete."""

    ts_ns: int
    lsn: int
    kind: int
    has_expiry: bool

