"""The replay hot path: check records and fold their operations into a key -> change map.

This is the loop a restore spends its time in, so it decodes records inline
rather than building `Record` objects; every bound is still checked before a
slice is taken. A change is ``(value, expires_at_ns)`` for a put, None for a delete.
"""

from __future__ import annotations

from crc32c import crc32c

from segments import record as rec
from segments._errors import CorruptFile

Change = tuple[bytes, int | None] | None


def fold_records(
    buf: bytes,
    changes: dict[bytes, Change],
    expected_lsn: int,
    max_lsn: int,
    max_ts_ns: int,
    *,
    path: str | None = None,
) -> tuple[int, int | None, bool]:
    """Fold the records of `buf` with expected_lsn <= LSN <= max_lsn and ts <= max_ts_ns.

    Records before `expected_lsn` are checked and skipped. Returns (the next
    expected LSN, the last folded commit time or None, whether a record past
    the limits was reached). Unknown record types are skipped.
    """
    header = rec.HEADER.unpack_from
    op_header = rec.OP_HEADER.unpack_from
    i64 = rec.I64.unpack_from
    view = memoryview(buf)
    pos, end = 0, len(buf)
    last_ts = None
    prev_lsn = None
    while pos < end:
        if end - pos < rec.HEADER_SIZE:
            raise CorruptFile("incomplete record header", path=path, offset=pos)
        crc, length, rtype, flags, _res, count, lsn, ts = header(buf, pos)
        stop = pos + 8 + length
        if length < rec.PAYLOAD_FIXED or stop > end:
            raise CorruptFile(f"record length {length} out of bounds", path=path, offset=pos)
        if crc32c(view[pos + 4 : stop]) != crc:
            raise CorruptFile("record CRC-32C mismatch", path=path, offset=pos, lsn=lsn)
        if prev_lsn is not None and lsn != prev_lsn + 1:
            raise CorruptFile(f"expected LSN {prev_lsn + 1}, found {lsn}", path=path, offset=pos, lsn=lsn)
        prev_lsn = lsn
        if lsn > max_lsn or ts > max_ts_ns:
            return expected_lsn, last_ts, True
        if lsn < expected_lsn:
            pos = stop
            continue
        if lsn != expected_lsn:
            raise CorruptFile(f"expected LSN {expected_lsn}, found {lsn}", path=path, offset=pos, lsn=lsn)
        if rtype == rec.TYPE_COMMIT:
            p = pos + rec.HEADER_SIZE + (8 if flags & rec.FLAG_SOURCE_REV else 0)
            for _ in range(count):
                if stop - p < 12:
                    raise CorruptFile("operation runs past the record", path=path, offset=pos, lsn=lsn)
                kind, oflags, _r, klen, vlen = op_header(buf, p)
                p += 12
                expires = None
                if oflags & 1:
                    expires = i64(buf, p)[0]
                    p += 8
                if p + klen + vlen > stop:
                    raise CorruptFile("operation runs past the record", path=path, offset=pos, lsn=lsn)
                key = buf[p : p + klen]
                p += klen
                if kind == rec.PUT:
                    changes[key] = (buf[p : p + vlen], expires)
                    p += vlen
                elif kind == rec.DELETE:
                    changes[key] = None
                else:
                    raise CorruptFile(f"unknown operation kind {kind}", path=path, offset=pos, lsn=lsn)
            if p != stop:
                raise CorruptFile("stray bytes after the last operation", path=path, offset=pos, lsn=lsn)
        expected_lsn = lsn + 1
        last_ts = ts
        pos = stop
    return expected_lsn, last_ts, False
