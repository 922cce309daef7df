"""The store's write-ahead log on disk: opening and recovering it, appending groups, retention.

Everything here is synchronous and runs in worker threads (the WAL thread and
the store's open/close calls); the event loop never waits on a disk here.
`StoreLog` owns the open `DataDir` (lock, LMDB state, WAL directory) and the
`WalWriter` of the newest WAL file.
"""

from __future__ import annotations

import errno
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from pitr.datadir.datadir import DataDir
from pitr.datadir.overlay import fold
from pitr.datadir.state import StateDB, StoreIdentity
from pitr.datadir.wal import WalDirectory
from pitr.errors import CorruptData, InvalidArgument, PitrError, file_error
from pitr.store.options import StoreOptions
from segments import CorruptFile, SegmentsError
from segments import record as rec
from segments.fold import Change
from segments.fsutil import fsync_dir
from segments.wal import MID_LOG_HINT, PREALLOCATE, WalFileOps, WalWriter, wal_name
from segments.wal import VERSION as WAL_VERSION

if TYPE_CHECKING:
    import logging


def log() -> logging.Logger:
    """The store's logger; logging is imported at the first warning (`pitr put` never loads it)."""
    import logging

    return logging.getLogger("pitr.store")


_FULL = (errno.ENOSPC, errno.EDQUOT)
POSITIONS_KEPT = 256  # recent groups whose WAL position a checkpoint can name
FULL_HINT = ("free space on the data directory's file system, then reopen the store: every acknowledged "
             "commit is in the WAL")


