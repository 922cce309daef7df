"""The replay hot path: check records and fold their operations into a key -> change map.

This is the loop a restore spends its time in, so it decodes records inline
rather than building `Record` objects, with a fast path for the common
single-operation commit; every bound is still checked before a slice is
taken. Per record it unpacks one struct that skips the fields the loop does
not need (the CRC unless it checks it, the reserved bytes) and stores the
value itself rather than a tuple, so a single-put commit costs two slices
and one dict store.

A change is the new value (bytes) for a put without expiry,
``(value, expires_at_ns)`` for a put with one, and None for a delete.
"""

from __future__ import annotations

import struct

from crc32c import crc32c

from segments import record as rec
from segments._errors import CorruptFile

Change = bytes | tuple[bytes, int] | None

# rec.FIRST_OP without the CRC and the two reserved fields:
# length, type, flags, op_count, lsn, ts, kind, op flags, key length, value length
_FIRST_OP_LEAN = struct.Struct("<4xIBB2xIQqBB2xII")
assert _FIRST_OP_LEAN.size == rec.FIRST_OP_SIZE


def change_of(op: rec.Op) -> Change:
    """The change an operation makes."""
    if op.kind != rec.PUT:
        return None
    return op.value if op.expires_at_ns is None else (op.value, op.expires_at_ns)


def change_value(change: bytes | tuple[bytes, int]) -> tuple[bytes, int | None]:
    """A put's change as (value, expires_at_ns or None)."""
    if isinstance(change, bytes):
        return change, None
    return change


def fold_records(
    buf: bytes,
    changes: dict[bytes, Change],
    expected_lsn: int,
    max_lsn: int,
    max_ts_ns: int,
    *,
    path: str | None = None,
    check_crc: bool = True,
) -> tuple[int, int | None, bool]:
    """Fold the records of `buf` with expected_lsn <= LSN <= max_lsn and ts <= max_ts_ns.

    Records before `expected_lsn` are checked and skipped. Returns (the next
    expected LSN, the last folded commit time or None, whether a record past
    the limits was reached). A record of an unknown type is refused
    (CorruptFile), never passed over: the state without it would be wrong.

    `check_crc=False` skips the per-record CRC when the caller has already
    checked a checksum covering these exact bytes (an archive block's CRC).
    """
    first_op = _FIRST_OP_LEAN.unpack_from
    u32 = rec.PREFIX.unpack_from
    view = memoryview(buf)
    pos, end = 0, len(buf)
    last_ts = None
    prev_lsn = expected_lsn - 1
    first = True
    put, delete, commit = rec.PUT, rec.DELETE, rec.TYPE_COMMIT
    op_size, fixed = rec.FIRST_OP_SIZE, rec.PAYLOAD_FIXED  # locals: this loop runs per record
    fast = not check_crc
    while pos < end:
        if fast and prev_lsn == expected_lsn - 1:
            # The common case in one test per record: the next LSN, within the limits, a commit of
            # one put without expiry whose operation fills the record exactly. Anything else
            # leaves this loop for the full checks below, one record at a time.
            resumed = pos
            while end - pos >= op_size:
                length, rtype, flags, count, lsn, ts, kind, oflags, klen, vlen = first_op(buf, pos)
                stop = pos + 8 + length
                if lsn != expected_lsn or lsn > max_lsn or ts > max_ts_ns or kind != put or count != 1 \
                        or rtype != commit or flags or oflags or stop > end or op_size + klen + vlen != stop - pos:
                    break
                p = pos + op_size
                changes[buf[p : p + klen]] = buf[p + klen : stop]
                expected_lsn = lsn + 1
                last_ts = ts
                pos = stop
            if pos != resumed:
                prev_lsn = expected_lsn - 1
                first = False
                if pos >= end:
                    break
        if end - pos >= op_size:
            length, rtype, flags, count, lsn, ts, kind, oflags, klen, vlen = first_op(buf, pos)
        else:
            if end - pos < rec.HEADER_SIZE:
                raise CorruptFile("incomplete record header", path=path, offset=pos)
            _crc, length, rtype, flags, _r, count, lsn, ts = rec.HEADER.unpack_from(buf, pos)
            kind = oflags = klen = vlen = -1
        stop = pos + 8 + length
        if length < fixed or stop > end:
            raise CorruptFile(f"record length {length} out of bounds", path=path, offset=pos)
        if check_crc and crc32c(view[pos + 4 : stop]) != u32(buf, pos)[0]:
            raise CorruptFile("record CRC-32C mismatch", path=path, offset=pos, lsn=lsn)
        if lsn != prev_lsn + 1:
            if not first or lsn > expected_lsn:
                raise CorruptFile(f"expected LSN {prev_lsn + 1}, found {lsn}", path=path, offset=pos, lsn=lsn)
            # the block starts before expected_lsn: skip (but check) the records before it
        first = False
        prev_lsn = lsn
        if lsn > max_lsn or ts > max_ts_ns:
            return expected_lsn, last_ts, True
        if lsn < expected_lsn:
            pos = stop
            continue
        if rtype != commit:
            # a restore that passed over a commit it cannot read would exit 0 with the wrong state
            raise CorruptFile(f"unknown record type {rtype}", path=path, offset=pos, lsn=lsn,
                              hint="a newer pitr wrote this record; upgrade pitr to replay it")
        if count == 1 and flags == 0 and oflags == 0 and op_size + klen + vlen == stop - pos:
            p = pos + op_size
            if kind == put:
                changes[buf[p : p + klen]] = buf[p + klen : stop]
            elif kind == delete and vlen == 0:
                changes[buf[p:stop]] = None
            else:
                raise CorruptFile(f"bad operation kind {kind}", path=path, offset=pos, lsn=lsn)
        else:
            _fold_ops(buf, pos, stop, flags, count, lsn, changes, path)
        expected_lsn = lsn + 1
        last_ts = ts
        pos = stop
    return expected_lsn, last_ts, False


def _fold_ops(buf: bytes, pos: int, stop: int, flags: int, count: int, lsn: int,
              changes: dict[bytes, Change], path: str | None) -> None:
    """The general case: several operations, expiries or a source revision."""
    op_header = rec.OP_HEADER.unpack_from
    i64 = rec.I64.unpack_from
    p = pos + rec.HEADER_SIZE + (8 if flags & rec.FLAG_SOURCE_REV else 0)
    if count == 0:
        raise CorruptFile("a commit without operations", path=path, offset=pos, lsn=lsn)
    for _ in range(count):
        if stop - p < rec.OP_HEADER.size:
            raise CorruptFile("operation runs past the record", path=path, offset=pos, lsn=lsn)
        kind, oflags, _r, klen, vlen = op_header(buf, p)
        p += rec.OP_HEADER.size
        expires = None
        if oflags & rec.OP_FLAG_EXPIRY:
            if stop - p < 8:
                raise CorruptFile("operation runs past the record", path=path, offset=pos, lsn=lsn)
            expires = i64(buf, p)[0]
            p += 8
        if p + klen + vlen > stop:
            raise CorruptFile("operation runs past the record", path=path, offset=pos, lsn=lsn)
        key = buf[p : p + klen]
        p += klen
        if kind == rec.PUT:
            changes[key] = buf[p : p + vlen] if expires is None else (buf[p : p + vlen], expires)
            p += vlen
        elif kind == rec.DELETE and vlen == 0:
            changes[key] = None
        else:
            raise CorruptFile(f"bad operation kind {kind}", path=path, offset=pos, lsn=lsn)
    if p != stop:
        raise CorruptFile("stray bytes after the last operation", path=path, offset=pos, lsn=lsn)
