"""Opening the store side of an archiver from the command line.

When no process holds the store, the command opens it itself (recovering its
WAL) for a one-shot run; a follower, or a run beside a live writer, reads the
data directory as a sidecar and never takes the writer lock.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from pitr.archiver import ArchiveOptions, Archiver, DirectorySource
from pitr.archiving import StoreSource
from pitr.cli.common import need_data, repositories
from pitr.datadir.lock import writer_running
from pitr.snapshots.take import ensure_base
from pitr.store import Store, StoreOptions

Prepare = Callable[[], Awaitable[None]] | None


@asynccontextmanager
async def archiver_session(args: argparse.Namespace, options: ArchiveOptions, *,
                           sidecar: bool) -> AsyncIterator[tuple[Archiver, Prepare]]:
    data = need_data(args)
    async with repositories(args, create=True) as repos:
        if sidecar or writer_running(data):
            source = DirectorySource(data)
            try:
                archiver = Archiver(source, repos, options)
                await archiver.start()
                await ensure_base(archiver)
                yield archiver, None
            finally:
                source.close()
        else:
            async with Store(data, StoreOptions(create=False)) as store:
                archiver = Archiver(StoreSource(store), repos, options)
                await archiver.start()
                await ensure_base(archiver, prepare=store.flush)
                yield archiver, store.flush