class StoreLog:
    """An open data directory seen by its writer: recovered state, the WAL writer, retention."""

    def __init__(self, path: str, options: StoreOptions, clock: Callable[[], int], wal_ops: WalFileOps) -> None:
        """Take the writer lock, recover the WAL (repairing a torn tail), replay it past the LMDB
        checkpoint and open the newest WAL file for appending."""
        self.path = path
        self.options = options
        self._clock = clock
        self._ops = wal_ops
        self._wal: WalWriter | None = None
        self._retention_note: str | None = None
        #: last LSN of each recent group -> (first LSN of its WAL file, byte offset the group starts at)
        self._positions: OrderedDict[int, tuple[int, int]] = OrderedDict()
        self._positions_lock = threading.Lock()
        self.dir = DataDir.open_writer(path, create=options.create, name=options.name, now_ns=clock,
                                       lock_wait=options.lock_wait)
        try:
            self._recover()
        except OSError as exc:
            self.close()
            raise file_error(exc, exc.filename or path, "open the store") from exc
        except BaseException:
            self.close()
            raise

    @property
    def state(self) -> StateDB:
        return self.dir.state

    @property
    def wal_dir(self) -> WalDirectory:
        return self.dir.wal

    @property
    def identity(self) -> StoreIdentity:
        return self.dir.identity

    def _recover(self) -> None:
        ident = self.identity
        checkpoint = self.state.stored_checkpoint()
        applied_lsn, applied_ts = checkpoint.applied_lsn, checkpoint.applied_ts_ns
        # the WAL is checked from the checkpoint's group on (docs/decisions.md, "Start-up: what the
        # writer checks at open"); the whole WAL when the hint does not hold
        recovery = self.wal_dir.recover(applied_lsn, applied_ts, (checkpoint.wal_first_lsn, checkpoint.wal_offset))
        for path, header in recovery.headers:
            if header.store_id != ident.store_id:
                raise InvalidArgument(f"{path}: WAL belongs to store {header.store_id}, not {ident.store_id}")
        # Only what the store needs is kept, not the scans: they hold one Span per WAL record,
        # objects the cyclic GC tracks, and every full collection would walk them for the store's life.
        self.torn = recovery.torn
        self.last_lsn, self.last_ts = recovery.last_lsn, recovery.last_ts_ns
        last = recovery.scans[-1] if recovery.scans else None
        if last is not None and last.spans and last.last_lsn == recovery.last_lsn:
            # where the last group starts: the replay's checkpoint keeps it, as every apply does
            self._positions[recovery.last_lsn] = (last.header.first_lsn, last.last_unit)
        self._replay(applied_lsn, recovery.last_lsn)
        #: no commit may be timed at or before this: the latest completeness promise (markers)
        self.promised_ns = self.wal_dir.markers.promised_complete_ns()
        if last is not None and last.header.version == WAL_VERSION and last.end < self.options.wal_file_size:
            self._wal = WalWriter.reopen(last, ops=self._ops)
        else:
            if last is not None and not last.spans and last.header.first_lsn == recovery.last_lsn + 1:
                os.unlink(last.path)  # an empty file of an older WAL version: start it again
                fsync_dir(self.wal_dir.path)
            self._roll(recovery.last_lsn + 1)

    def _replay(self, applied_lsn: int, last_lsn: int) -> None:
        """Apply WAL records after the LMDB checkpoint (crash recovery)."""
        if last_lsn <= applied_lsn:
            return
        changes: dict[bytes, Change] = {}
        lsn = ts = 0
        for data, spans in self.wal_dir.read_after(applied_lsn, last_lsn):
            for span in spans:
                try:
                    record = rec.decode_payload(data, span, skip_unknown=True)
                except CorruptFile as exc:  # scan_wal checked every body: only a file changed since
                    raise CorruptData(f"WAL record at LSN {span.lsn}: {exc.reason}", path=self.wal_dir.path,
                                      lsn=span.lsn, hint=MID_LOG_HINT) from exc
                if record is not None:
                    fold(changes, record.ops)
            lsn, ts = spans[-1].lsn, spans[-1].ts_ns
            if len(changes) >= self.options.apply_threshold:
                self.state.apply(changes, lsn, ts)
                changes = {}
        self.state.apply(changes, lsn, ts, self.wal_position(lsn))

    def _roll(self, first: int) -> None:
        """Start a new WAL file whose first record will be LSN `first`."""
        path = os.path.join(self.wal_dir.path, wal_name(first))
        new = WalWriter.create(path, self.identity.store_id, first, self._clock(),
                               preallocate=min(self.options.wal_file_size, PREALLOCATE), ops=self._ops)
        if self._wal is not None:
            self._wal.close()
        self._wal = new

    def write_group(self, data: bytes, count: int, last_lsn: int) -> None:
        """(WAL thread) Append a group of `count` encoded records ending at `last_lsn` and fsync it."""
        assert self._wal is not None
        position = (self._wal.header.first_lsn, self._wal.size)
        self._wal.append(data, last_lsn, count=count)
        self._wal.sync()
        with self._positions_lock:
            self._positions[last_lsn] = position
            if len(self._positions) > POSITIONS_KEPT:
                self._positions.popitem(last=False)
        if self._wal.size >= self.options.wal_file_size:
            # New commits keep being sequenced meanwhile: the next file starts after this group.
            try:
                self._roll(last_lsn + 1)
            except OSError as exc:  # the group is durable: keep appending here and try again later
                log().warning("%s", file_error(exc, exc.filename, "start the next WAL file"))

    def wal_position(self, lsn: int) -> tuple[int, int] | None:
        """(first LSN of the WAL file, byte offset) of the group ending at `lsn`, if it was written
        recently by this writer: the hint a checkpoint keeps so readers skip what it covers."""
        with self._positions_lock:
            return self._positions.get(lsn)

    def translate_error(self, exc: BaseException) -> BaseException:
        """A WAL write or fsync failure as the PitrError a caller can act on (cause kept)."""
        path = self._wal.path if self._wal is not None else os.path.join(self.path, "wal")
        if isinstance(exc, OSError):
            translated: BaseException = file_error(exc, path, "write the WAL",
                                                   hint=FULL_HINT if exc.errno in _FULL else None)
        elif isinstance(exc, SegmentsError) and isinstance(exc.__cause__, OSError) \
                and exc.__cause__.errno in _FULL:
            translated = file_error(exc.__cause__, path, "fsync the WAL", hint=FULL_HINT)
        else:
            return exc  # an fsync failure: StoreClosed, raised by the waiting writers
        translated.__cause__ = exc
        return translated

    def remove_archived(self, applied_lsn: int) -> None:
        """Delete WAL files checkpointed (through `applied_lsn`) and, with `require_archive`, held
        by every repository whose marker is here; on any doubt keep them, and say so once."""
        through = applied_lsn
        try:
            if self.options.require_archive:
                archived = self.wal_dir.markers.archived_lsns()
                if not archived:
                    return
                through = min(through, *archived.values())
            self.wal_dir.remove_through(through)
        except PitrError as exc:
            note = f"{exc}; WAL files are kept until this is fixed"
            if note != self._retention_note:  # once per distinct problem, not every apply
                self._retention_note = note
                log().warning("%s", note)
            return
        self._retention_note = None

    def close(self) -> None:
        if self._wal is not None:
            self._wal.close()
            self._wal = None
        self.dir.close()
