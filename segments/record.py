"""The log record codec: one record per commit, framed and checksummed.

Layout (little-endian; see docs/format.md, "Record")::

    0   u32  crc32c   CRC-32C (Castagnoli) of bytes [4, 8 + length)
    4   u32  length   bytes after this 8-byte prefix (the payload); 0 marks the end of a WAL
    8   u8   type     1 = commit; other values are future record types
    9   u8   flags    bit 0: a u64 source revision follows the fixed header
                      bit 1: gap: the source lost history before this commit
    10  u16  reserved 0
    12  u32  op_count
    16  u64  lsn
    24  i64  ts_ns    commit time, nanoseconds since the Unix epoch, UTC
    32  [u64 source_rev]
        ops...

Each operation::

    u8 kind (1 put, 2 delete) | u8 flags (bit 0: expiry follows) | u16 reserved
    u32 key_len | u32 value_len | [i64 expires_at_ns] | key | value

Every length is checked against the bytes that remain before anything is sliced,
so a parser never allocates more than the input it was given.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator, Sequence
from typing import NamedTuple, TypeAlias

from segments._errors import CorruptFile
from segments.crc import crc32c

PREFIX = struct.Struct("<II")
HEADER = struct.Struct("<IIBBHIQq")  # crc, length, type, flags, reserved, op_count, lsn, ts
OP_HEADER = struct.Struct("<BBHII")
U64 = struct.Struct("<Q")
_LSN_TS = struct.Struct("<Qq")
I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")

HEADER_SIZE = HEADER.size  # 32
PAYLOAD_FIXED = HEADER_SIZE - PREFIX.size  # 24
LSN_OFFSET = 16

TYPE_COMMIT = 1
KNOWN_TYPES = frozenset({TYPE_COMMIT})
FLAG_SOURCE_REV = 0x01
FLAG_GAP = 0x02  # the source lost history before this commit: no earlier base reaches past it

PUT = 1
DELETE = 2
OP_FLAG_EXPIRY = 0x01

MAX_KEY = 1 << 20  # 1 MiB
MAX_VALUE = 64 << 20  # 64 MiB
MAX_PAYLOAD = 256 << 20  # one record (an atomic batch) is at most 256 MiB
MAX_LSN = (1 << 63) - 1
MAX_I64 = (1 << 63) - 1
MIN_I64 = -(1 << 63)
MAX_U64 = (1 << 64) - 1

Buffer: TypeAlias = bytes | bytearray | memoryview | mmap.mmap
"""What the parsers read from: a bytes-like object or a read-only mmap of a file."""


class Op(NamedTuple):
    """One operation inside a commit."""

    kind: int
    key: bytes
    value: bytes = b""
    expires_at_ns: int | None = None


class Record(NamedTuple):
    """One commit: its LSN, commit time and operations (applied atomically)."""

    lsn: int
    ts_ns: int
    ops: tuple[Op, ...]
    source_rev: int | None = None
    type: int = TYPE_COMMIT
    gap: bool = False


class Span(NamedTuple):
    """Where one checked record sits in a buffer: [start, end)."""

    lsn: int
    ts_ns: int
    start: int
    end: int


def put(key: bytes, value: bytes, expires_at_ns: int | None = None) -> Op:
    """A put operation."""
    return Op(PUT, key, value, expires_at_ns)


def delete(key: bytes) -> Op:
    """A delete operation."""
    return Op(DELETE, key)


# A record header followed by its first operation's header: every commit record is at least this long.
FIRST_OP = struct.Struct("<IIBBHIQqBBHII")
FIRST_OP_SIZE = FIRST_OP.size  # 44


def encode_single(lsn: int, ts_ns: int, kind: int, key: bytes, value: bytes = b"") -> bytes:
    """Encode a commit of one put (without expiry) or delete: the common case, in one pack.

    Produces exactly the bytes `encode_record` produces for the same commit.
    """
    if kind == DELETE:
        value = b""
    elif kind != PUT:
        raise ValueError(f"unknown operation kind {kind}")
    if len(key) > MAX_KEY or len(value) > MAX_VALUE or not 0 <= lsn <= MAX_LSN \
            or not MIN_I64 <= ts_ns <= MAX_I64:
        return encode_record(lsn, ts_ns, [Op(kind, key, value)])  # raises the precise ValueError
    length = PAYLOAD_FIXED + OP_HEADER.size + len(key) + len(value)
    body = FIRST_OP.pack(0, length, TYPE_COMMIT, 0, 0, 1, lsn, ts_ns, kind, 0, 0, len(key), len(value))[4:] \
        + key + value
    return _U32.pack(crc32c(body)) + body  # one CRC call over the joined bytes: cheaper than three


_SINGLE_HEAD = struct.Struct("<IBBHIQqBBHII")  # FIRST_OP without its CRC: what the CRC covers


def encode_run(first_lsn: int, times: Sequence[int], commits: Sequence[Sequence[Op]]) -> list[bytes]:
    """Encode consecutive commits: LSN first_lsn + i, time times[i], operations commits[i].

    Returns the run's bytes in pieces: ``b"".join(pieces)`` is exactly what `encode_record`
    produces for each commit, one after the other. One pass, and the common commit (one put
    without expiry) without a call or a copy per record: imports encode millions, and the
    WAL writer joins the pieces once anyway. Raises ValueError for out-of-bounds input, as
    `encode_record` does.
    """
    out: list[bytes] = []
    if not times:
        return out
    if not 0 <= first_lsn <= MAX_LSN - len(times) + 1 or not MIN_I64 <= min(times) <= max(times) <= MAX_I64:
        return [encode_record(first_lsn + i, ts, ops) for i, (ts, ops) in enumerate(zip(times, commits, strict=True))]
    extend, append = out.extend, out.append
    pack, pack_crc = _SINGLE_HEAD.pack, _U32.pack
    fixed = PAYLOAD_FIXED + OP_HEADER.size
    lsn = first_lsn
    for ts, ops in zip(times, commits, strict=True):
        if len(ops) == 1:
            kind, key, value, expires = ops[0]
            klen, vlen = len(key), len(value)
            if kind == PUT and expires is None and klen <= MAX_KEY and vlen <= MAX_VALUE:
                head = pack(fixed + klen + vlen, TYPE_COMMIT, 0, 0, 1, lsn, ts, PUT, 0, 0, klen, vlen)
                extend((pack_crc(crc32c(value, crc32c(key, crc32c(head)))), head, key, value))
                lsn += 1
                continue
        append(encode_record(lsn, ts, ops))
        lsn += 1
    return out


def encode_record(
    lsn: int, ts_ns: int, ops: Sequence[Op], source_rev: int | None = None, *, gap: bool = False
) -> bytes:
    """Encode one commit record. Raises ValueError for out-of-bounds input."""
    if not ops:
        raise ValueError("a commit needs at least one operation")
    if not 0 <= lsn <= MAX_LSN:
        raise ValueError(f"lsn {lsn} out of range")
    if not MIN_I64 <= ts_ns <= MAX_I64:
        raise ValueError(f"commit time {ts_ns} does not fit a signed 64-bit integer")
    if source_rev is not None and not 0 <= source_rev <= MAX_U64:
        raise ValueError(f"source revision {source_rev} does not fit an unsigned 64-bit integer")
    parts: list[bytes] = []
    append = parts.append
    pack = OP_HEADER.pack
    for op in ops:
        kind, key, value, expires = op
        if kind == PUT and expires is None and len(key) <= MAX_KEY and len(value) <= MAX_VALUE:
            append(pack(PUT, 0, 0, len(key), len(value)))  # the common case, checked in one test
            append(key)
            append(value)
            continue
        if kind == DELETE:
            value = b""
            expires = None
        elif kind != PUT:
            raise ValueError(f"unknown operation kind {kind}")
        if len(key) > MAX_KEY:
            raise ValueError(f"key of {len(key)} bytes exceeds the {MAX_KEY}-byte limit")
        if len(value) > MAX_VALUE:
            raise ValueError(f"value of {len(value)} bytes exceeds the {MAX_VALUE}-byte limit")
        if expires is None:
            parts.append(OP_HEADER.pack(kind, 0, 0, len(key), len(value)))
        elif not MIN_I64 <= expires <= MAX_I64:
            raise ValueError(f"expiry {expires} does not fit a signed 64-bit integer")
        else:
            parts.append(OP_HEADER.pack(kind, OP_FLAG_EXPIRY, 0, len(key), len(value)))
            parts.append(I64.pack(expires))
        parts.append(key)
        parts.append(value)
    flags = FLAG_GAP if gap else 0
    if source_rev is not None:
        flags |= FLAG_SOURCE_REV
        parts.insert(0, U64.pack(source_rev))
    body = b"".join(parts)
    length = PAYLOAD_FIXED + len(body)
    if length > MAX_PAYLOAD:
        raise ValueError(f"record of {length} bytes exceeds the {MAX_PAYLOAD}-byte limit")
    head = bytearray(HEADER.pack(0, length, TYPE_COMMIT, flags, 0, len(ops), lsn, ts_ns))
    crc = crc32c(body, crc32c(memoryview(head)[4:]))
    struct.pack_into("<I", head, 0, crc)
    return bytes(head) + body


def check_record_at(buf: Buffer, offset: int, end: int) -> Span:
    """Check the framing and CRC of the record at `offset`; return its span.

    Raises CorruptFile (offset relative to `buf`) when the bytes are not one
    complete, checksummed record.
    """
    if end - offset < HEADER_SIZE:
        raise CorruptFile("incomplete record header", offset=offset)
    crc, length, _type, _flags, _res, _count, lsn, ts_ns = HEADER.unpack_from(buf, offset)
    if length < PAYLOAD_FIXED or length > MAX_PAYLOAD:
        raise CorruptFile(f"record length {length} out of bounds", offset=offset)
    stop = offset + 8 + length
    if stop > end:
        raise CorruptFile(
            f"record length {length} runs past the end of the data ({end - offset - 8} bytes remain)",
            offset=offset,
        )
    if crc32c(memoryview(buf)[offset + 4 : stop]) != crc:
        raise CorruptFile("record CRC-32C mismatch", offset=offset, lsn=lsn)
    return Span(lsn, ts_ns, offset, stop)


UNKNOWN_TYPE_HINT = "a newer pitr wrote this record; upgrade pitr to verify and restore it"


def check_commit_at(buf: Buffer, offset: int, end: int, expected_lsn: int,
                    after_ts_ns: int) -> tuple[int, int, int, int, int]:
    """`check_record_at`, then the rules of a run of commits (the replay's and the block scan's): the LSN
    expected, a commit time after `after_ts_ns`, a commit record (a replay that passed over a commit it
    cannot read would build the wrong state). Returns (flags, op count, lsn, ts_ns, end offset)."""
    stop = check_record_at(buf, offset, end).end
    _crc, _length, rtype, flags, _res, count, lsn, ts_ns = HEADER.unpack_from(buf, offset)
    if lsn != expected_lsn:
        raise CorruptFile(f"expected LSN {expected_lsn}, found {lsn}", offset=offset, lsn=lsn)
    if ts_ns <= after_ts_ns:
        raise CorruptFile(f"commit time {ts_ns} does not follow {after_ts_ns}", offset=offset, lsn=lsn)
    if rtype != TYPE_COMMIT:
        raise CorruptFile(f"unknown record type {rtype}", offset=offset, lsn=lsn, hint=UNKNOWN_TYPE_HINT)
    return flags, count, lsn, ts_ns, stop


def scan_spans(
    buf: Buffer, start: int = 0, end: int | None = None
) -> Iterator[Span]:
    """Check and yield the spans of consecutive records in buf[start:end]."""
    if end is None:
        end = len(buf)
    offset = start
    while offset < end:
        span = check_record_at(buf, offset, end)
        yield span
        offset = span.end


class Run(NamedTuple):
    """What check_run found: the end offset of every record, and the first and last commit times."""

    ends: list[int]
    first_ts_ns: int
    last_ts_ns: int


def check_run(buf: Buffer, first_lsn: int, after_ts_ns: int, start: int = 0, end: int | None = None) -> Run:
    """Check buf[start:end] as consecutive log records, as scan_spans does, and more.

    Every record must pass check_record_at, the LSNs must be first_lsn,
    first_lsn + 1, ... and the commit times must increase strictly, starting
    after `after_ts_ns`. Equivalent to checking scan_spans' output, without a
    Span per record: full verification walks every record of an archive.
    """
    if end is None:
        end = len(buf)
    unpack_prefix = PREFIX.unpack_from
    unpack_lsn_ts = _LSN_TS.unpack_from
    ends: list[int] = []
    offset, expected, prev_ts, first_ts = start, first_lsn, after_ts_ns, after_ts_ns
    with memoryview(buf) as view:
        while offset < end:
            crc, length = unpack_prefix(buf, offset) if end - offset >= HEADER_SIZE else (0, 0)
            stop = offset + 8 + length
            if not (PAYLOAD_FIXED <= length <= MAX_PAYLOAD and stop <= end
                    and crc32c(view[offset + 4 : stop]) == crc):
                check_record_at(buf, offset, end)  # raises with the precise reason
                raise CorruptFile("record fails its checks", offset=offset)
            lsn, ts_ns = unpack_lsn_ts(buf, offset + LSN_OFFSET)
            if lsn != expected:
                raise CorruptFile(f"expected LSN {expected}, found {lsn}", offset=offset, lsn=lsn)
            if ts_ns <= prev_ts:
                raise CorruptFile(f"commit time {ts_ns} does not follow {prev_ts}", offset=offset, lsn=lsn)
            if not ends:
                first_ts = ts_ns
            ends.append(stop)
            expected += 1
            prev_ts = ts_ns
            offset = stop
    return Run(ends, first_ts, prev_ts)


def decode_payload(buf: Buffer, span: Span, *, skip_unknown: bool = False) -> Record | None:
    """Decode the operations of a record whose framing and CRC were already checked.

    Returns None for a record of an unknown future type when `skip_unknown`;
    raises CorruptFile otherwise.
    """
    offset = span.start
    _crc, _length, rtype, flags, _res, count, lsn, ts_ns = HEADER.unpack_from(buf, offset)
    if rtype not in KNOWN_TYPES:
        if skip_unknown:
            return None
        raise CorruptFile(
            f"unknown record type {rtype}",
            offset=offset,
            lsn=lsn,
            hint="a newer pitr wrote this record; read with skip_unknown to pass over it",
        )
    end = span.end
    pos = offset + HEADER_SIZE
    source_rev = None
    if flags & FLAG_SOURCE_REV:
        if end - pos < 8:
            raise CorruptFile("source revision runs past the record", offset=offset, lsn=lsn)
        (source_rev,) = U64.unpack_from(buf, pos)
        pos += 8
    if count == 0 or count > (end - pos) // OP_HEADER.size:
        raise CorruptFile(f"operation count {count} does not fit the record", offset=offset, lsn=lsn)
    ops: list[Op] = []
    op_unpack = OP_HEADER.unpack_from
    for _ in range(count):
        if end - pos < OP_HEADER.size:
            raise CorruptFile("operation header runs past the record", offset=offset, lsn=lsn)
        kind, oflags, _r, klen, vlen = op_unpack(buf, pos)
        pos += OP_HEADER.size
        expires = None
        if oflags & OP_FLAG_EXPIRY:
            if end - pos < 8:
                raise CorruptFile("expiry runs past the record", offset=offset, lsn=lsn)
            (expires,) = I64.unpack_from(buf, pos)
            pos += 8
        if klen > MAX_KEY or vlen > MAX_VALUE or klen + vlen > end - pos:
            raise CorruptFile("key or value length runs past the record", offset=offset, lsn=lsn)
        if kind == PUT:
            key = bytes(buf[pos : pos + klen])
            pos += klen
            ops.append(Op(PUT, key, bytes(buf[pos : pos + vlen]), expires))
            pos += vlen
        elif kind == DELETE:
            if vlen or expires is not None:
                raise CorruptFile("delete carries a value or expiry", offset=offset, lsn=lsn)
            ops.append(Op(DELETE, bytes(buf[pos : pos + klen])))
            pos += klen
        else:
            raise CorruptFile(f"unknown operation kind {kind}", offset=offset, lsn=lsn)
    if pos != end:
        raise CorruptFile(f"{end - pos} stray bytes after the last operation", offset=offset, lsn=lsn)
    return Record(lsn, ts_ns, tuple(ops), source_rev, rtype, bool(flags & FLAG_GAP))


def check_payload(buf: Buffer, span: Span) -> None:
    """Check a checked record's payload as `decode_payload` would, without copying keys or values.

    A record of an unknown (future) type passes: its operations are not read.
    Raises CorruptFile (offset relative to `buf`) for a body that breaks a rule.
    """
    offset, end = span.start, span.end
    _crc, _length, rtype, flags, _res, count, lsn, _ts = HEADER.unpack_from(buf, offset)
    if rtype not in KNOWN_TYPES:
        return
    pos = offset + HEADER_SIZE + (8 if flags & FLAG_SOURCE_REV else 0)
    if pos > end or count == 0 or count > (end - pos) // OP_HEADER.size:
        raise CorruptFile(f"operation count {count} does not fit the record", offset=offset, lsn=lsn)
    op_unpack = OP_HEADER.unpack_from
    op_size = OP_HEADER.size
    for _ in range(count):
        if end - pos < op_size:
            raise CorruptFile("operation header runs past the record", offset=offset, lsn=lsn)
        kind, oflags, _r, klen, vlen = op_unpack(buf, pos)
        pos += op_size + (8 if oflags & OP_FLAG_EXPIRY else 0)
        if klen > MAX_KEY or vlen > MAX_VALUE or pos + klen + vlen > end:
            raise CorruptFile("key or value length runs past the record", offset=offset, lsn=lsn)
        if kind == DELETE:
            if vlen or oflags & OP_FLAG_EXPIRY:
                raise CorruptFile("delete carries a value or expiry", offset=offset, lsn=lsn)
        elif kind != PUT:
            raise CorruptFile(f"unknown operation kind {kind}", offset=offset, lsn=lsn)
        pos += klen + vlen
    if pos != end:
        raise CorruptFile(f"{end - pos} stray bytes after the last operation", offset=offset, lsn=lsn)


def decode_records(
    buf: Buffer,
    start: int = 0,
    end: int | None = None,
    *,
    skip_unknown: bool = False,
) -> Iterator[Record]:
    """Check and decode consecutive records in buf[start:end]."""
    for span in scan_spans(buf, start, end):
        record = decode_payload(buf, span, skip_unknown=skip_unknown)
        if record is not None:
            yield record


def decode_record(data: bytes) -> Record:
    """Decode exactly one record that fills `data`."""
    span = check_record_at(data, 0, len(data))
    if span.end != len(data):
        raise CorruptFile(f"{len(data) - span.end} bytes after the record", offset=span.end)
    record = decode_payload(data, span)
    assert record is not None
    return record
