"""The continuous archiver: durable WAL records -> sealed, chained segments in every repository.

Cycles are paced so that a commit is published within about `interval` of
being made: for each repository, a cycle seals the durable commits it lacks
into one segment, publishes it atomically, indexes it, and records how far the
archive is known complete; the pause before the next cycle is the interval
less this cycle's own duration and its publish latency (so under load cycles
run back to back rather than letting the lag grow to interval + cycle time).
Trailing runs of small segments are merged into one so a repository holds few
files however short the interval.

Nothing here blocks the event loop: reading and sealing a chunk is one
worker-thread call (`pitr.archiver.sealing`), and so is each catalog
transaction, marker write and upload staging. Time is the event loop's clock
(`anyio.current_time`, so trio's `MockClock` drives pacing, watermark interval
and backoff in tests) unless `monotonic` is given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial

import anyio
from blake3 import blake3

from pitr.archiver.observe import ArchiveObserver, PublishedSegment, as_observers
from pitr.archiver.options import ArchiveOptions as ArchiveOptions
from pitr.archiver.options import RepoProgress as RepoProgress
from pitr.archiver.publish import UPLOAD_VIA_FILE as UPLOAD_VIA_FILE  # re-exported: tests size uploads by it
from pitr.archiver.publish import merge_run, publish_new
from pitr.archiver.retry import Backoff, is_transient, translate
from pitr.archiver.sealer import WorkerBroken, call_in_worker
from pitr.archiver.sealing import (
    THREAD_MAX_COMMITS,
    SealedChunk,
    read_and_seal,
    seal_chunk_in_worker,
    unpickle_sealed,
)
from pitr.archiver.sources import CommitSource
from pitr.catalog.entries import SegmentEntry
from pitr.errors import (
    CorruptData,
    InvalidArgument,
    ObjectNotFound,
    PitrError,
    RepositoryLost,
)
from pitr.repo import layout
from pitr.repo.continuity import LOST_HINT, HistoryTail, check_continuity, check_unchanged
from pitr.repo.identity import RepoIdentity, Watermark
from pitr.repo.indexing import block_rows, segment_entry
from pitr.repo.repository import Repository

log = logging.getLogger("pitr.archiver")


def _mark_archived(source: CommitSource, repo_url: str, lsn: int, complete_ns: int | None = None) -> None:
    """Record in the store's WAL directory how far `repo_url` holds its commits (FileError on failure)."""
    source.wal.markers.mark(layout.repo_key(repo_url), lsn, repo_url, complete_ns)


def identity_for(source: CommitSource, kind: str = "embedded") -> RepoIdentity:
    """The repository identity for `source`'s history; `kind` names where its commits come from
    ("embedded" for a pitr store, "etcd" for a spool fed by an etcd watch)."""
    ident = source.identity
    return RepoIdentity(ident.store_id, ident.name, ident.created_ns, ident.first_lsn,
                        ident.start_chain_digest, kind, ident.parent)


def seal_in_worker_process(*args: object) -> tuple[SealedChunk | None, tuple[int, str, int] | None]:
    """`seal_chunk_in_worker(*args)` in the sealing worker process (`pitr.archiver.sealer`), its answer
    unpickled here, in the caller's worker thread (blocking: never on the event loop)."""
    return unpickle_sealed(call_in_worker(seal_chunk_in_worker, *args))


