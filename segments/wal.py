"""Local write-ahead log files: append, group fsync, preallocation, torn-tail repair.

A WAL file is a 64-byte header followed by records (segments.record) and then
zeros up to the preallocated size. The first zero record prefix (crc 0, length 0)
or the end of the file marks the end of the log. See docs/format.md, "WAL file".

Recovery rule: the records are read until the first one that fails its checks.
If only zeros follow, the log ends there. If no valid record with a later LSN
follows, the failing bytes are a torn tail from a crash between write and
fsync: they are copied to ``<file>.broken`` and the file is truncated. If a valid
later record does follow, acknowledged data was damaged: opening is refused
with `MidLogCorruption` naming the file, the offset and the LSN.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
import uuid
from array import array
from dataclasses import dataclass

from crc32c import crc32c

from segments import record as rec
from segments._errors import CorruptFile, MidLogCorruption, SegmentsError, UnsupportedVersion, WriterPoisoned
from segments.fsutil import fsync_dir

MAGIC = b"PITRWAL\n"
VERSION = 1
HEADER = struct.Struct("<8sHHI16sQq12sI")
HEADER_SIZE = HEADER.size  # 64
PREALLOCATE = 16 << 20


@dataclass(frozen=True, slots=True)
class WalHeader:
    """The fixed header of a WAL file."""

    store_id: uuid.UUID
    first_lsn: int
    created_ts_ns: int


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

    @property
    def last_lsn(self) -> int:
        """LSN of the last record, or first_lsn - 1 when the file holds none."""
        return self.spans[-1].lsn if self.spans else self.header.first_lsn - 1

    @property
    def last_ts_ns(self) -> int | None:
        return self.spans[-1].ts_ns if self.spans else None


def encode_header(header: WalHeader) -> bytes:
    body = HEADER.pack(
        MAGIC, VERSION, HEADER_SIZE, 0, header.store_id.bytes, header.first_lsn,
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
    if version < 1 or size != HEADER_SIZE:
        raise CorruptFile(f"bad WAL header version {version} / size {size}", path=path, offset=0)
    return WalHeader(uuid.UUID(bytes=store_id), first_lsn, created)


def wal_name(first_lsn: int) -> str:
    return f"{first_lsn:020d}.wal"


def scan_wal(path: str, *, repair: bool = False) -> WalScan:
    """Read a WAL file, checking every record; optionally repair a torn tail.

    Without `repair`, a torn tail is reported in the result but left in place.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise CorruptFile("empty WAL file (no header)", path=path, offset=0)
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            header = decode_header(buf[:HEADER_SIZE], path)
            spans, end, failure = _scan_records(buf, header, size)
            torn = None
            if failure is not None:
                tail_end = _last_nonzero(buf, end, size)
                if tail_end > end:
                    _refuse_if_valid_records_follow(buf, path, spans, header, end, tail_end, size, failure)
                    torn = TornTail(end, tail_end - end, _broken_path(path), failure.reason)
                    if repair:
                        _keep_aside(torn.broken_path, buf[end:tail_end])
    if torn is not None and repair:
        with open(path, "r+b") as fh:
            fh.truncate(end)
            os.fsync(fh.fileno())
        fsync_dir(os.path.dirname(path) or ".")
    return WalScan(path, header, spans, end, torn)


def _scan_records(
    buf: mmap.mmap, header: WalHeader, size: int
) -> tuple[list[rec.Span], int, CorruptFile | None]:
    spans: list[rec.Span] = []
    offset = HEADER_SIZE
    expected = header.first_lsn
    last_ts = None
    prefix = rec.PREFIX
    while offset < size:
        if size - offset >= 8:
            crc, length = prefix.unpack_from(buf, offset)
            if crc == 0 and length == 0:
                return spans, offset, CorruptFile("end marker", offset=offset)
        try:
            span = rec.check_record_at(buf, offset, size)
        except CorruptFile as exc:
            return spans, offset, exc
        if span.lsn != expected:
            return spans, offset, CorruptFile(
                f"expected LSN {expected}, found {span.lsn}", offset=offset, lsn=span.lsn
            )
        if last_ts is not None and span.ts_ns <= last_ts:
            return spans, offset, CorruptFile(
                f"commit time {span.ts_ns} does not follow {last_ts}", offset=offset, lsn=span.lsn
            )
        spans.append(span)
        last_ts = span.ts_ns
        expected += 1
        offset = span.end
    return spans, offset, None


def _last_nonzero(buf: mmap.mmap, start: int, size: int) -> int:
    """Offset just past the last non-zero byte in [start, size), or start if all zero."""
    pos = size
    chunk = 1 << 20
    while pos > start:
        lo = max(start, pos - chunk)
        block = buf[lo:pos]
        stripped = block.rstrip(b"\0")
        if stripped:
            return lo + len(stripped)
        pos = lo
    return start


