"""Archiving a store open in this process: the one place where a `Store` and an `Archiver` meet.

``async with Store(path) as store, archiving(store, repo) as archiver:`` runs
the archiver (and the snapshot schedule) beside the store's own tasks. The
store knows nothing of archivers; the archiver knows only a `CommitSource`.
What each side writes, reads and promises is in docs/architecture.md
("The store and its archivers").
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from functools import partial

import anyio

from pitr.archiver.archiver import Archiver
from pitr.archiver.observe import ArchiveObserver
from pitr.archiver.options import ArchiveOptions
from pitr.repo.repository import Repository, open_repository
from pitr.snapshots.schedule import SnapshotSchedule, Snapshotter
from pitr.snapshots.take import ensure_base
from pitr.store.store import Store
from segments.record import Span

log = logging.getLogger("pitr.archiver")

__all__ = ["StoreSource", "archiving"]


class StoreSource:
    """The store open in this process: exact durability and quiet-time knowledge."""

    def __init__(self, store: Store) -> None:
        assert store.identity is not None
        self.store = store
        self.identity = store.identity
        self.wal = store.wal_directory
        self.state = store.state

    async def durable(self) -> tuple[int, int]:
        # On the loop: the store's durable LSN and time floor are loop-owned state, and this is cheap.
        return self.store.promise_complete()

    def read_after(self, lsn: int, upto: int, max_bytes: int) -> Iterator[tuple[bytes, list[Span]]]:
        return self.wal.read_after(lsn, upto, max_bytes)


@asynccontextmanager
async def archiving(store: Store, *repos: str | Repository, options: ArchiveOptions | None = None,
                    cache_dir: str | None = None, s3_endpoint: str | None = None,
                    snapshot_every: SnapshotSchedule | None = None, source_kind: str = "embedded",
                    observer: ArchiveObserver | None = None) -> AsyncIterator[Archiver]:
    """Run an archiver for `store` while the block runs; on exit, ship everything durable.

    A repository that fails transiently (full disk, storage errors) never stops
    the block: it is retried with backoff and shown in `archiver.failing`. A
    fatal error (`RepositoryLost`, `ForeignRepository`, damaged history) cancels
    the block and is raised from it.

    Repositories may be URLs (opened and closed here) or open `Repository` objects.
    `snapshot_every` is a `SnapshotSchedule` for periodic snapshots. `source_kind`
    is recorded in a new repository's identity ("etcd" for an etcd spool). `observer` is told what
    the archiver does (pitr/archiver/observe.py).
    """
    async with AsyncExitStack() as stack:
        opened = []
        for repo in repos:
            if isinstance(repo, Repository):
                opened.append(repo)
            else:
                opened.append(await stack.enter_async_context(
                    open_repository(repo, cache_dir=cache_dir, s3_endpoint=s3_endpoint, create=True)))
        archiver = Archiver(StoreSource(store), opened, options, source_kind=source_kind, observer=observer)
        await archiver.start()
        await ensure_base(archiver, prepare=store.flush)
        stop = anyio.Event()
        hook = None
        if snapshot_every is not None:
            hook = Snapshotter(archiver, snapshot_every, prepare=store.flush).maybe_snapshot
        tg = anyio.create_task_group()
        await tg.__aenter__()
        tg.start_soon(partial(archiver.run, stop=stop, after_cycle=hook))
        try:
            yield archiver
        except BaseException as exc:
            stop.set()
            with _archiver_error():
                if isinstance(exc, anyio.get_cancelled_exc_class()):
                    await tg.__aexit__(type(exc), exc, exc.__traceback__)
                else:  # keep the body's exception unwrapped
                    await tg.__aexit__(None, None, None)
            raise
        stop.set()
        with _archiver_error():
            await tg.__aexit__(None, None, None)
        await archiver.cycle()
        for url, error in archiver.failing.items():
            log.warning("archiving to %s failed as archiving ended; its newest commits are not there yet "
                        "(the store's WAL keeps them for the next archiver): %s", url, error)


@contextmanager
def _archiver_error() -> Iterator[None]:
    """Raise the archiver's own fatal error (RepositoryLost, ...) as itself, not inside a group.

    The archiver task ends only on a fatal error; that cancels the block, and
    the application sees the error that ended archiving.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        errors = [e for e in leaves if not isinstance(e, anyio.get_cancelled_exc_class())]
        if len(errors) == 1 and isinstance(errors[0], Exception):
            raise errors[0] from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
