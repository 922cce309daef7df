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
    """Read records [expected_lsn, max_lsn] starting at byte `offset` (0 = after the header).

    Stops at the end marker, at an incomplete record, at `max_lsn`, or after
    about `max_bytes`. Spans in the result are relative to `data`. A record with
    the wrong LSN raises CorruptFile: the file does not continue the log.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        header = decode_header(fh.read(HEADER_SIZE), path)
        start = max(offset, HEADER_SIZE)
        if size <= start:
            return WalChunk(header, b"", [], start)
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            spans: list[rec.Span] = []
            pos = start
            lsn = expected_lsn
            limit = start + max_bytes
            while pos < size and lsn <= max_lsn and pos < limit:
                if size - pos >= 8 and rec.PREFIX.unpack_from(buf, pos) == (0, 0):
                    break
                try:
                    span = rec.check_record_at(buf, pos, size)
                except CorruptFile:
                    break  # not yet complete (or torn): the writer's recovery decides
                if span.lsn != lsn:
                    raise CorruptFile(f"expected LSN {lsn}, found {span.lsn}", path=path, offset=pos,
                                      lsn=span.lsn)
                spans.append(span)
                lsn += 1
                pos = span.end
            data = buf[start:pos]
    shifted = [rec.Span(s.lsn, s.ts_ns, s.start - start, s.end - start) for s in spans]
    return WalChunk(header, data, shifted, pos)
