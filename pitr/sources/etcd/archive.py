"""Archiving etcd: follow a key prefix's watch stream into a local spool store, archived as usual.

The spool is an ordinary pitr `Store`. Each etcd revision that touches the
prefix becomes one commit (``source_rev`` = the revision) dated when pitr
observed it; the standard archiver ships the spool's commits to the
repositories, so segments, catalog, audit and restore work unchanged.

The first start reads the prefix at one revision R and commits it (the first
commit flagged as a gap: nothing before it can be restored), snapshots that
state and watches from R + 1. A restart resumes after the last revision in the
spool. When etcd has compacted past the next revision, the follower reads the
current state again, commits the difference (again after a gap) and
snapshots it. See docs/etcd.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import anyio
import anyio.abc

from pitr.archiver import ArchiveOptions, Archiver
from pitr.archiver.observe import ArchiveObserver, TakenSnapshot
from pitr.archiving import archiving
from pitr.repo.repository import Repository
from pitr.snapshots.schedule import SnapshotSchedule
from pitr.snapshots.take import take_snapshot
from pitr.store import Store, StoreOptions

from ._spool import spool_phase
from .client import EtcdClient
from .follower import EtcdFollower, FollowOptions


@dataclass(slots=True)
class EtcdArchive:
    """A running etcd archive session (see `etcd_archiving`)."""

    follower: EtcdFollower
    archiver: Archiver
    store: Store

    async def snapshot(self) -> None:
        """Snapshot the spool's current state into every repository (the archiver's observer is told)."""
        entry = await take_snapshot(self.archiver, prepare=self.store.flush,
                                    metadata=self.follower.snapshot_metadata())
        self.archiver.observer.snapshot_taken(TakenSnapshot(tuple(p.repo.url for p in self.archiver.progress),
                                                            entry.name, entry.lsn, entry.ts_ns, entry.size))

    async def _snapshot_on_schedule(self, schedule: SnapshotSchedule, interval: float,
                                    stopped: anyio.Event) -> None:
        last_at, last_bytes, last_lsn = anyio.current_time(), self._published(), self.store.last_lsn
        while not stopped.is_set():
            with anyio.move_on_after(interval):
                await stopped.wait()
            seconds, volume = schedule.every_seconds, schedule.every_bytes
            due = (seconds is not None and anyio.current_time() - last_at >= seconds) or \
                (volume is not None and self._published() - last_bytes >= volume)
            if due and self.store.last_lsn != last_lsn:  # an unchanged spool has its snapshot already
                last_lsn = self.store.last_lsn
                await self.snapshot()
                last_at, last_bytes = anyio.current_time(), self._published()

    def _published(self) -> int:
        return sum(p.bytes_published for p in self.archiver.progress)


@asynccontextmanager
async def etcd_archiving(client: EtcdClient, prefix: bytes, spool_dir: str, *repos: str | Repository,
                         options: ArchiveOptions | None = None, follow_options: FollowOptions | None = None,
                         follow: bool = True, snapshot_every: SnapshotSchedule | None = None,
                         cache_dir: str | None = None, s3_endpoint: str | None = None,
                         clock: Callable[[], int] | None = None,
                         observer: ArchiveObserver | None = None) -> AsyncIterator[EtcdArchive]:
    """Archive the keys under `prefix` while the block runs, through a spool store at `spool_dir`.

    On entry the base is loaded (first run) or the position resumed; with
    `follow` the watch is followed in the background until the block ends
    (else call ``session.follower.catch_up()``); on exit everything durable
    in the spool is shipped. Snapshots carry the prefix in their metadata. `observer` is told what
    the archiver does (pitr/archiver/observe.py: metrics, heartbeat, events, status record).
    """
    async with AsyncExitStack() as stack:
        shown = prefix.decode("utf-8", "backslashreplace")
        store = await stack.enter_async_context(Store(spool_dir, StoreOptions(name=f"etcd:{shown}"), clock=clock))
        # Checked before the repositories are claimed for this spool's history.
        await anyio.to_thread.run_sync(spool_phase, spool_dir, prefix, store.last_lsn)
        archiver = await stack.enter_async_context(archiving(
            store, *repos, options=options, cache_dir=cache_dir, s3_endpoint=s3_endpoint, source_kind="etcd",
            observer=observer))
        session = EtcdArchive(EtcdFollower(client, prefix, store, archiver, follow_options), archiver, store)
        await session.follower.start()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        stopped = anyio.Event()
        if follow:
            tg.start_soon(session.follower.follow)
        if snapshot_every is not None and snapshot_every.enabled:
            tg.start_soon(session._snapshot_on_schedule, snapshot_every, archiver.options.interval, stopped)
        try:
            yield session
        except BaseException as exc:
            tg.cancel_scope.cancel()
            await _close_group(tg, exc)
            raise
        # Stop gracefully: revisions already received become durable, so the last cycle ships them.
        stopped.set()
        session.follower.stop()
        await _close_group(tg, None)


async def _close_group(tg: anyio.abc.TaskGroup, exc: BaseException | None) -> None:
    """Leave a task group entered by hand; a single failure comes out unwrapped."""
    try:
        if exc is not None and isinstance(exc, anyio.get_cancelled_exc_class()):
            await tg.__aexit__(type(exc), exc, exc.__traceback__)
        else:
            await tg.__aexit__(None, None, None)
    except BaseExceptionGroup as group:
        inner = _sole_failure(group)
        if inner is None:
            raise
        raise inner from group


def _sole_failure(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    failures = [e for e in group.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
    if len(failures) != 1:
        return None
    inner = failures[0]
    return _sole_failure(inner) if isinstance(inner, BaseExceptionGroup) else inner
