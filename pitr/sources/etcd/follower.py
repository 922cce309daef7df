"""Following an etcd key prefix: its watch stream committed into the local spool store.

Each etcd revision that touches the prefix becomes one spool commit
(``source_rev`` = the revision); leases become expiries; when etcd has
compacted past the next revision the follower reads the current state again
and commits the difference after a gap. See docs/etcd.md.
"""

from __future__ import annotations

import base64
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

from pitr.archiver import Archiver
from pitr.errors import CorruptData, InvalidArgument, PitrError, SourceError
from pitr.snapshots.take import take_snapshot
from pitr.store import Store
from segments.record import DELETE, PUT, Op

from ._errors import CompactedError, EtcdUnavailable, LeaseNotFound
from ._spool import SpoolCursor, source_revision_at, spool_phase, wal_source_revision, write_spool_marker
from ._types import TXN_OP_OVERHEAD_BYTES, EventType, WatchBatch
from .client import EtcdClient

log = logging.getLogger("pitr.sources.etcd")
_NS = 1_000_000_000

@dataclass(frozen=True, kw_only=True, slots=True)
class FollowOptions:
    """How the follower reads etcd and writes the spool.

    `max_commit_bytes` bounds one commit of a base load or resync (key +
    value + 32 bytes per key); `max_in_flight` bounds the watch revisions
    being committed at once (they share fsyncs); `idle_timeout` treats a
    member silent for that long as failed (set it above the member's
    progress-notify interval); `catch_up_timeout` bounds how long a one-shot
    run waits to learn that it has seen everything up to the revision it
    started at. When no member answers, following is retried after
    `retry_initial` seconds, doubling up to `retry_max`.
    """

    page_size: int = 1000
    max_commit_bytes: int = 16 << 20
    max_in_flight: int = 1024
    idle_timeout: float | None = None
    lease_cache_size: int = 100_000
    catch_up_timeout: float = 10.0
    resync_attempts: int = 5
    retry_initial: float = 0.5
    retry_max: float = 30.0

    def __post_init__(self) -> None:
        if self.page_size < 1 or self.max_commit_bytes < 1 or self.max_in_flight < 1:
            raise InvalidArgument("page_size, max_commit_bytes and max_in_flight must be positive")
        if self.catch_up_timeout <= 0 or self.resync_attempts < 1:
            raise InvalidArgument("catch_up_timeout and resync_attempts must be positive")


class LeaseExpiries:
    """Absolute expiry times (ns) for keys attached to leases, one `lease_ttl` query per lease.

    etcd reports whole seconds remaining, rounded down, so the expiry is
    rounded up to the next second. Keep-alives are invisible in the watch: a
    cached expiry is refreshed only when a put with that lease is observed after it.
    """

    def __init__(self, client: EtcdClient, size: int) -> None:
        self._client = client
        self._size = size
        self._cache: OrderedDict[int, int] = OrderedDict()
        self.queries = 0

    async def expiry(self, lease_id: int, observed_ns: int) -> int | None:
        if not lease_id:
            return None
        cached = self._cache.get(lease_id)
        if cached is not None and cached > observed_ns:
            self._cache.move_to_end(lease_id)
            return cached
        self.queries += 1
        try:
            remaining = (await self._client.lease_ttl(lease_id)).ttl
        except LeaseNotFound:
            remaining = -1
        expires = observed_ns + (max(remaining, 0) + 1) * _NS
        self._cache[lease_id] = expires
        self._cache.move_to_end(lease_id)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return expires


