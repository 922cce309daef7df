"""Appending commit groups to a WAL file: one frame per group, group fsync, preallocation.

The writer's system calls go through a `WalFileOps` object, so a test can
trace every write and fsync (to rebuild what a disk could hold after a power
cut) or inject a fault (a full disk) without touching the `os` module.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Sequence
from typing import Protocol

from segments import record as rec
from segments._errors import SegmentsError, WriterPoisoned
from segments.fsutil import fsync_dir
from segments.wal_format import HEADER_SIZE, VERSION, WalHeader, encode_frame, encode_header

PREALLOCATE = 16 << 20
MIN_PREALLOCATE = 64 << 10  # below this a degraded preallocation gives up and lets writes extend the file
_NO_FALLOCATE = (errno.EOPNOTSUPP, errno.EINVAL)  # a file system without fallocate
_FULL = (errno.ENOSPC, errno.EDQUOT)


class WalFileOps:
    """The system calls a `WalWriter` makes (the default makes them; subclasses trace or fail them)."""

    def open_new(self, path: str) -> int:
        """Create `path` exclusively, private to the user."""
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)

    def open_existing(self, path: str) -> int:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def pwrite(self, fd: int, buffers: Sequence[bytes], offset: int) -> int:
        return os.pwritev(fd, buffers, offset)

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        os.posix_fallocate(fd, offset, length)

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fsync_dir(self, path: str) -> None:
        fsync_dir(path)

    def size(self, fd: int) -> int:
        return os.fstat(fd).st_size

    def close(self, fd: int) -> None:
        os.close(fd)

    def unlink(self, path: str) -> None:
        os.unlink(path)


DEFAULT_OPS = WalFileOps()


class WalWriter:
    """Appends commit groups to one WAL file; the caller decides when they are fsynced.

    Each `append` writes one frame: the caller appends one commit group and
    syncs it before appending the next, so only the last frame is ever
    unsynced (recovery relies on it). An OSError from a write or fsync
    poisons the writer: every later call raises WriterPoisoned, because the
    kernel may have dropped the dirty pages and a retry could report success
    for data that never reached the disk.
    """

    def __init__(
        self, path: str, fd: int, offset: int, allocated: int, header: WalHeader,
        preallocate: int = PREALLOCATE, ops: WalFileOps = DEFAULT_OPS,
    ) -> None:
        self.path = path
        self.header = header
        self._fd = fd
        self._offset = offset
        self._allocated = allocated
        self._preallocate = max(preallocate, 0)
        self._ops = ops
        self._poisoned: BaseException | None = None
        self._degraded = False

    @classmethod
    def create(
        cls, path: str, store_id: uuid.UUID, first_lsn: int, created_ts_ns: int,
        preallocate: int = PREALLOCATE, ops: WalFileOps = DEFAULT_OPS,
    ) -> WalWriter:
        """Create a new WAL file (never overwriting one) and make it durable."""
        header = WalHeader(store_id, first_lsn, created_ts_ns, VERSION)
        fd = ops.open_new(path)
        try:
            written = ops.pwrite(fd, [encode_header(header)], 0)
            if written != HEADER_SIZE:
                raise OSError(errno.EIO, f"short write of the WAL header ({written} bytes)")
            writer = cls(path, fd, HEADER_SIZE, HEADER_SIZE, header, preallocate, ops)
            writer._allocated = writer._reserve(HEADER_SIZE, max(preallocate, HEADER_SIZE), HEADER_SIZE)
            ops.fsync(fd)
            ops.fsync_dir(os.path.dirname(path) or ".")
        except BaseException:
            ops.close(fd)
            ops.unlink(path)
            raise
        return writer

    @classmethod
    def reopen(cls, scan: _Scanned, preallocate: int = PREALLOCATE, ops: WalFileOps = DEFAULT_OPS) -> WalWriter:
        """Continue appending after the last valid record of a scanned (and repaired) file.

        Only files of the current version are appended to; a version 1 file is
        left as it is (the store starts a new file after it).
        """
        if scan.header.version != VERSION:
            raise SegmentsError(f"{scan.path}: WAL format version {scan.header.version} is read only; "
                                f"start a new file")
        if scan.torn is not None and os.path.getsize(scan.path) > scan.end:
            raise SegmentsError(f"{scan.path}: torn tail not repaired; scan with repair=True first")
        fd = ops.open_existing(scan.path)
        try:
            size = ops.size(fd)
            writer = cls(scan.path, fd, scan.end, size, scan.header, preallocate, ops)
            if size < scan.end + preallocate // 4:
                writer._allocated = writer._reserve(size, scan.end + preallocate, size)
                ops.fsync(fd)
        except BaseException:
            ops.close(fd)
            raise
        return writer

    @property
    def size(self) -> int:
        """Bytes of header and frames written so far."""
        return self._offset

    def append(self, data: bytes, last_lsn: int | None = None, *, count: int | None = None) -> None:
        """Write one commit group (encoded records, the first at the start of `data`) as one frame.

        `count`, the number of records in `data` when the caller knows it (it
        queued them), spares counting them; with `last_lsn` too, a group whose
        records cannot be first_lsn..last_lsn is refused before anything is
        written (the frame's count is the records framed, never derived from
        the LSNs). Not yet durable: call `sync` before appending the next group.
        """
        if self._poisoned is not None:
            raise WriterPoisoned(f"{self.path}: an earlier write or fsync failed; reopen the store") \
                from self._poisoned
        first_lsn = rec.U64.unpack_from(data, rec.LSN_OFFSET)[0]
        if count is None:
            count = sum(1 for _ in rec.scan_spans(data))
        if last_lsn is not None and last_lsn - first_lsn + 1 != count:
            raise SegmentsError(f"{self.path}: a commit group of {count} records from LSN {first_lsn} cannot "
                                f"end at LSN {last_lsn}; nothing was written (a sequencing bug: reopen the store)")
        frame = encode_frame(first_lsn, count, data)
        end = self._offset + len(frame) + len(data)
        try:
            if end > self._allocated:
                self._allocated = self._reserve(self._allocated, end + self._preallocate, end)
            pieces = [frame, data]
            offset = self._offset
            while pieces:
                written = self._ops.pwrite(self._fd, pieces, offset)
                if written <= 0:
                    raise OSError(errno.EIO, f"{self.path}: write made no progress")
                offset += written
                pieces = _drop_written(pieces, written)
        except OSError as exc:
            self._poisoned = exc
            raise
        self._offset = end

    def sync(self) -> None:
        """Make everything appended durable (fdatasync). Failure poisons the writer."""
        if self._poisoned is not None:
            raise WriterPoisoned(f"{self.path}: an earlier write or fsync failed; reopen the store") \
                from self._poisoned
        try:
            self._ops.fdatasync(self._fd)
        except OSError as exc:
            self._poisoned = exc
            raise WriterPoisoned(f"{self.path}: fsync failed: {exc}; reopen the store") from exc

    def close(self) -> None:
        if self._fd >= 0:
            self._ops.close(self._fd)
            self._fd = -1

    def _reserve(self, start: int, end: int, needed: int) -> int:
        """Preallocate [start, end) as zeros; returns the new allocated size.

        On a full disk it degrades: half the size, and so on down to what the
        next write needs, then none (writes extend the file themselves and fail
        if the space is really gone), saying once what it could reserve.
        """
        if end <= start:
            return start
        size = end - start
        floor = max(needed - start, min(MIN_PREALLOCATE, size))
        first_error: OSError | None = None
        while True:
            try:
                self._ops.fallocate(self._fd, start, size)
            except OSError as exc:
                if exc.errno in _NO_FALLOCATE:
                    self._ops.ftruncate(self._fd, end)
                    return end
                if exc.errno not in _FULL:
                    raise
                first_error = first_error or exc
                if size <= floor:
                    self._note_degraded(end - start, 0, first_error)
                    return start
                size = max(size // 2, floor)
                continue
            if first_error is not None:
                self._note_degraded(end - start, size, first_error)
            elif self._degraded:
                self._degraded = False
            return start + size

    def _note_degraded(self, wanted: int, got: int, exc: OSError) -> None:
        if self._degraded:
            return
        self._degraded = True
        outcome = f"preallocated {_mib(got)} instead" if got else "writing without preallocation"
        import logging  # only for this warning: a command that opens a WAL does not load logging

        logging.getLogger("segments.wal").warning("%s: cannot preallocate %s (%s); %s", self.path, _mib(wanted),
                                                  exc.strerror or exc, outcome)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.2f} MiB ({n} bytes)"


def _drop_written(pieces: list[bytes], written: int) -> list[bytes]:
    """What remains of `pieces` after a (possibly short) write of `written` bytes."""
    rest: list[bytes] = []
    for piece in pieces:
        if written >= len(piece):
            written -= len(piece)
            continue
        rest.append(piece[written:])
        written = 0
    return rest


class _Scanned(Protocol):
    """What `reopen` needs from a scan (segments.wal.WalScan has it)."""

    @property
    def path(self) -> str: ...
    @property
    def header(self) -> WalHeader: ...
    @property
    def end(self) -> int: ...
    @property
    def torn(self) -> object | None: ...
