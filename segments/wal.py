"""Local write-ahead log files: recovery of torn tails, refusal on mid-log damage.

A WAL file is a 64-byte header followed by one frame per commit group (the
frame header carries the group's length, record count, first LSN and a
CRC-32C of its records), then zeros up to the preallocated size. Eight zero
bytes where a frame would start, or the end of the file, mark the end of the
log. See docs/format.md, "WAL file". Version 1 files (records back to back,
no frames) are still read; the unit of reasoning there is one record.

Recovery rule: write units (frames) are read until the first one that fails
its checks. Groups are written one at a time, each fsynced before the next,
so only the last unit can be unsynced: if no valid unit follows the failure,
the failing bytes are a torn tail from a crash between write and fsync; they
are copied to ``<file>.broken`` and the file is truncated. If a valid unit
follows, acknowledged data was damaged: opening is refused with
`MidLogCorruption` naming the file, the offset and the LSN. A unit whose
checksums pass but whose contents break a rule (an invalid record body, an
LSN out of order) was written so and is refused the same way, wherever it is.

The writer lives in `segments.wal_writer`; this module re-exports it.
"""

from __future__ import annotations

import mmap
import os
import re
import sys
from array import array
from dataclasses import dataclass

from segments import record as rec
from segments._errors import CorruptFile, MidLogCorruption
from segments.fsutil import fsync_dir
from segments.wal_format import (
    FRAME_LSN_OFFSET,
    FRAME_SIZE,
    HEADER_SIZE,
    MAGIC,
    OLDEST_VERSION,
    VERSION,
    InvalidUnit,
    WalHeader,
    check_unit_at,
    decode_header,
    encode_frame,
    encode_header,
    is_end_marker,
    wal_name,
)
from segments.wal_writer import PREALLOCATE, WalFileOps, WalWriter

__all__ = [
    "FRAME_SIZE", "HEADER_SIZE", "MAGIC", "OLDEST_VERSION", "PREALLOCATE", "VERSION", "TornTail",
    "WalFileOps", "WalHeader", "WalScan", "WalWriter", "abandon_unborn", "decode_header",
    "encode_frame", "encode_header", "scan_wal", "spans_until", "wal_name",
]

MID_LOG_HINT = ("acknowledged commits are damaged; restore from the archive (pitr restore), or move this "
                "file aside to open the store without its records from this offset on")


@dataclass(frozen=True, slots=True)
class TornTail:
    """Bytes removed from the end of a WAL file at recovery."""

    offset: int
    length: int
    broken_path: str
    reason: str


@dataclass(frozen=True, slots=True)
class WalScan:
    """What opening a WAL file found: its header, the checked record spans and the end."""

    path: str
    header: WalHeader
    spans: list[rec.Span]
    end: int
    torn: TornTail | None
    #: offset of the last unit (frame) scanned, HEADER_SIZE when there is none
    last_unit: int = HEADER_SIZE

    @property
    def last_lsn(self) -> int:
        """LSN of the last record, or first_lsn - 1 when the file holds none."""
        return self.spans[-1].lsn if self.spans else self.header.first_lsn - 1

    @property
    def last_ts_ns(self) -> int | None:
        return self.spans[-1].ts_ns if self.spans else None