def _refuse_if_valid_records_follow(
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
    # Every record is at least HEADER_SIZE bytes, so no later record can carry a higher LSN.
    highest = expected + (size - bad) // rec.HEADER_SIZE
    found = _first_valid_record_after(buf, bad, tail_end, size, expected, highest)
    if found is not None:
        raise MidLogCorruption(
            f"record at LSN {expected} is damaged ({failure.reason}) but a valid record "
            f"with LSN {found.lsn} follows at offset {found.start}",
            path=path,
            offset=bad,
            lsn=expected,
            hint="acknowledged commits are damaged; restore from the archive "
            "(pitr restore) or move this file aside to open without its later records",
        )


def _first_valid_record_after(
    buf: mmap.mmap, bad: int, stop: int, size: int, lowest: int, highest: int
) -> rec.Span | None:
    """The first record starting in (bad, stop) that passes its checks with an LSN in [lowest, highest].

    Every byte offset is a candidate (damage can shift anything), so the LSN
    field under each offset is read eight alignments at a time and only offsets
    with a plausible LSN are CRC-checked; the search stops at the first hit.
    """
    window_size = 1 << 16
    for base in range(bad + 1, stop, window_size):
        top = min(base + window_size, stop)
        # LSN fields of the records that would start in [base, top)
        fields = bytes(buf[base + rec.LSN_OFFSET : min(size, top + rec.LSN_OFFSET + 7)])
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
                return rec.check_record_at(buf, start, size)
            except CorruptFile:
                continue
    return None


def _broken_path(path: str) -> str:
    candidate = path + ".broken"
    n = 1
    while os.path.exists(candidate):
        candidate = f"{path}.broken.{n}"
        n += 1
    return candidate


def _keep_aside(path: str, data: bytes) -> None:
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class WalWriter:
    """Appends records to one WAL file; the caller decides when a commit group is fsynced.

    An OSError from fsync poisons the writer: every later call raises
    WriterPoisoned, because the kernel may have dropped the dirty pages and a
    retry could report success for data that never reached the disk.
    """

    def __init__(
        self, path: str, fd: int, offset: int, allocated: int, header: WalHeader,
        preallocate: int = PREALLOCATE,
    ) -> None:
        self.path = path
        self.header = header
        self._fd = fd
        self._offset = offset
        self._allocated = allocated
        self._preallocate = max(preallocate, 0)
        self._poisoned: BaseException | None = None

    @classmethod
    def create(
        cls, path: str, store_id: uuid.UUID, first_lsn: int, created_ts_ns: int,
        preallocate: int = PREALLOCATE,
    ) -> WalWriter:
        """Create a new WAL file (never overwriting one) and make it durable."""
        header = WalHeader(store_id, first_lsn, created_ts_ns)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.pwrite(fd, encode_header(header), 0)
            allocated = _preallocate(fd, HEADER_SIZE, max(preallocate, HEADER_SIZE))
            os.fsync(fd)
            fsync_dir(os.path.dirname(path) or ".")
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        return cls(path, fd, HEADER_SIZE, allocated, header, preallocate)

    @classmethod
    def reopen(cls, scan: WalScan, preallocate: int = PREALLOCATE) -> WalWriter:
        """Continue appending after the last valid record of a scanned (and repaired) file."""
        if scan.torn is not None and os.path.getsize(scan.path) > scan.end:
            raise SegmentsError(f"{scan.path}: torn tail not repaired; scan with repair=True first")
        fd = os.open(scan.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            allocated = size
            if size < scan.end + preallocate // 4:
                allocated = _preallocate(fd, size, scan.end + preallocate)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(scan.path, fd, scan.end, allocated, scan.header, preallocate)

    @property
    def size(self) -> int:
        """Bytes of header and records written so far."""
        return self._offset

    def append(self, data: bytes) -> None:
        """Write encoded records after the last ones (not yet durable)."""
        if self._poisoned is not None:
            raise WriterPoisoned(f"{self.path}: an earlier fsync failed; reopen the store") from self._poisoned
        end = self._offset + len(data)
        try:
            if end > self._allocated:
                self._allocated = _preallocate(self._fd, self._allocated, end + self._preallocate)
            written = os.pwrite(self._fd, data, self._offset)
            while written < len(data):
                written += os.pwrite(self._fd, data[written:], self._offset + written)
        except OSError as exc:
            self._poisoned = exc
            raise
        self._offset = end

    def sync(self) -> None:
        """Make everything appended durable (fdatasync). Failure poisons the writer."""
        if self._poisoned is not None:
            raise WriterPoisoned(f"{self.path}: an earlier fsync failed; reopen the store") from self._poisoned
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            self._poisoned = exc
            raise WriterPoisoned(f"{self.path}: fsync failed: {exc}; reopen the store") from exc

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _preallocate(fd: int, start: int, end: int) -> int:
    """Reserve [start, end) as zeros; returns the new allocated size."""
    if end <= start:
        return start
    try:
        os.posix_fallocate(fd, start, end - start)
    except OSError as exc:
        if exc.errno not in (95, 22):  # EOPNOTSUPP, EINVAL: filesystem without fallocate
            raise
        os.ftruncate(fd, end)
    return end
