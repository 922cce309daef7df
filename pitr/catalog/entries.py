"""Catalog rows: what the catalog records about segments, blocks, snapshots and key versions."""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from typing import Any

from blake3 import blake3

from segments.chain import Piece

U64BE = struct.Struct(">Q")
BLOCK_ROW = struct.Struct(">QqQIIII")  # segment first_lsn, first_ts, offset, csize, rsize, records, crc
KEY_VALUE = struct.Struct(">QBB")  # lsn, kind, flags
KEY_FLAG_EXPIRY = 0x01
LONG_KEY = 480  # keys longer than this are indexed by their BLAKE3 digest
LONG_MARK = 0xFFFF


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
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> SegmentEntry:
        doc = json.loads(raw)
        doc["prev_chain_digest"] = bytes.fromhex(doc["prev_chain_digest"])
        doc["chain_digest"] = bytes.fromhex(doc["chain_digest"])
        doc["pieces"] = tuple(Piece(a, b, bytes.fromhex(c)) for a, b, c in doc["pieces"])
        return cls(**doc)


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
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> SnapshotEntry:
        doc = json.loads(raw)
        doc["chain_digest"] = bytes.fromhex(doc["chain_digest"])
        doc["state_digest"] = bytes.fromhex(doc["state_digest"])
        return cls(**doc)


@dataclass(frozen=True, slots=True)
class KeyVersion:
    """One change of a key: when, at which LSN, and whether it was a put or a delete."""

    ts_ns: int
    lsn: int
    kind: int
    has_expiry: bool


def key_prefix(key: bytes) -> bytes:
    """The catalog's key-index prefix for a user key: u16 length + key, or a digest for long keys."""
    if len(key) > LONG_KEY:
        return struct.pack(">H", LONG_MARK) + blake3(key).digest()
    return struct.pack(">H", len(key)) + key


def is_long_key(key: bytes) -> bool:
    return len(key) > LONG_KEY
