"""The archiver's status record: what `pitr archive` last did for each repository, in the data directory.

An observer (`pitr.archiver.observe`): the archiver's notifications only change
the record in memory; `serve` writes it in a worker thread when it changes
state (failing, or archiving again) at once, and otherwise at most every
`every` seconds, so a busy archiver does not fsync a status file each cycle.
`flush` writes what is pending (a one-shot run calls it before exiting).
A record that cannot be written is logged once and retried; it never stops archiving.

Given the archiver, every `every` seconds it also measures each repository's
upload backlog (durable commits not yet there, their bytes estimated from the
segments this process published) and the upload cap it runs under, so that
`pitr status` can say what the cap costs in recovery point: the measurement is
written even while a long upload under the cap keeps the cycle from ending.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from pitr.archiver.observe import ArchiveObserver, PublishedSegment
from pitr.errors import PitrError
from pitr.status.records import ArchiverRecord, UploadBacklog, write_archiver_record
from pitr.storage.ratelimit import TokenBucket

if TYPE_CHECKING:
    from pitr.archiver import Archiver
    from pitr.archiver.options import RepoProgress

log = logging.getLogger("pitr.status")


class StatusRecorder(ArchiveObserver):
    """Keeps `DATA/archiver-status/<repo key>` up to date for every repository of one archiver."""

    def __init__(self, data_dir: str, every: float = 5.0, clock: Callable[[], int] = time.time_ns,
                 archiver: Archiver | None = None) -> None:
        self.data_dir = data_dir
        self.every = every
        self.archiver = archiver  # given: the upload backlog and cap are measured too
        self._clock = clock
        self._started_ns = clock()
        self.records: dict[str, ArchiverRecord] = {}
        self._published: dict[str, tuple[int, int]] = {}  # repo -> (commits, bytes) this process published
        self._dirty: set[str] = set()
        self._urgent = anyio.Event()
        self._warned = False
        self._measure_warned = False

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

    def segment_published(self, segment: PublishedSegment) -> None:
        commits, size = self._published.get(segment.repo, (0, 0))
        self._published[segment.repo] = (commits + segment.commits, size + segment.size)

    def repository_failed(self, repo: str, error: str, now_ns: int) -> None:
        self.records[repo] = self._record(repo).failed(error, now_ns)
        self._dirty.add(repo)
        self._urgent.set()

    def backlog_of(self, prog: RepoProgress, durable_lsn: int) -> UploadBacklog:
        """`prog`'s repository's backlog when the store is durable through `durable_lsn`."""
        commits = max(0, durable_lsn - prog.last_lsn)
        published_commits, published_bytes = self._published.get(prog.repo.url, (0, 0))
        estimate = 0 if commits == 0 else \
            math.ceil(commits * published_bytes / published_commits) if published_commits else None
        bucket = getattr(getattr(prog.repo.storage, "limits", None), "upload", None)
        if not isinstance(bucket, TokenBucket):
            return UploadBacklog(commits, estimate, None, None)
        # What the cap holds back right now (a segment or snapshot being uploaded, any repository's:
        # they share the cap) is exact; this repository's next bytes wait behind it.
        queued = bucket.queued_bytes()
        size = estimate if queued == 0 else max(estimate or 0, queued)
        return UploadBacklog(commits, size, bucket.rate, round(bucket.measured_rate()))

    def backlogs(self) -> dict[str, UploadBacklog]:
        """The last measured backlog of each repository (safe to call from another thread: a copy)."""
        return {repo: r.backlog for repo, r in dict(self.records).items() if r.backlog is not None}

    async def measure(self) -> None:
        """Record every repository's upload backlog and cap (a failure is logged once, never raised:
        the archiver reports its own)."""
        if self.archiver is None:
            return
        try:
            # The archiver asks the same each cycle (for an in-process store it also keeps the
            # promise of no commit before that time, which the store keeps anyway).
            durable_lsn, _ = await self.archiver.source.durable()
        except Exception as exc:  # noqa: BLE001 - a status record never stops the archiver
            if not self._measure_warned:
                self._measure_warned = True
                log.warning("cannot measure the upload backlog (archiving goes on): %s", exc)
            return
        now = self._clock()
        for prog in list(self.archiver.progress):
            backlog = self.backlog_of(prog, durable_lsn)
            record = self._record(prog.repo.url)
            if record.backlog != backlog:
                self.records[prog.repo.url] = record.measured(backlog, now)
                self._dirty.add(prog.repo.url)

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
            await self.measure()
            await self.flush()
