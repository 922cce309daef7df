"""Reading a WAL file that a writer may still be appending to (for archivers and replay).

Unlike `scan_wal`, this never repairs and never treats the stopping point as an
error: it returns the records that are complete and checked so far and where
to continue next time.
"""

from __future__ import annotations

import mmap
import os
from typing import NamedTuple

from segments import record as rec
from segments._errors import CorruptFile
from segments.wal import HEADER_SIZE, WalHeader, decode_header


class WalChunk(NamedTuple):
    """Checked records read from one WAL file: the bytes, their spans, and where to resume."""

    header: WalHeader
    data: bytes
    spans: list[rec.Span]
    next_offset: int


def read_wal_from(path: str, offset: int, expected_lsn: int, max_lsn: int,
                  max_bytes: int = 64 << 20) -> WalChunk:
    """Read records expected_lsn..max_lsn, scanning from byte `offset` (0 = after the header).

    Records before `expected_lsn` are checked and skipped. Stops at the end
    marker, at an incomplete record, after `max_lsn`, or after about
    `max_bytes`. Spans in the result are relative to `data`. A break in LSN
    density raises CorruptFile: the file does not continue the log.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        header = decode_header(fh.read(HEADER_SIZE), path)
        pos = max(offset, HEADER_SIZE)
        if size <= pos:
            return WalChunk(header, b"", [], pos)
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            spans: list[rec.Span] = []
            prev = header.first_lsn - 1 if pos == HEADER_SIZE else None
            first_start = None
            limit = pos + max_bytes
            while pos < size and pos < limit:
                if size - pos >= 8 and rec.PREFIX.unpack_from(buf, pos) == (0, 0):
                    break
                try:
                    span = rec.check_record_at(buf, pos, size)
                except CorruptFile:
                    break  # not yet complete (or torn): the writer's recovery decides
                if prev is not None and span.lsn != prev + 1:
                    raise CorruptFile(f"expected LSN {prev + 1}, found {span.lsn}", path=path, offset=pos,
                                      lsn=span.lsn)
                if span.lsn > max_lsn:
                    break
                prev = span.lsn
                if span.lsn >= expected_lsn:
                    if first_start is None:
                        first_start = pos
                        limit = pos + max_bytes
                    spans.append(span)
                pos = span.end
            if first_start is None:
                return WalChunk(header, b"", [], pos)
            data = buf[first_start:pos]
    shifted = [rec.Span(s.lsn, s.ts_ns, s.start - first_start, s.end - first_start) for s in spans]
    return WalChunk(header, data, shifted, pos)
