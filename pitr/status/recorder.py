"""The archiver's status record: what `pitr archive` last did for each repository, in the data directory.

An observer (`pitr.archiver.observe`): the archiver's notifications only change
the record in memory; `serve` writes it in a worker thread when it changes
state (failing, or archiving again) at once, and otherwise at most every
`every` seconds, so a busy archiver does not fsync a status file each cycle.
`flush` writes what is pending (a one-shot run calls it before exiting).
A record that cannot be written is logged once and retried; it never stops archiving.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import anyio

from pitr.archiver.observe import ArchiveObserver
from pitr.errors import PitrError
from pitr.status.records import ArchiverRecord, write_archiver_record

log = logging.getLogger("pitr.status")


class StatusRecorder(ArchiveObserver):
    """Keeps `DATA/archiver-status/<repo key>` up to date for every repository of one archiver."""

    def __init__(self, data_dir: str, every: float = 5.0, clock: Callable[[], int] = time.time_ns) -> None:
        self.data_dir = data_dir
        self.every = every
        self._clock = clock
        self._started_ns = clock()
        self.records: dict[str, ArchiverRecord] = {}
        self._dirty: set[str] = set()
        self._urgent = anyio.Event()
        self._warned = False

    def _record(self, repo: str) -> ArchiverRecord:
        record = self.records.get(repo)
        if record is None:
            record = ArchiverRecord(repo, os.getpid(), self._started_ns, self._started_ns, 0, None, 0, False)
        return record

    def repository_archived(self, repo: str, lsn: int, now_ns: int) -> None:
        before = self._record(repo)
        self.records[repo] = before.archived(lsn, now_ns)
        self._dirty.add(repo)
        if before.failing or before.last_success_ns is None:  # a change of state: written at once
            self._urgent.set()

    def repository_failed(self, repo: str, error: str, now_ns: int) -> None:
        self.records[repo] = self._record(repo).failed(error, now_ns)
        self._dirty.add(repo)
        self._urgent.set()

    async def flush(self) -> None:
        """Write every record that changed since the last write."""
        dirty, self._dirty = self._dirty, set()
        for repo in sorted(dirty):
            try:
                await anyio.to_thread.run_sync(write_archiver_record, self.data_dir, self.records[repo])
            except PitrError as exc:
                self._dirty.add(repo)
                if not self._warned:
                    self._warned = True
                    log.warning("cannot write the archiver status record (archiving goes on): %s", exc)

    async def serve(self) -> None:
        """Write changed records until cancelled: a change of state at once, else every `every` seconds."""
        while True:
            with anyio.move_on_after(self.every):
                await self._urgent.wait()
            self._urgent = anyio.Event()
            await self.flush()
