"""Reading a WAL file that a writer may still be appending to (for archivers and replay).

Unlike `scan_wal`, this never repairs and never treats the stopping point as an
error: it returns the records that are complete and checked so far and where
to continue next time. Only whole commit groups (frames) whose checksums pass
are read; the records come back without their frames, exactly as the archive
stores them.
"""

from __future__ import annotations

import mmap
import os
from typing import NamedTuple

from segments import record as rec
from segments._errors import CorruptFile
from segments.wal_format import (
    HEADER_SIZE,
    InvalidUnit,
    WalHeader,
    check_unit_at,
    decode_header,
    is_end_marker,
)


class WalChunk(NamedTuple):
    """Checked records read from one WAL file: the bytes, their spans, and where to resume."""

    header: WalHeader
    data: bytes
    spans: list[rec.Span]
    next_offset: int


def read_wal_from(path: str, offset: int, expected_lsn: int, max_lsn: int,
                  max_bytes: int = 64 << 20) -> WalChunk:
    """Read records expected_lsn..max_lsn, scanning from byte `offset` (0 = after the header).

    `offset` must be 0 or a `next_offset` this function returned for the
    same file. Records before `expected_lsn` are checked and skipped. Stops at
    the end marker, at an incomplete or torn group, after `max_lsn`, or after
    about `max_bytes`. Spans in the result are relative to `data`. A record
    that breaks a rule inside a checksummed group, or a break in LSN density,
    raises CorruptFile naming the file and the absolute offset.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        header = decode_header(fh.read(HEADER_SIZE), path)
        pos = max(offset, HEADER_SIZE)
        if size <= pos:
            return WalChunk(header, b"", [], pos)
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _read_units(buf, path, header, pos, size, expected_lsn, max_lsn, max_bytes)


def _read_units(buf: mmap.mmap, path: str, header: WalHeader, pos: int, size: int, expected_lsn: int,
                max_lsn: int, max_bytes: int) -> WalChunk:
    pieces: list[bytes] = []
    spans: list[rec.Span] = []
    taken = data_len = 0
    prev = header.first_lsn - 1 if pos == HEADER_SIZE else None
    while pos < size and taken < max_bytes:
        if is_end_marker(buf, pos, size):
            break
        try:
            unit = check_unit_at(buf, pos, size, header.version)
        except InvalidUnit as exc:
            raise exc.located(path=path) from exc
        except CorruptFile:
            break  # not yet complete (or torn): the writer's recovery decides
        first, last = unit.spans[0].lsn, unit.spans[-1].lsn
        if prev is not None and first != prev + 1:
            raise CorruptFile(f"expected LSN {prev + 1}, found {first}", path=path, offset=pos, lsn=first)
        if last >= expected_lsn:
            if first > max_lsn:
                break
            kept: list[rec.Span] = []
            for span in unit.spans:
                if span.lsn < expected_lsn:
                    continue
                if span.lsn > max_lsn or (kept and taken >= max_bytes):
                    break
                kept.append(span)
                taken += span.end - span.start
            base = data_len - kept[0].start
            pieces.append(bytes(buf[kept[0].start : kept[-1].end]))
            data_len += kept[-1].end - kept[0].start
            spans.extend(rec.Span(s.lsn, s.ts_ns, s.start + base, s.end + base) for s in kept)
            if kept[-1].lsn != last:
                break  # the group goes on past what was taken: the next read resumes at its start
        prev = last
        pos = unit.end
    return WalChunk(header, b"".join(pieces), spans, pos)
