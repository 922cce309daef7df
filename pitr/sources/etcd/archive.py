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

With a key file (`key_file=`, `pitr archive --source etcd://... --encrypt`)
every repository is encrypted under it exactly as an embedded store's: a new
one is claimed encrypted (pitr.repo.keyring.claim_encrypted) and an existing
one must open with the key, both checked before the spool is opened. The
archiver then seals every segment and snapshot with the repository's keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import anyio
import anyio.abc

from pitr.archiver import ArchiveOptions, Archiver
from pitr.archiver.archiver import identity_for
from pitr.archiver.observe import ArchiveObserver, TakenSnapshot
from pitr.archiving import StoreSource, archiving
from pitr.crypto.keys import KeyFile
from pitr.errors import InvalidArgument, WrongKey
from pitr.repo import layout
from pitr.repo.keyring import NO_KEY_HINT, claim_encrypted, unlock
from pitr.repo.repository import Repository, open_repository
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
                         observer: ArchiveObserver | None = None,
                         key_file: str | KeyFile | None = None) -> AsyncIterator[EtcdArchive]:
    """Archive the keys under `prefix` while the block runs, through a spool store at `spool_dir`.

    On entry the base is loaded (first run) or the position resumed; with
    `follow` the watch is followed in the background until the block ends
    (else call ``session.follower.catch_up()``); on exit everything durable
    in the spool is shipped. Snapshots carry the prefix in their metadata. `observer` is told what
    the archiver does (pitr/archiver/observe.py: metrics, heartbeat, events, status record).

    `key_file` (a path or a read `KeyFile`) encrypts: new repositories are created encrypted under
    it and existing ones must open with it (`WrongKey` for a plaintext one or another key's), checked
    before the spool is opened; repositories given already unlocked (`pitr.repo.keyring.unlock`)
    need no `key_file`. Signed checkpoints: `options=ArchiveOptions(checkpoints=CheckpointWriter(...))`.
    """
    async with AsyncExitStack() as stack:
        key = _read_key(key_file)
        if key is not None and len(repos) > 1:  # each would be (or is) encrypted, each under its own data key
            raise _beside_another(repos[0] if isinstance(repos[0], str) else repos[0].url, "is to be encrypted")
        given = [repo for repo in repos if isinstance(repo, Repository)]  # checked before the spool is opened
        new = await _check_keys(given, key, len(repos))
        shown = prefix.decode("utf-8", "backslashreplace")
        store = await stack.enter_async_context(Store(spool_dir, StoreOptions(name=f"etcd:{shown}"), clock=clock))
        # Checked before the repositories are claimed for this spool's history (and a URL's directory made).
        await anyio.to_thread.run_sync(spool_phase, spool_dir, prefix, store.last_lsn)
        opened: list[Repository] = []
        for repo in repos:
            if isinstance(repo, str):
                repo = await stack.enter_async_context(
                    open_repository(repo, cache_dir=cache_dir, s3_endpoint=s3_endpoint, create=True))
                new += await _check_keys([repo], key, len(repos))
            opened.append(repo)
        if key is not None and new:
            await _claim_encrypted(store, new, key)
        for repo in opened:  # a repository to be encrypted never receives a plaintext byte, whatever went before
            if key is not None and repo.segment_keys is None:
                raise WrongKey(f"{repo.url} was to be archived into encrypted under {key.path}, but is not open "
                               "with its key: refusing to archive into it", hint=NO_KEY_HINT)
        archiver = await stack.enter_async_context(archiving(
            store, *opened, options=options, source_kind="etcd", observer=observer))
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


def _read_key(key_file: str | KeyFile | None) -> KeyFile | None:
    if key_file is None or isinstance(key_file, KeyFile):
        return key_file
    from pitr.crypto.keys import read_key_file

    return read_key_file(key_file)


async def _check_keys(repos: list[Repository], key_file: KeyFile | None, count: int) -> list[Repository]:
    """Unlock the existing repositories among `repos` with `key_file` and return the new ones it is to
    claim; without a key, refuse an encrypted one not unlocked yet. `count` is how many repositories
    the archive has: an encrypted one is archived into alone (an etcd archive snapshots into every
    repository at once: its base load and each resync; each encrypted repository has its own data key)."""
    new: list[Repository] = []
    for repo in repos:
        ident = await repo.identity()
        if key_file is None:
            if ident is not None and ident.encryption is not None and repo.segment_keys is None:
                raise WrongKey(f"{repo.url} is encrypted (key id {ident.encryption.key_id.hex()}) and no key "
                               "was given", hint=NO_KEY_HINT)
        elif ident is None:
            new.append(repo)
        else:
            await unlock(repo, key_file)  # WrongKey for a plaintext repository or another key's
        if count > 1 and repo.segment_keys is not None:
            raise _beside_another(repo.url, "is encrypted")
    return new


def _beside_another(url: str, state: str) -> InvalidArgument:
    return InvalidArgument(f"{url} {state}, and an etcd archive snapshots into every repository at once (its "
                           "base load, each resync) while each encrypted repository has its own data key: "
                           "archive into an encrypted repository alone (one `pitr archive --source` with its "
                           "own spool per repository)")


async def _claim_encrypted(store: Store, new: list[Repository], key_file: KeyFile) -> None:
    """Claim each new repository for the spool's history, encrypted under `key_file` (the archiver then
    finds it claimed, and seals into it with the keys the claim unlocked)."""
    ident = identity_for(StoreSource(store), "etcd")
    markers = await anyio.to_thread.run_sync(store.wal_directory.markers.archived_lsns)
    for repo in new:
        await claim_encrypted(repo, ident, key_file, archived_before=layout.repo_key(repo.url) in markers)


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