class EtcdFollower:
    """Keeps a spool store equal to an etcd prefix, one commit per etcd revision.

    `revision` is the last revision durable in the spool; `complete_revision`
    the revision through which the spool is known to hold everything (etcd's
    progress notifications confirm revisions that did not touch the prefix).
    """

    def __init__(self, client: EtcdClient, prefix: bytes, store: Store, archiver: Archiver,
                 options: FollowOptions | None = None) -> None:
        self.client = client
        self.prefix = prefix
        self.store = store
        self.archiver = archiver
        self.options = options or FollowOptions()
        self.leases = LeaseExpiries(client, self.options.lease_cache_size)
        self.revision = 0
        self.complete_revision = 0
        self.commits = 0
        self.resyncs = 0
        self.outages = 0
        self._submitted = 0
        self._progress = 0
        self._in_flight = anyio.Semaphore(self.options.max_in_flight)
        self._stopping = False
        self._scope: anyio.CancelScope | None = None

    # start ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Resume after the spool's last revision, or load a base first (empty or unfinished spool)."""
        phase = await anyio.to_thread.run_sync(spool_phase, self.store.path, self.prefix, self.store.last_lsn)
        if phase != "following" or self.store.last_lsn == 0:
            await self.resync("initial load" if self.store.last_lsn == 0 else "unfinished load")
            return
        self.revision = self._submitted = self.complete_revision = await self._last_source_revision()
        current = (await self.client.get_range(self.prefix, limit=1)).revision
        if current < self.revision:
            raise SourceError(f"etcd is at revision {current} but the spool {self.store.path} already holds "
                              f"revision {self.revision}: this is another cluster, or etcd was restored "
                              "from a backup; archive it with a new spool and repository")

    async def _last_source_revision(self) -> int:
        lsn = self.store.last_lsn
        revision = await anyio.to_thread.run_sync(wal_source_revision, self.store.wal_directory.path, lsn)
        for prog in self.archiver.progress:
            if revision is None:
                revision = await source_revision_at(prog.repo, lsn)
        if revision is None:
            raise CorruptData(f"{self.store.path}: the spool's last commit (LSN {lsn}) is neither in its WAL "
                              "nor in a repository, so the etcd revision to resume from is unknown",
                              lsn=lsn, hint="archive into a new repository with a new spool directory")
        return revision

    # following -----------------------------------------------------------------------------------
    async def follow(self, *, until_revision: int | None = None) -> None:
        """Commit every revision from the spool's position on; return once `until_revision` is
        known complete, or after `stop`. A compaction past the position starts a resync."""
        backoff = self.options.retry_initial
        while not self._stopping:
            compacted: CompactedError | None = None
            unavailable: EtcdUnavailable | None = None
            async with anyio.create_task_group() as commits:
                with anyio.CancelScope() as self._scope:  # `stop` ends the watch, not the commits
                    try:
                        async with self.client.watch(self.prefix, self._submitted + 1,
                                                     idle_timeout=self.options.idle_timeout) as batches:
                            async for batch in batches:
                                backoff = self.options.retry_initial
                                if batch.is_progress:
                                    self._progress = batch.revision
                                    self._note_complete()
                                else:
                                    await self._submit(commits, batch)
                                if until_revision is not None and batch.revision >= until_revision:
                                    break
                    except CompactedError as exc:
                        compacted = exc
                    except EtcdUnavailable as exc:
                        unavailable = exc
            if unavailable is not None:
                # No member answered for the client's retry_timeout: keep trying, the position is kept.
                self.outages += 1
                log.warning("etcd unavailable; following again in %.1f s: %s", backoff, unavailable)
                with anyio.CancelScope() as self._scope:
                    await anyio.sleep(backoff)
                backoff = min(backoff * 2, self.options.retry_max)
                continue
            if compacted is None:
                return
            # A resync runs to its end even after `stop`: it leaves a base to restore from.
            await self.resync(f"etcd compacted revision {compacted.requested_revision} "
                              f"(oldest left: {compacted.compact_revision})")

    def stop(self) -> None:
        """End `follow` once the revisions already received are durable in the spool."""
        self._stopping = True
        if self._scope is not None:
            self._scope.cancel()

    async def catch_up(self) -> bool:
        """Follow until everything up to etcd's current revision is committed; False when that
        was not confirmed within `catch_up_timeout` (nothing is lost: the next run resumes)."""
        target = (await self.client.get_range(self.prefix, limit=1)).revision
        if self.complete_revision >= target:
            return True
        self._stopping = False
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._stop_after, self.options.catch_up_timeout)
            await self.follow(until_revision=target)
            tg.cancel_scope.cancel()
        return self.complete_revision >= target

    async def _stop_after(self, seconds: float) -> None:
        await anyio.sleep(seconds)
        self.stop()

    def _note_complete(self) -> None:
        if self.revision >= self._submitted:  # nothing in flight: a progress notification counts
            self.complete_revision = max(self.complete_revision, self.revision, self._progress)

    async def _submit(self, commits: anyio.abc.TaskGroup, batch: WatchBatch) -> None:
        observed = self.store.now()
        ops = []
        for event in batch.events:
            if event.type is EventType.PUT:
                ops.append(Op(PUT, event.key, event.value, await self.leases.expiry(event.lease, observed)))
            else:
                ops.append(Op(DELETE, event.key))
        await self._in_flight.acquire()
        sequenced = anyio.Event()
        commits.start_soon(self._commit_in_order, ops, batch.revision, sequenced)
        await sequenced.wait()
        self._submitted = batch.revision

    async def _commit_in_order(self, ops: list[Op], revision: int, sequenced: anyio.Event) -> None:
        # Store.commit assigns the LSN before its first checkpoint, so the next revision (which
        # waits for `sequenced`) always gets the next LSN, while both share one group fsync.
        try:
            expected = self.store.last_lsn + 1
            sequenced.set()
            commit = await self.store.commit(ops, source_rev=revision)
            if commit.lsn != expected:
                raise PitrError(f"{self.store.path}: revision {revision} was committed at LSN {commit.lsn}, "
                                f"not {expected}: spool commits were reordered")
            self.revision = max(self.revision, revision)  # durable in LSN order: all before it are too
            self.commits += 1
            self._note_complete()
        finally:
            self._in_flight.release()

    # base loads and resyncs ----------------------------------------------------------------------
    async def resync(self, reason: str) -> None:
        """Make the spool equal etcd's current state, after a gap, and snapshot it."""
        await anyio.to_thread.run_sync(write_spool_marker, self.store.path, self.prefix, "syncing", reason)
        for attempt in range(self.options.resync_attempts):
            try:
                revision = await self._commit_difference()
                break
            except CompactedError:  # the revision being read was compacted between pages
                if attempt == self.options.resync_attempts - 1:
                    raise
        await take_snapshot(self.archiver, prepare=self.store.flush, metadata=self.snapshot_metadata(revision))
        await anyio.to_thread.run_sync(write_spool_marker, self.store.path, self.prefix, "following", reason)
        self.revision = self._submitted = self.complete_revision = revision
        self.resyncs += 1

    def snapshot_metadata(self, revision: int | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"source": "etcd", "etcd_prefix": base64.b64encode(self.prefix).decode()}
        if revision is not None:
            meta["etcd_revision"] = revision
        return meta

    async def _commit_difference(self) -> int:
        """Commit puts and deletes turning the spool's state into etcd's at one revision; the first
        commit is flagged as a gap. Returns that revision."""
        await self.store.flush()
        spool = SpoolCursor(self.store.state, self.prefix)
        reader = self.client.iter_range(self.prefix, page_size=self.options.page_size)
        writer = _GapCommits(self.store, self.options.max_commit_bytes)
        marker_key = self.prefix or b"\0"
        marker: Op = Op(DELETE, marker_key)
        async for page in reader:
            writer.revision = page.revision
            observed = now = self.store.now()
            for kv in page.kvs:
                while (entry := await spool.peek()) is not None and entry[0] < kv.key:
                    if _live(entry, now):
                        await writer.add(Op(DELETE, entry[0]))
                    spool.advance()
                entry = await spool.peek()
                if entry is not None and entry[0] == kv.key:
                    spool.advance()
                else:
                    entry = None
                expires = await self.leases.expiry(kv.lease, observed)
                put = Op(PUT, kv.key, kv.value, expires)
                if kv.key == marker_key:
                    marker = put
                if entry is None or not _live(entry, now) or entry[1] != kv.value or \
                        (entry[2] is None) != (expires is None) or \
                        (expires is not None and entry[2] is not None and entry[2] < expires - _NS):
                    await writer.add(put)
        now = self.store.now()
        while (entry := await spool.peek()) is not None:
            if _live(entry, now):
                await writer.add(Op(DELETE, entry[0]))
            spool.advance()
        if reader.revision is None:
            raise SourceError(f"etcd returned no page for prefix {self.prefix!r}")
        writer.revision = reader.revision
        if not writer.committed and not writer.ops:
            # Nothing changed, yet history was lost: record the gap with a commit that changes nothing.
            await writer.add(marker)
        await writer.commit()
        return reader.revision


class _GapCommits:
    """Commits of one resync: at most `max_bytes` each, all at one revision, the first after a gap."""

    def __init__(self, store: Store, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.revision = 0
        self.ops: list[Op] = []
        self.size = 0
        self.committed = 0

    async def add(self, op: Op) -> None:
        self.ops.append(op)
        self.size += len(op.key) + len(op.value) + TXN_OP_OVERHEAD_BYTES
        if self.size >= self.max_bytes:
            await self.commit()

    async def commit(self) -> None:
        if self.ops:
            await self.store.commit(self.ops, source_rev=self.revision, gap=not self.committed)
            self.committed += 1
            self.ops, self.size = [], 0


def _live(entry: tuple[bytes, bytes, int | None], now: int) -> bool:
    return entry[2] is None or entry[2] > now
