"""Where an archiver reads durable commits from: the `CommitSource` protocol, and a data directory
read by a sidecar process (the store open in this process is `pitr.archiving.StoreSource`).

The archiver only ever ships commits that are durable in the WAL: a record
that was written but not yet fsynced could vanish in a crash, and its LSN would
then be reused for a different commit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import anyio

from pitr.datadir.datadir import DataDir
from pitr.datadir.lock import writer_running
from pitr.datadir.state import StateDB, StoreIdentity
from pitr.datadir.wal import WalDirectory
from pitr.errors import file_error, to_corrupt
from segments import SegmentsError
from segments.record import Span
from segments.wal import scan_wal


class CommitSource(Protocol):
    """Durable commits of one store's history, read from its WAL files."""

    identity: StoreIdentity
    wal: WalDirectory
    state: StateDB

    async def durable(self) -> tuple[int, int]:
        """(LSN through which commits are durable, time through which the log is known complete).

        Called on the event loop: a source that reads files or LMDB does so in a worker thread."""

    def read_after(self, lsn: int, upto: int, max_bytes: int) -> Iterator[tuple[bytes, list[Span]]]:
        """Checked durable records with lsn < LSN <= upto, as (bytes, spans) chunks in order.

        Synchronous: the archiver calls it in a worker thread."""


class DirectorySource:
    """A store's data directory read by a sidecar process.

    Durable means applied to the LMDB state (the writer applies only fsynced
    commits). When no writer holds the lock, nothing can follow the last
    applied commit, so the log is complete through the present.
    """

    def __init__(self, data_dir: str, clock: Callable[[], int] = time.time_ns) -> None:
        self._dir = DataDir.open_reader(data_dir)
        self.data_dir = self._dir.path
        self.state = self._dir.state
        self.identity = self._dir.identity
        self.wal = self._dir.wal
        self._clock = clock
        self._scanned: tuple[tuple[str, int, int], int] | None = None  # (file, size, mtime) -> last LSN

    async def durable(self) -> tuple[int, int]:
        return await anyio.to_thread.run_sync(self._durable)

    def _durable(self) -> tuple[int, int]:
        lsn, ts = self.state.checkpoint()
        if not writer_running(self.data_dir) and not self._unapplied_after(lsn):
            return lsn, max(ts, self._clock() - 1)
        return lsn, ts

    def _unapplied_after(self, lsn: int) -> bool:
        """Whether the WAL holds records past the checkpoint (a writer crashed before applying them:
        they may be durable, so the log is not known complete until a writer recovers them).

        This decides a promise (complete through now), so an unreadable WAL is
        raised (`CorruptData` or `FileError` naming the file), never taken as empty.
        """
        expected = lsn + 1
        files = self.wal.files()
        if any(first > expected for first, _path in files):
            return True  # a file starting later means LSNs past the checkpoint were written
        candidates = [path for first, path in files if first <= expected]
        if not candidates:
            return False
        path = candidates[-1]
        try:
            st = os.stat(path)
            key = (path, st.st_size, st.st_mtime_ns)
            if self._scanned is None or self._scanned[0] != key:  # an idle WAL is scanned once
                self._scanned = (key, scan_wal(path).last_lsn)  # mid-log damage raises; a torn tail is no commit
        except OSError as exc:
            raise file_error(exc, path, "read the WAL") from exc
        except SegmentsError as exc:
            raise to_corrupt(exc, path) from exc
        return self._scanned[1] > lsn

    def read_after(self, lsn: int, upto: int, max_bytes: int) -> Iterator[tuple[bytes, list[Span]]]:
        return self.wal.read_after(lsn, upto, max_bytes)

    def close(self) -> None:
        self._dir.close()