class Archiver:
    """Ships one store's durable commits to one or more repositories."""

    def __init__(self, source: CommitSource, repos: list[Repository], options: ArchiveOptions | None = None,
                 clock: Callable[[], int] = time.time_ns, *, source_kind: str = "embedded",
                 monotonic: Callable[[], float] = anyio.current_time,
                 observer: ArchiveObserver | None = None) -> None:
        if not repos:
            raise InvalidArgument("the archiver needs at least one repository")
        self.source = source
        self.source_kind = source_kind
        self.options = options or ArchiveOptions()
        self.clock = clock
        self.monotonic = monotonic
        self.observer = as_observers(observer)  # told what happens; it never stops archiving
        self.progress: list[RepoProgress] = []
        self._repos = repos
        self.cycle_lock = anyio.Lock()
        self.last_publish_seconds = 0.0
        self._published_at = 0.0
        self._worker_broken = False  # a sealing worker process failed: seal in threads
        self._hook_backoff = Backoff(self.options.retry_initial, self.options.retry_max)

    async def start(self) -> None:
        """Check every repository holds this store's history, whole, and resume from its end.

        A brand-new repository is claimed; one that lost its identity or the
        history this store already archived into it is `RepositoryLost`.
        """
        ident = identity_for(self.source, self.source_kind)
        markers = await anyio.to_thread.run_sync(self.source.wal.markers.archived_lsns)
        for repo in self._repos:
            archived = markers.get(layout.repo_key(repo.url))
            try:
                held = await repo.claim(ident, archived_before=archived is not None)
                report = await repo.sync()
                claimed = await repo.storage.read(layout.IDENTITY)

                def resume_point(repo: Repository = repo, held: RepoIdentity = held, archived: int | None = archived,
                                 unreadable: tuple[str, ...] = tuple(name for name, _ in report.broken),
                                 ) -> tuple[HistoryTail, tuple[int, int] | None]:
                    tail = check_continuity(repo.url, held, repo.catalog.segments(), repo.catalog.snapshots(),
                                            archived_lsn=archived, unreadable=unreadable)
                    return tail, repo.watermark()

                tail, mark = await anyio.to_thread.run_sync(resume_point)
            except ObjectNotFound as exc:
                raise RepositoryLost(f"{repo.url}: the identity document vanished while the archiver "
                                     "started", hint=LOST_HINT) from exc
            except Exception as exc:
                error = translate(exc, catalog_path=repo.catalog.path, operation="open the catalog")
                if error is None or error is exc:
                    raise
                raise error from exc
            backoff = Backoff(self.options.retry_initial, self.options.retry_max)
            self.progress.append(RepoProgress(repo, tail.lsn, tail.chain_digest, mark, claimed=claimed,
                                              tail_object=tail.object_name, backoff=backoff))

    def needs_base(self, prog: RepoProgress) -> bool:
        """Whether `prog`'s repository is empty and the local WAL no longer reaches the start of the
        history: its history can only start with a snapshot (see `pitr.snapshots.take.ensure_base`)."""
        if prog.tail_object is not None:
            return False
        files = self.source.wal.files()
        return bool(files) and files[0][0] > prog.last_lsn + 1

    def rebase(self, prog: RepoProgress, lsn: int) -> None:
        """Start an empty repository's history at `lsn`, where a base snapshot is about to be published.

        Its segments chain from a digest fixed by the store id and `lsn` (the log
        before it is not in this repository, so its chain digest is not known here).
        """
        if not self.needs_base(prog):
            raise InvalidArgument(f"{prog.repo.url} does not need a new base")
        prog.last_lsn = lsn
        prog.chain_digest = blake3(b"pitr base\0" + self.source.identity.store_id.bytes +
                                   lsn.to_bytes(8, "little")).digest()

    @property
    def failing(self) -> dict[str, str]:
        """Repositories whose last attempt failed (URL -> error); they are being retried."""
        return {p.repo.url: p.last_error for p in self.progress if p.last_error is not None}

    async def cycle(self, *, respect_backoff: bool = False) -> int:
        """Archive everything durable to every repository.

        Returns the number of commits shipped. A repository failing with a
        transient error (full disk, storage or file error) is reported and
        retried (after its backoff, with `respect_backoff`); the others go on.
        Any other error (lost or foreign repository, damaged history) is raised.
        Failures are logged only with `respect_backoff` (a running archiver);
        otherwise the caller reads `failing`.
        """
        async with self.cycle_lock:
            started = self._published_at = self.monotonic()
            try:
                durable_lsn, complete_ns = await self.source.durable()
            except Exception as exc:
                error = translate(exc, catalog_path=self.source.state.path, operation="read the store's state")
                if error is None or error is exc:
                    raise
                raise error from exc
            shipped = 0
            for prog in self.progress:
                if respect_backoff and prog.backoff.waiting(self.monotonic()):
                    continue
                try:
                    if prog.last_lsn < durable_lsn:  # about to publish (the watermark checks on its own)
                        await check_unchanged(prog.repo.storage, prog.claimed, self._tail(prog))
                    shipped += await self._ship(prog, durable_lsn)
                    await self._mark_complete(prog, complete_ns)
                    await self._maybe_merge(prog)
                except Exception as exc:
                    error = translate(exc, catalog_path=prog.repo.catalog.path, operation="archive",
                                      where=prog.repo.url)
                    if error is None:
                        raise
                    if not is_transient(error):
                        if error is exc:
                            raise
                        raise error from exc
                    self._failed(prog, error, report=respect_backoff)
                    continue
                prog.last_error = None
                self.observer.repository_archived(prog.repo.url, prog.last_lsn, self.clock())
                line = prog.backoff.succeeded()
                if line is not None and respect_backoff:
                    log.warning("archiving to %s %s", prog.repo.url, line)
            self.last_publish_seconds = self._published_at - started  # reading the log to the last publish
            return shipped

    def _failed(self, prog: RepoProgress, error: PitrError, *, report: bool) -> None:
        """Count a transient failure; `report` logs it (sparingly) for a running archiver, whose
        caller does not see each cycle's outcome."""
        prog.errors += 1
        hint = getattr(error, "hint", None)
        prog.last_error = str(error) + (f" (hint: {hint})" if hint else "")
        self.observer.repository_failed(prog.repo.url, prog.last_error, self.clock())
        line = prog.backoff.failed(self.monotonic(), str(error))
        if line is not None and report:
            log.warning("archiving to %s failed: %s", prog.repo.url, line)

    @staticmethod
    def _tail(prog: RepoProgress) -> HistoryTail:
        return HistoryTail(prog.last_lsn, prog.chain_digest, prog.tail_object)

    async def ship_through(self, lsn: int) -> None:
        """Seal a segment boundary at exactly `lsn` in every repository (caller holds cycle_lock)."""
        durable_lsn, _ = await self.source.durable()
        if lsn > durable_lsn:
            raise InvalidArgument(f"cannot archive through LSN {lsn}: durable only through {durable_lsn}")
        for prog in self.progress:
            await check_unchanged(prog.repo.storage, prog.claimed, self._tail(prog))
            await self._ship(prog, lsn)

    async def _ship(self, prog: RepoProgress, durable_lsn: int) -> int:
        if prog.last_lsn > durable_lsn and prog.last_lsn > self.source.identity.first_lsn - 1:
            lsn_local, _ = await self.source.durable()
            if prog.last_lsn > lsn_local:
                raise CorruptData(
                    f"{prog.repo.url} holds commits through LSN {prog.last_lsn} but the store's WAL is "
                    f"durable only through {lsn_local}: the repository is ahead of this store",
                    hint="restore a new store from the archive instead of reusing this data directory")
        shipped = 0
        while prog.last_lsn < durable_lsn:
            upto = min(durable_lsn, prog.last_lsn + self.options.max_segment_commits)
            sealed = await self._retry_pending(prog, upto)
            if sealed is None:
                sealed = await self._seal(prog, upto)
            if sealed is None:
                break
            await self._publish_segment(prog, sealed)
            shipped += sealed.commits
        return shipped

    async def _retry_pending(self, prog: RepoProgress, upto: int) -> SealedChunk | None:
        """The chunk whose publish failed, to publish again as it was; None when there is none, or when it
        ends past `upto` (a snapshot's boundary) and did not land (then it is dropped and sealed anew)."""
        pending = prog.pending
        if pending is None or pending.meta.first_lsn != prog.last_lsn + 1 or \
                pending.meta.header.prev_chain_digest != prog.chain_digest:
            prog.pending = None
            return None
        if pending.meta.last_lsn <= upto:
            return pending
        if await prog.repo.storage.stat(layout.segment_object(pending.name)) is not None:
            return pending  # it landed: it is the history now (a boundary at `upto` is then refused, named)
        prog.pending = None
        return None

    async def _seal(self, prog: RepoProgress, upto: int) -> SealedChunk | None:
        """Read and seal the next chunk: in a worker process when it is large (its per-record
        Python then never holds this process's GIL, which the writers' event loop needs), else in
        a worker thread (a process round trip costs more than a small chunk's work)."""
        wal = self.source.wal
        if self.options.seal_in_process and not self._worker_broken and \
                upto - prog.last_lsn >= self.options.process_min_commits:
            try:
                sealed, wal.resume = await anyio.to_thread.run_sync(partial(
                    seal_in_worker_process, wal.path, self.source.identity.store_id, prog.repo.url, prog.last_lsn,
                    upto, prog.chain_digest, self.options.max_segment_bytes, wal.resume, prog.repo.segment_keys))
                return sealed
            except WorkerBroken as exc:  # the worker died or could not start: seal here
                self._worker_broken = True  # and from now on: a worker that cannot start is not retried
                log.warning("the sealing process ended unexpectedly (%s); this archiver seals in a thread "
                            "from now on", exc)
        # In this process a chunk's Span objects and sorts hold the writers' GIL: keep it smaller.
        upto = min(upto, prog.last_lsn + THREAD_MAX_COMMITS)
        return await anyio.to_thread.run_sync(
            read_and_seal, self.source, prog.repo.url, prog.last_lsn, upto, prog.chain_digest,
            self.options.max_segment_bytes, prog.repo.segment_keys)

    async def _publish_segment(self, prog: RepoProgress, sealed: SealedChunk) -> None:
        blob, meta, name = sealed.blob, sealed.meta, sealed.name
        object_name = layout.segment_object(name)
        # Until it is known to have landed, this chunk is the next one, whatever comes later: a retry
        # publishes these same bytes under the same name (`_ship`), so a failed attempt that landed
        # after all leaves no second file over the same LSNs, and nothing needs deleting.
        prog.pending = sealed
        await publish_new(prog.repo, object_name, blob)
        prog.pending = None
        # The commits are off the machine now: that is the lag that bounds what a lost disk costs.
        lag_ns = max(0, self.clock() - sealed.last_ts_ns)
        prog.lag_samples_ns.append(lag_ns)
        self._published_at = self.monotonic()
        del prog.lag_samples_ns[:-10_000]
        await prog.repo.remember(object_name, blob)

        def index() -> None:
            prog.repo.catalog.add_segment_indexed(segment_entry(name, meta), block_rows(meta), sealed.key_index, (),
                                          sealed.gaps)
            _mark_archived(self.source, prog.repo.url, meta.last_lsn)

        await anyio.to_thread.run_sync(index)
        prog.last_lsn = meta.last_lsn
        prog.chain_digest = meta.chain_digest
        prog.tail_object = object_name
        prog.segments_published += 1
        prog.bytes_published += len(blob)
        self.observer.segment_published(PublishedSegment(prog.repo.url, name, meta.first_lsn, meta.last_lsn,
                                                         sealed.commits, len(blob), sealed.last_ts_ns, lag_ns))
        if sealed.gaps:
            self.observer.gap_recorded(prog.repo.url, tuple(sealed.gaps))

    async def _mark_complete(self, prog: RepoProgress, complete_ns: int) -> None:
        mark = (prog.last_lsn, complete_ns)
        if prog.last_watermark is not None and prog.last_watermark[0] == mark[0] and \
                prog.last_watermark[1] >= mark[1]:
            return
        every = self.options.watermark_interval
        every = self.options.interval if every is None else every
        now = self.monotonic()
        if prog.last_watermark is not None and prog.last_watermark[0] == mark[0] and \
                now - prog.watermark_written_at < every:
            return
        # Promise locally first: a store reopened after a crash must not time a commit inside it.
        await anyio.to_thread.run_sync(_mark_archived, self.source, prog.repo.url, prog.last_lsn, complete_ns)
        # the promise goes only into the repository this archiver claimed, still whole
        await check_unchanged(prog.repo.storage, prog.claimed, self._tail(prog))
        await prog.repo.write_watermark(Watermark(self.source.identity.store_id, *mark))
        advanced = prog.last_watermark is None or mark[1] > prog.last_watermark[1]
        prog.last_watermark = mark
        prog.watermark_written_at = now
        if advanced:
            self.observer.watermark_written(prog.repo.url, *mark)
        if self.options.checkpoints is not None:  # signed, into the repository and its witnesses
            await self.options.checkpoints.after_watermark(prog.repo, prog.claimed, self.source.identity.store_id,
                                                           prog.last_lsn, prog.chain_digest)

    async def _maybe_merge(self, prog: RepoProgress) -> None:
        segs = await anyio.to_thread.run_sync(prog.repo.catalog.segments)
        run: list[SegmentEntry] = []
        total = 0
        for seg in reversed(segs):
            if seg.size >= self.options.merge_small_bytes or total + seg.size > self.options.merge_max_bytes:
                break
            run.append(seg)
            total += seg.size
        if len(run) < self.options.merge_count:
            return
        run.reverse()
        merged = await self.merge(prog.repo, run)
        if merged.last_lsn == prog.last_lsn:
            prog.tail_object = layout.segment_object(merged.name)

    async def merge(self, repo: Repository, run: list[SegmentEntry]) -> SegmentEntry:
        """Merge consecutive segments into one and publish it beside them (cleanup deletes the originals)."""
        inputs = {layout.segment_object(s.name) for s in run}
        entry = await merge_run(repo, run)
        for prog in self.progress:  # the merged file now ends the history where an input did
            if prog.repo is repo and prog.tail_object in inputs:
                prog.tail_object = layout.segment_object(entry.name)
        return entry

    async def run(self, *, stop: anyio.Event | None = None,
                  after_cycle: Callable[[], Awaitable[object]] | None = None) -> None:
        """Archive every `interval` until cancelled (or `stop` is set), backing off on failures.

        `after_cycle` runs after each cycle (the snapshot schedule hooks in there);
        its transient failures are retried with the same backoff. A fatal error
        (see `pitr.archiver.retry`) ends the run with that error.
        """
        while stop is None or not stop.is_set():
            started = self.monotonic()
            await self.cycle(respect_backoff=True)
            if after_cycle is not None and not self._hook_backoff.waiting(self.monotonic()):
                await self._run_hook(after_cycle)
            # A commit made just after this cycle read the log waits for the next cycle to
            # read it, then for that cycle's publish (about as long as this one's).
            took = self.monotonic() - started
            delay = max(0.0, self.options.interval - took - self.last_publish_seconds)
            if self.progress and all(p.backoff.failures for p in self.progress):
                delay = max(delay, min(p.backoff.retry_at for p in self.progress) - self.monotonic())
            if stop is None:
                await anyio.sleep(delay)
            else:
                with anyio.move_on_after(delay):
                    await stop.wait()

    async def _run_hook(self, after_cycle: Callable[[], Awaitable[object]]) -> None:
        try:
            await after_cycle()
        except Exception as exc:
            error = translate(exc, catalog_path=self.progress[0].repo.catalog.path, operation="take a snapshot")
            if error is None or not is_transient(error):
                raise
            line = self._hook_backoff.failed(self.monotonic(), str(error))
            if line is not None:
                log.warning("scheduled snapshot failed: %s", line)
            return
        line = self._hook_backoff.succeeded()
        if line is not None:
            log.warning("scheduled snapshot %s", line)

    def lag_percentiles(self) -> dict[str, float]:
        samples = sorted(s for p in self.progress for s in p.lag_samples_ns)
        if not samples:
            return {"p50_ms": 0.0, "p99_ms": 0.0}

        def pct(q: float) -> float:
            return samples[min(len(samples) - 1, int(q * len(samples)))] / 1e6

        return {"p50_ms": pct(0.5), "p99_ms": pct(0.99)}
