"""Byte layout of archive segments: header, block index, piece table, trailer.

    header   128 bytes at offset 0
    blocks   independent zstd frames, back to back, from offset 128
    index    block_count x 40-byte entries at trailer.index_offset
    pieces   piece_count x 48-byte entries right after the index
    trailer  136 bytes at the end of the file

See docs/format.md, "Archive segment", for every field.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from segments import record as rec
from segments._errors import CorruptFile, UnsupportedVersion
from segments.chain import Piece
from segments.crc import crc32c

MAGIC = b"PITRSEG\n"
END_MAGIC = b"PITREND\n"
VERSION = 3  # the newest this reader knows; a plaintext segment is written as version 1
PLAIN_VERSION = 1
SEALED_VERSION = 2  # blocks sealed with AES-256-GCM (docs/format.md, "Encryption"); the salt in the header
KEYED_CHAIN_VERSION = 3  # sealed as version 2, and the chain's links keyed (docs/format.md, "Keyed chain")
SALT_BYTES = 32
HEADER = struct.Struct("<8sHHI16sQq32s44sI")
HEADER_SIZE = HEADER.size  # 128
INDEX_ENTRY = struct.Struct("<QqQIIII")  # first_lsn, first_ts, offset, csize, rsize, records, crc
PIECE_ENTRY = struct.Struct("<QQ32s")
TRAILER_FIELDS = struct.Struct("<QIIQqQqQ32s")  # 88 bytes, covered by trailer crc
TRAILER_SIZE = TRAILER_FIELDS.size + 4 + 4 + 32 + 8  # 136
FILE_DIGEST_OFFSET_FROM_END = 32 + 8
MAX_BLOCK_SIZE = 64 << 20  # the largest block size a writer may be asked for
# A block is cut after the record that reaches the block size, so it may exceed it by one record.
MAX_BLOCK_RAW = MAX_BLOCK_SIZE + rec.PREFIX.size + rec.MAX_PAYLOAD  # a block never decompresses to more
MAX_ENTRIES = 1 << 24
# A zstd block regenerates at most 128 KiB from at least 4 bytes (3-byte header + 1 RLE byte), so no
# frame decompresses to more than 32768 times its size: a larger declared raw size is damage, refused
# before a decompressor allocates it.
MAX_ZSTD_RATIO = 32768


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    store_id: uuid.UUID
    first_lsn: int
    first_ts_ns: int
    prev_chain_digest: bytes
    salt: bytes | None = None  # a sealed segment's file salt (version 2); None: plaintext blocks
    keyed_chain: bool = False  # version 3: sealed, and the links of its chain keyed


@dataclass(frozen=True, slots=True)
class BlockEntry:
    first_lsn: int
    first_ts_ns: int
    offset: int
    compressed_size: int
    raw_size: int
    record_count: int
    crc: int


@dataclass(frozen=True, slots=True)
class SegmentTrailer:
    index_offset: int
    block_count: int
    piece_count: int
    last_lsn: int
    last_ts_ns: int
    record_count: int
    complete_through_ns: int
    raw_bytes: int
    chain_digest: bytes
    file_digest: bytes


def encode_header(h: SegmentHeader) -> bytes:
    if h.salt is not None and len(h.salt) != SALT_BYTES:
        raise ValueError(f"a segment salt is {SALT_BYTES} bytes")
    if h.keyed_chain and h.salt is None:
        raise ValueError("a keyed chain is only written in sealed segments")
    version, reserved = (PLAIN_VERSION, b"\0" * 44) if h.salt is None else (SEALED_VERSION, h.salt + b"\0" * 12)
    if h.keyed_chain:
        version = KEYED_CHAIN_VERSION
    body = HEADER.pack(
        MAGIC, version, HEADER_SIZE, 0, h.store_id.bytes, h.first_lsn, h.first_ts_ns,
        h.prev_chain_digest, reserved, 0,
    )[:-4]
    return body + struct.pack("<I", crc32c(body))


def decode_header(data: bytes, path: str | None = None) -> SegmentHeader:
    if len(data) < HEADER_SIZE:
        raise CorruptFile("shorter than a segment header", path=path, offset=0)
    magic, version, size, _flags, store_id, first_lsn, first_ts, prev, reserved, crc = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptFile(f"bad magic {magic!r}, not a pitr segment", path=path, offset=0)
    if crc32c(data[: HEADER_SIZE - 4]) != crc:
        raise CorruptFile("segment header CRC-32C mismatch", path=path, offset=0)
    if version > VERSION:
        raise UnsupportedVersion(path, "segment", version, VERSION)
    if version < 1 or size != HEADER_SIZE:
        raise CorruptFile(f"bad segment header version {version} / size {size}", path=path, offset=0)
    salt = bytes(reserved[:SALT_BYTES]) if version >= SEALED_VERSION else None
    return SegmentHeader(uuid.UUID(bytes=store_id), first_lsn, first_ts, prev, salt,
                         keyed_chain=version == KEYED_CHAIN_VERSION)


def encode_tail(
    index: list[BlockEntry], pieces: list[Piece], fields: tuple[int, ...], chain_digest: bytes
) -> bytes:
    """Index, piece table and trailer up to (not including) the file digest and end magic."""
    parts = [
        INDEX_ENTRY.pack(e.first_lsn, e.first_ts_ns, e.offset, e.compressed_size, e.raw_size,
                         e.record_count, e.crc)
        for e in index
    ]
    parts += [PIECE_ENTRY.pack(p.first_lsn, p.last_lsn, p.records_digest) for p in pieces]
    tables = b"".join(parts)
    trailer = TRAILER_FIELDS.pack(*fields, chain_digest)
    crc = crc32c(trailer, crc32c(tables))
    return tables + trailer + struct.pack("<II", crc, 0)


def decode_trailer(tail: bytes, file_size: int, path: str | None = None) -> SegmentTrailer:
    """Parse the trailer from the last TRAILER_SIZE bytes (its CRC is checked with the tables)."""
    if file_size < HEADER_SIZE + TRAILER_SIZE or len(tail) < TRAILER_SIZE:
        raise CorruptFile("too short to be a segment", path=path, offset=0)
    t = tail[-TRAILER_SIZE:]
    if t[-8:] != END_MAGIC:
        raise CorruptFile("missing end magic (truncated segment?)", path=path, offset=file_size - 8)
    (index_offset, block_count, piece_count, last_lsn, last_ts_ns, record_count, complete_through_ns,
     raw_bytes, chain_digest) = TRAILER_FIELDS.unpack_from(t, 0)
    trailer = SegmentTrailer(index_offset, block_count, piece_count, last_lsn, last_ts_ns, record_count,
                             complete_through_ns, raw_bytes, chain_digest, file_digest=bytes(t[96:128]))
    tables_end = file_size - TRAILER_SIZE
    n = trailer.block_count
    if not (0 < n <= MAX_ENTRIES and 0 < trailer.piece_count <= MAX_ENTRIES):
        raise CorruptFile("block or piece count out of bounds", path=path, offset=tables_end)
    if trailer.index_offset + n * INDEX_ENTRY.size + trailer.piece_count * PIECE_ENTRY.size != tables_end:
        raise CorruptFile("index offset does not match the table sizes", path=path, offset=tables_end)
    if trailer.index_offset < HEADER_SIZE:
        raise CorruptFile("index offset inside the header", path=path, offset=tables_end)
    return trailer


def decode_tables(
    tables: bytes, trailer_bytes: bytes, trailer: SegmentTrailer, path: str | None = None
) -> tuple[list[BlockEntry], list[Piece]]:
    """Check the trailer CRC over the tables and the trailer fields; parse both tables."""
    t = trailer_bytes[-TRAILER_SIZE:]
    (crc,) = struct.unpack_from("<I", t, TRAILER_FIELDS.size)
    if crc32c(t[: TRAILER_FIELDS.size], crc32c(tables)) != crc:
        raise CorruptFile("segment index/trailer CRC-32C mismatch", path=path,
                          offset=trailer.index_offset)
    index = [BlockEntry(*INDEX_ENTRY.unpack_from(tables, i * INDEX_ENTRY.size))
             for i in range(trailer.block_count)]
    base = trailer.block_count * INDEX_ENTRY.size
    pieces = [Piece(*PIECE_ENTRY.unpack_from(tables, base + i * PIECE_ENTRY.size))
              for i in range(trailer.piece_count)]
    return index, pieces
