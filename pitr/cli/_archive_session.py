"""Opening the store side of an archiver from the command line.

When no process holds the store, the command opens it itself (recovering its
WAL) for a one-shot run; a follower, or a run beside a live writer, reads the
data directory as a sidecar and never takes the writer lock.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio

from pitr.archiver import ArchiveOptions, Archiver, DirectorySource
from pitr.archiver.observe import ArchiveObserver
from pitr.archiving import StoreSource
from pitr.cli.common import need_data, repositories
from pitr.datadir.lock import writer_running
from pitr.errors import InvalidArgument, PitrError
from pitr.snapshots.take import ensure_base
from pitr.store import Store, StoreOptions

Prepare = Callable[[], Awaitable[None]] | None
WAIT_POLL_SECONDS = 1.0
CREATING_SECONDS = 30.0  # a writer creates a store in milliseconds: longer is damage


async def wait_for_store(data: str, poll: float = WAIT_POLL_SECONDS) -> DirectorySource:
    """The store at `data` read as a sidecar, waiting (checking every `poll` seconds) while it does not
    exist yet; while its writer holds the lock and is still creating it (a state without its
    identity or sub-databases, a WAL directory not made yet), for up to `CREATING_SECONDS`.
    Any other failure is raised."""
    said = False
    creating_since: float | None = None
    while True:
        try:
            return DirectorySource(data)
        except InvalidArgument as exc:  # DataDir.open_reader's "no pitr store here" / "no identity yet"
            if not said:
                print(f"pitr archive: waiting for the store: {exc}", file=sys.stderr)
                said = True
            creating_since = None
            await anyio.sleep(poll)
        except PitrError:
            now = anyio.current_time()
            creating_since = now if creating_since is None else creating_since
            if not writer_running(data) or now - creating_since > CREATING_SECONDS:
                raise
            await anyio.sleep(poll / 10)


def _say(args: argparse.Namespace) -> Callable[[str], None] | None:
    """Where a command tells what it created, on standard error (nothing with --json)."""
    if getattr(args, "json", False):
        return None
    return lambda line: print(f"pitr: {line}", file=sys.stderr)


@asynccontextmanager
async def archiver_session(args: argparse.Namespace, options: ArchiveOptions, *, sidecar: bool,
                           observer: ArchiveObserver | None = None) -> AsyncIterator[tuple[Archiver, Prepare]]:
    data = need_data(args)
    encryption = None
    if getattr(args, "encrypt", False):  # the key checked before a repository is opened, the repositories
        from pitr.cli._encrypt import check_repositories, claim_new, read_encryption_key  # before the store

        encryption = read_encryption_key(args)
    async with repositories(args, create=True, unlock=encryption is None) as repos:
        if encryption is not None:
            await check_repositories(encryption, repos)
        if sidecar or writer_running(data):
            source = await wait_for_store(data) if sidecar else DirectorySource(data)
            try:
                if encryption is not None:
                    await claim_new(encryption, source, say=_say(args))
                archiver = Archiver(source, repos, options, observer=observer)
                await archiver.start()
                await ensure_base(archiver)
                yield archiver, None
            finally:
                source.close()
        else:
            async with Store(data, StoreOptions(create=False)) as store:
                if encryption is not None:
                    await claim_new(encryption, StoreSource(store), say=_say(args))
                archiver = Archiver(StoreSource(store), repos, options, observer=observer)
                await archiver.start()
                await ensure_base(archiver, prepare=store.flush)
                yield archiver, store.flush
