"""The byte layout of a WAL file: its header, the commit-group frame, and checking one write unit.

Version 2 (written): a 64-byte header, then one *frame* per commit group (a
32-byte frame header carrying the group's length, record count, first LSN and
a CRC-32C of its records, then the records), then zeros. Version 1 (read
only): the same header, then records back to back. See docs/format.md,
"WAL file".

A *write unit* is what one commit group's write put on the disk: a frame in
version 2, a single record in version 1. Recovery reasons about units: only
the last one can be unsynced, so only the last one may be torn.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from typing import NamedTuple

from segments import record as rec
from segments._errors import CorruptFile, UnsupportedVersion
from segments.crc import crc32c

MAGIC = b"PITRWAL\n"
VERSION = 2
OLDEST_VERSION = 1  # version 1 files (records without frames) are still read, never appended to
HEADER = struct.Struct("<8sHHI16sQq12sI")
HEADER_SIZE = HEADER.size  # 64

FRAME = struct.Struct("<IIQQII")  # crc, count, length, first_lsn, records_crc, reserved
FRAME_SIZE = FRAME.size  # 32
FRAME_LSN_OFFSET = 16  # where first_lsn sits: the same place as a record's LSN
MAX_GROUP_RECORDS = (1 << 32) - 1
assert FRAME_LSN_OFFSET == rec.LSN_OFFSET


@dataclass(frozen=True, slots=True)
class WalHeader:
    """The fixed header of a WAL file."""

    store_id: uuid.UUID
    first_lsn: int
    created_ts_ns: int
    version: int = VERSION


def encode_header(header: WalHeader) -> bytes:
    """The 64 header bytes (any known version: tests build version 1 files with it)."""
    if not OLDEST_VERSION <= header.version <= VERSION:
        raise ValueError(f"WAL format version {header.version} is not one this code writes")
    body = HEADER.pack(
        MAGIC, header.version, HEADER_SIZE, 0, header.store_id.bytes, header.first_lsn,
        header.created_ts_ns, b"\0" * 12, 0,
    )
    return body[:-4] + struct.pack("<I", crc32c(body[:-4]))


def decode_header(data: bytes, path: str | None = None) -> WalHeader:
    """Parse and check a WAL header."""
    if len(data) < HEADER_SIZE:
        raise CorruptFile("file is shorter than a WAL header", path=path, offset=0)
    magic, version, size, _flags, store_id, first_lsn, created, _res, crc = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise CorruptFile(f"bad magic {magic!r}, not a pitr WAL file", path=path, offset=0)
    if crc32c(data[: HEADER_SIZE - 4]) != crc:
        raise CorruptFile("WAL header CRC-32C mismatch", path=path, offset=0)
    if version > VERSION:
        raise UnsupportedVersion(path, "WAL", version, VERSION)
    if version < OLDEST_VERSION or size != HEADER_SIZE:
        raise CorruptFile(f"bad WAL header version {version} / size {size}", path=path, offset=0)
    if first_lsn > rec.MAX_LSN:
        raise CorruptFile(f"first LSN {first_lsn} out of range", path=path, offset=0)
    return WalHeader(uuid.UUID(bytes=store_id), first_lsn, created, version)


def wal_name(first_lsn: int) -> str:
    return f"{first_lsn:020d}.wal"


def encode_frame(first_lsn: int, count: int, records: bytes | memoryview) -> bytes:
    """The 32-byte frame header for one commit group of `count` records starting at `first_lsn`."""
    if not 1 <= count <= MAX_GROUP_RECORDS:
        raise ValueError(f"a commit group holds 1..{MAX_GROUP_RECORDS} records, not {count}")
    head = FRAME.pack(0, count, len(records), first_lsn, crc32c(records), 0)
    return struct.pack("<I", crc32c(head[4:])) + head[4:]


class InvalidUnit(CorruptFile):
    """A write unit whose checksums pass but whose contents break a rule: written so, never torn."""


class Unit(NamedTuple):
    """A checked write unit: where it ends and the records it holds."""

    end: int
    spans: list[rec.Span]


def is_end_marker(buf: rec.Buffer, offset: int, size: int) -> bool:
    """Eight zero bytes where a unit would start (the preallocated area)."""
    return size - offset >= 8 and rec.PREFIX.unpack_from(buf, offset) == (0, 0)


def check_unit_at(buf: rec.Buffer, offset: int, size: int, version: int) -> Unit:
    """Check the write unit at `offset`: a frame (version 2) or a record (version 1).

    Raises `InvalidUnit` when the unit's checksums pass but its contents break
    a rule (these bytes were written so: never a torn write), and
    `CorruptFile` when a checksum or bound fails (maybe a torn write). Every
    record's payload is checked as a decoder would check it.
    """
    if version == 1:
        span = rec.check_record_at(buf, offset, size)
        _check_body(buf, span)
        return Unit(span.end, [span])
    if size - offset < FRAME_SIZE:
        raise CorruptFile("incomplete group frame header", offset=offset)
    crc, count, length, first_lsn, records_crc, reserved = FRAME.unpack_from(buf, offset)
    if crc32c(memoryview(buf)[offset + 4 : offset + FRAME_SIZE]) != crc:
        raise CorruptFile("group frame header CRC-32C mismatch", offset=offset)
    start = offset + FRAME_SIZE
    if length > size - start:
        raise CorruptFile(f"commit group of {length} bytes runs past the end of the file "
                          f"({size - start} bytes remain)", offset=offset, lsn=first_lsn)
    if crc32c(memoryview(buf)[start : start + length]) != records_crc:
        raise CorruptFile("commit group CRC-32C mismatch", offset=offset, lsn=first_lsn)
    if count == 0 or reserved or count > length // rec.HEADER_SIZE:
        raise InvalidUnit(f"group frame claims {count} records in {length} bytes", offset=offset, lsn=first_lsn)
    end = start + length
    spans: list[rec.Span] = []
    pos = start
    while pos < end:
        try:
            span = rec.check_record_at(buf, pos, end)
        except CorruptFile as exc:
            raise InvalidUnit(f"record inside a checksummed commit group: {exc.reason}", offset=pos,
                              lsn=exc.lsn) from exc
        expected = first_lsn + len(spans)
        if span.lsn != expected:
            raise InvalidUnit(f"expected LSN {expected} inside the commit group, found {span.lsn}",
                              offset=pos, lsn=span.lsn)
        _check_body(buf, span)
        spans.append(span)
        pos = span.end
    if len(spans) != count:
        raise InvalidUnit(f"group frame claims {count} records but holds {len(spans)}", offset=offset,
                          lsn=first_lsn)
    return Unit(end, spans)


_FIRST_OP = rec.FIRST_OP
_SINGLE_KINDS = (rec.PUT, rec.DELETE)


def _check_body(buf: rec.Buffer, span: rec.Span) -> None:
    # The common record (one put or delete, no expiry, no source revision) in one unpack.
    if span.end - span.start >= rec.FIRST_OP_SIZE:
        _c, _l, rtype, flags, _r, count, _lsn, _ts, kind, oflags, _r2, klen, vlen = _FIRST_OP.unpack_from(
            buf, span.start)
        if rtype == rec.TYPE_COMMIT and not flags & rec.FLAG_SOURCE_REV and count == 1 and not oflags \
                and kind in _SINGLE_KINDS and klen <= rec.MAX_KEY and vlen <= rec.MAX_VALUE \
                and span.start + rec.FIRST_OP_SIZE + klen + vlen == span.end and (kind == rec.PUT or not vlen):
            return
    try:
        rec.check_payload(buf, span)
    except CorruptFile as exc:
        raise InvalidUnit(f"record body is invalid though its CRC matches: {exc.reason}",
                          offset=span.start, lsn=span.lsn) from exc