def scan_wal(path: str, *, repair: bool = False, start: int = HEADER_SIZE) -> WalScan:
    """Read a WAL file, checking every unit and record; optionally repair a torn tail.

    Without `repair`, a torn tail is reported in the result but left in place.
    Raises `MidLogCorruption` for damage before the last unit, `CorruptFile`
    for a bad header, `UnsupportedVersion` for a newer file.

    `start`, when not the first unit, is the offset of a unit the caller has
    already found valid (its checksums checked): the scan, and the spans
    returned, begin there, and the units before it are not read. The LSN rule
    then runs from that unit's first LSN. A `start` that is not such a unit
    would turn the whole file after it into a "torn tail": check it first.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise CorruptFile("empty WAL file (no header)", path=path, offset=0)
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            header = decode_header(buf[:HEADER_SIZE], path)
            spans, end, last_unit, failure = _scan_units(buf, path, header, size, start)
            if start > HEADER_SIZE and not spans:
                # never a torn tail (or an append point) from a start that is not a unit: scan it whole
                why = f" ({failure.reason})" if failure is not None else ""
                raise CorruptFile(f"no valid write unit at offset {start}{why}", path=path, offset=start)
            torn = None
            if failure is not None:
                tail_end = _last_nonzero(buf, end, size)
                if tail_end > end:
                    _refuse_if_valid_units_follow(buf, path, spans, header, end, tail_end, size, failure)
                    torn = TornTail(end, tail_end - end, _broken_path(path), failure.reason)
                    if repair:
                        _keep_aside(torn.broken_path, buf[end:tail_end])
    if torn is not None and repair:
        with open(path, "r+b") as fh:
            fh.truncate(end)
            os.fsync(fh.fileno())
        fsync_dir(os.path.dirname(path) or ".")
    return WalScan(path, header, spans, end, torn, last_unit)


def spans_until(buf: rec.Buffer, header: WalHeader, stop: int) -> list[rec.Span]:
    """The record spans of the units in [HEADER_SIZE, stop) (a dump of what precedes damage)."""
    spans: list[rec.Span] = []
    offset = HEADER_SIZE
    while offset < stop:
        try:
            unit = check_unit_at(buf, offset, stop, header.version)
        except CorruptFile:  # the unit `stop` falls in: its records before `stop`
            first = offset + (FRAME_SIZE if header.version >= 2 else 0)
            spans.extend(rec.scan_spans(buf, first, stop) if first < stop else ())
            break
        spans.extend(unit.spans)
        offset = unit.end
    return spans


def _scan_units(
    buf: mmap.mmap, path: str, header: WalHeader, size: int, start: int = HEADER_SIZE
) -> tuple[list[rec.Span], int, int, CorruptFile | None]:
    spans: list[rec.Span] = []
    offset = last_unit = max(start, HEADER_SIZE)
    expected: int | None = header.first_lsn if offset == HEADER_SIZE else None  # else the first unit's
    last_ts: int | None = None
    framed = header.version >= 2
    while offset < size:
        if is_end_marker(buf, offset, size):
            return spans, offset, last_unit, CorruptFile("end marker", offset=offset)
        try:
            unit = check_unit_at(buf, offset, size, header.version)
        except InvalidUnit as exc:
            raise _mid_log(path, exc.offset if exc.offset is not None else offset,
                           exc.lsn or expected or header.first_lsn, exc.reason) from exc
        except CorruptFile as exc:
            return spans, offset, last_unit, exc
        first = unit.spans[0]
        if expected is None:
            expected = first.lsn
        problem = None
        if first.lsn != expected:
            problem = CorruptFile(f"expected LSN {expected}, found {first.lsn}", offset=offset, lsn=first.lsn)
        elif last_ts is not None and first.ts_ns <= last_ts:
            problem = CorruptFile(f"commit time {first.ts_ns} does not follow {last_ts}", offset=offset,
                                  lsn=first.lsn)
        else:
            problem = _unordered_times(unit.spans)
        if problem is not None:
            if framed:  # a checksummed frame out of place was written so: never a torn write
                raise _mid_log(path, problem.offset or offset, problem.lsn or expected, problem.reason)
            return spans, offset, last_unit, problem
        spans.extend(unit.spans)
        last_ts = unit.spans[-1].ts_ns
        expected = unit.spans[-1].lsn + 1
        last_unit = offset
        offset = unit.end
    return spans, offset, last_unit, None


def _unordered_times(spans: list[rec.Span]) -> CorruptFile | None:
    for before, after in zip(spans, spans[1:], strict=False):
        if after.ts_ns <= before.ts_ns:
            return CorruptFile(f"commit time {after.ts_ns} does not follow {before.ts_ns}", offset=after.start,
                               lsn=after.lsn)
    return None


def _mid_log(path: str, offset: int, lsn: int, reason: str) -> MidLogCorruption:
    return MidLogCorruption(reason, path=path, offset=offset, lsn=lsn, hint=MID_LOG_HINT)


_ZEROS = bytes(1 << 20)


def _last_nonzero(buf: mmap.mmap, start: int, size: int) -> int:
    """Offset just past the last non-zero byte in [start, size), or start if all zero."""
    pos = size
    while pos > start:
        lo = max(start, pos - len(_ZEROS))
        block = buf[lo:pos]
        if block == _ZEROS[: pos - lo]:  # memcmp: the preallocated zeros ten times faster than rstrip
            pos = lo
            continue
        return lo + len(block.rstrip(b"\0"))
    return start


def _refuse_if_valid_units_follow(
    buf: mmap.mmap,
    path: str,
    spans: list[rec.Span],
    header: WalHeader,
    bad: int,
    tail_end: int,
    size: int,
    failure: CorruptFile,
) -> None:
    expected = spans[-1].lsn + 1 if spans else header.first_lsn
    # Every unit is at least one record header long, so no later unit can carry a higher LSN.
    highest = expected + (size - bad) // rec.HEADER_SIZE
    found = _first_valid_unit_after(buf, bad, tail_end, size, expected, highest, header.version)
    if found is not None:
        unit_kind = "commit group" if header.version >= 2 else "record"
        raise MidLogCorruption(
            f"{unit_kind} at LSN {expected} is damaged ({failure.reason}) but a valid {unit_kind} "
            f"with LSN {found[1]} follows at offset {found[0]}",
            path=path,
            offset=bad,
            lsn=expected,
            hint=MID_LOG_HINT,
        )


def _first_valid_unit_after(
    buf: mmap.mmap, bad: int, stop: int, size: int, lowest: int, highest: int, version: int
) -> tuple[int, int] | None:
    """(offset, LSN) of the first unit starting in (bad, stop) whose checksums pass, with an LSN in range.

    Every byte offset is a candidate (damage can shift anything), so the LSN
    field under each offset is read eight alignments at a time and only offsets
    with a plausible LSN are checked; the search stops at the first hit.
    """
    window_size = 1 << 16
    for base in range(bad + 1, stop, window_size):
        top = min(base + window_size, stop)
        fields = bytes(buf[base + FRAME_LSN_OFFSET : min(size, top + FRAME_LSN_OFFSET + 7)])
        candidates: list[int] = []
        for align in range(8):
            count = (len(fields) - align) // 8
            if count <= 0:
                continue
            lsns = array("Q", fields[align : align + 8 * count])
            if sys.byteorder != "little":
                lsns.byteswap()
            candidates.extend(base + align + 8 * i for i, lsn in enumerate(lsns) if lowest <= lsn <= highest)
        for start in sorted(candidates):
            try:
                unit = check_unit_at(buf, start, size, version)
            except InvalidUnit as exc:  # its checksums pass: written data follows the damage
                return start, exc.lsn if exc.lsn is not None else lowest
            except CorruptFile:
                continue
            return start, unit.spans[0].lsn
    return None


_WAL_NAME = re.compile(r"^(\d{20})\.wal$")


def abandon_unborn(path: str) -> TornTail | None:
    """Move aside a newest WAL file whose creation a crash interrupted; None if it may hold commits.

    A WAL file's header is fsynced (with its directory) before any commit is
    appended, so a file whose header is missing or damaged and which holds no
    unit with valid checksums never acknowledged anything. It is renamed to
    ``<file>.broken`` (never overwriting) so the store can start that file
    again. Call only for the newest file.
    """
    match = _WAL_NAME.match(os.path.basename(path))
    if match is None:
        return None
    first_lsn = int(match.group(1))
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size:
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                tail_end = _last_nonzero(buf, 0, size)
                highest = first_lsn + size // rec.HEADER_SIZE
                for version in range(OLDEST_VERSION, VERSION + 1):
                    if tail_end and _first_valid_unit_after(buf, -1, tail_end, size, first_lsn, highest,
                                                            version) is not None:
                        return None
        else:
            tail_end = 0
    broken = _broken_path(path)
    os.link(path, broken)
    os.unlink(path)
    fsync_dir(os.path.dirname(path) or ".")
    return TornTail(0, tail_end, broken, "the file's creation was interrupted (no valid header)")


def _broken_path(path: str) -> str:
    candidate = path + ".broken"
    n = 1
    while os.path.exists(candidate):
        candidate = f"{path}.broken.{n}"
        n += 1
    return candidate


def _keep_aside(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
