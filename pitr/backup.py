"""The seed's backup API (create, list, verify, restore, cleanup), done over pitr repositories.

A "backup" is a snapshot file in a repository's ``snapshots/`` folder. Unlike
the Concord module this grew from, a backup is read from one consistent LMDB
transaction, bound to the log by LSN and chain digest, checksummed including
its metadata, published atomically, listed from headers only, and restorable
together with the log to any later moment (see pitr.restore).
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import anyio

from pitr.archiver import ArchiveOptions, Archiver, CommitSource, DirectorySource
from pitr.archiving import StoreSource
from pitr.datadir.lock import writer_running
from pitr.errors import CorruptData, InvalidArgument, ObjectNotFound, Window, WrongKey, file_error
from pitr.jsontypes import JSONObject
from pitr.repo import layout
from pitr.repo.identity import RepoIdentity
from pitr.repo.live import live_snapshots
from pitr.repo.repository import Repository, open_repository
from pitr.restore.engine import RestoreResult, build_state
from pitr.restore.options import RestoreTarget
from pitr.restore.plan import RestorePlan
from pitr.restore.restore import absolute, check_destination, publish_restored
from pitr.retention import plan_cleanup, run_cleanup
from pitr.snapshots.take import take_snapshot
from pitr.store import Store, StoreOptions
from pitr.timeline import Base
from pitr.verify.checks import Finding, check_snapshot
from segments import SegmentsError, parse_snapshot_name
from segments.snapshot import SnapshotHeader, read_header
from segments.source import FileSource, RangeSource

DEFAULT_PATH = "./backups"


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """One backup (snapshot file) as `list` reports it, from its header alone."""

    path: str
    timestamp: datetime
    size_bytes: int
    entry_count: int
    lsn: int
    ts_ns: int
    logical_bytes: int
    store_id: str
    store_name: str | None
    chain_digest: str
    created: datetime
    metadata: JSONObject = field(default_factory=dict)

    def as_dict(self) -> JSONObject:
        return {"path": self.path, "timestamp": self.timestamp.isoformat(), "size_bytes": self.size_bytes,
                "entry_count": self.entry_count, "lsn": self.lsn, "ts_ns": self.ts_ns,
                "logical_bytes": self.logical_bytes, "store_id": self.store_id, "store_name": self.store_name,
                "chain_digest": self.chain_digest, "created": self.created.isoformat(),
                "metadata": self.metadata}


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """`verify` outcome: valid, or the findings that make it invalid."""

    path: str
    valid: bool
    findings: list[Finding]


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _split_backup(file: str) -> tuple[str, str]:
    """(repository URL, object name) of a backup named by URL (`s3://b/p/snapshots/NAME`)."""
    repo_url, sep, name = file.rpartition("/" + layout.SNAPSHOTS)
    if not sep or not repo_url or not parse_snapshot_name(name):
        raise InvalidArgument(f"{file}: not a backup (expected REPOSITORY/{layout.SNAPSHOTS}NAME.snap)")
    return repo_url, layout.snapshot_object(name)


def _backup_path(repo: Repository, name: str) -> str:
    """How a backup is named to the user: its local file, or its URL in a remote repository."""
    object_name = layout.snapshot_object(name)
    return repo.local_path(object_name) or f"{repo.url}/{object_name}"


async def create(path: str = DEFAULT_PATH, *, data: str | Store, compress: bool = True,
                 include_metadata: bool = True, s3_endpoint: str | None = None) -> BackupInfo:
    """Take a backup of the store (an open `Store`, or a data directory) into repository `path`.

    The log up to the backup's LSN is archived into the same repository, which
    is what binds the backup to the log. `compress=False` stores blocks raw;
    `include_metadata=False` leaves out host and producer details. `path` may
    be a directory or a repository URL (`s3://BUCKET/PREFIX`).
    """
    async with open_repository(path, create=True, s3_endpoint=s3_endpoint) as repo:
        if isinstance(data, Store):
            return await _create_from(repo, StoreSource(data), data.flush, compress, include_metadata)
        if writer_running(data):
            source = DirectorySource(data)
            try:
                return await _create_from(repo, source, None, compress, include_metadata)
            finally:
                source.close()
        async with Store(data, StoreOptions(create=False)) as store:
            return await _create_from(repo, StoreSource(store), store.flush, compress, include_metadata)


async def _create_from(repo: Repository, source: CommitSource, prepare: Callable[[], Awaitable[None]] | None,
                       compress: bool, include_metadata: bool) -> BackupInfo:
    archiver = Archiver(source, [repo], ArchiveOptions())
    await archiver.start()
    await archiver.cycle()
    entry = await take_snapshot(archiver, prepare=prepare, compress=compress,
                                include_metadata=include_metadata)
    src = await repo.open_source(layout.snapshot_object(entry.name))
    try:
        header = await anyio.to_thread.run_sync(_read_header, src, entry.name)
    finally:
        src.close()
    return _info(_backup_path(repo, entry.name), entry.size, header)


def _read_header(src: RangeSource, name: str) -> SnapshotHeader:
    try:
        return read_header(src)
    except SegmentsError as exc:
        raise CorruptData(f"{name}: unreadable backup header: {exc}", path=name) from exc


def _info(path: str, size: int, header: SnapshotHeader) -> BackupInfo:
    meta: JSONObject = dict(header.metadata)
    return BackupInfo(path, _dt(header.ts_ns), size, header.entry_count, header.lsn, header.ts_ns,
                      header.logical_bytes, str(header.store_id), _store_name(meta),
                      header.chain_digest.hex(), _dt(header.created_ns), meta)


def _store_name(metadata: JSONObject) -> str | None:
    name = metadata.get("store_name")
    return None if name is None else str(name)


def _snapshot_paths(path: str) -> builtins.list[str]:
    folder = os.path.join(path, layout.SNAPSHOTS.rstrip("/"))
    if not os.path.isdir(folder):
        if not os.path.isdir(path):
            raise InvalidArgument(f"{path}: no such backup directory")
        return []
    return [os.path.join(folder, n) for n in sorted(live_snapshots(os.listdir(folder))[0])]


async def list(path: str = DEFAULT_PATH, *,  # noqa: A001 - the seed's name
               s3_endpoint: str | None = None) -> builtins.list[BackupInfo]:
    """Every backup in repository `path`, oldest first, read from headers only.

    A local directory is read directly; a remote repository's backups come
    from its catalog, brought up to date with the repository first.
    """
    if _is_url(path):
        async with open_repository(path, s3_endpoint=s3_endpoint) as repo:
            await repo.sync()
            return [BackupInfo(_backup_path(repo, s.name), _dt(s.ts_ns), s.size, s.entry_count, s.lsn, s.ts_ns,
                               s.logical_bytes, str(repo_id), _store_name(s.metadata), s.chain_digest.hex(),
                               _dt(s.created_ns), dict(s.metadata))
                    for repo_id in [await _store_id(repo)] for s in repo.catalog.snapshots()]

    def read_all() -> builtins.list[BackupInfo]:
        out = []
        for file in _snapshot_paths(path):
            try:
                with FileSource(file) as src:
                    out.append(_info(file, src.size, read_header(src)))
            except SegmentsError as exc:
                raise CorruptData(f"{file}: unreadable backup header: {exc}", path=file) from exc
            except OSError as exc:
                raise file_error(exc, file, "read the backup header") from exc
        return out

    return await anyio.to_thread.run_sync(read_all)


async def _store_id(repo: Repository) -> str:
    ident = await repo.identity()
    return "" if ident is None else str(ident.store_id)


@asynccontextmanager
async def _open_backup(file: str, s3_endpoint: str | None) -> AsyncIterator[tuple[RangeSource, str | None]]:
    """The backup's bytes, and the local repository directory holding it (None for a remote one)."""
    if not _is_url(file):
        def open_file() -> FileSource:
            if not os.path.isfile(file):
                raise InvalidArgument(f"{file}: no such backup file")
            try:
                return FileSource(file)
            except OSError as exc:
                raise file_error(exc, file, "open the backup") from exc

        src = await anyio.to_thread.run_sync(open_file)
        try:
            yield src, os.path.dirname(os.path.dirname(absolute(file)))
        finally:
            src.close()
        return
    repo_url, object_name = _split_backup(file)
    async with open_repository(repo_url, s3_endpoint=s3_endpoint) as repo:
        try:
            remote = await repo.open_source(object_name, fresh=True)
        except ObjectNotFound as exc:
            raise InvalidArgument(f"{file}: no such backup") from exc
        try:
            yield remote, None
        finally:
            remote.close()


def _refuse_sealed(src: RangeSource, file: str) -> None:
    """`WrongKey` for a sealed snapshot: its data key is in its repository, which this API does not open
    (a sealed file read here would look damaged, which it is not)."""
    if _read_header(src, file).sealed:
        raise WrongKey(f"{file} is a sealed snapshot of an encrypted repository: it is read through the "
                       "repository's key", hint="pitr verify FILE --repo R --key-file KEY, or pitr restore "
                       "--repo R --base NAME --key-file KEY (pitr.restore.restore with the unlocked repository)")


async def verify(file: str, *, s3_endpoint: str | None = None) -> VerifyResult:
    """Check every block, the state digest and the file digest of one backup (a file or a URL)."""
    async with _open_backup(file, s3_endpoint) as (src, _root):
        await anyio.to_thread.run_sync(_refuse_sealed, src, file)
        finding = await anyio.to_thread.run_sync(lambda: check_snapshot(file, src, full=True))
    return VerifyResult(file, finding is None, [] if finding is None else [finding])


async def restore(file: str, *, dest: str, force: bool = False, replace_foreign: bool = False,
                  verify: bool = True, name: str | None = None, s3_endpoint: str | None = None) -> RestoreResult:
    """Restore the state exactly as one backup (a file or a URL) holds it into a new store at `dest`.

    The destination rules are `pitr.restore`'s: never a store a live writer
    holds, never inside or around a repository; `force` replaces a pitr store,
    and `replace_foreign` too any other non-empty directory. For any other
    moment, use `pitr.restore.restore` with the repository.
    """
    dest = absolute(dest)
    if replace_foreign and not force:
        raise InvalidArgument("replace_foreign needs force as well")
    async with _open_backup(file, s3_endpoint) as (src, root):
        roots = [] if root is None else [root]
        await anyio.to_thread.run_sync(_refuse_sealed, src, file)
        await anyio.to_thread.run_sync(partial(check_destination, dest, force=force,
                                               replace_foreign=replace_foreign, repo_roots=roots))
        if verify:
            finding = await anyio.to_thread.run_sync(lambda: check_snapshot(file, src, full=True))
            if finding is not None:
                raise CorruptData(f"{file}: backup is damaged: {finding.message}", path=file,
                                  offset=finding.offset, hint="pick another backup (pitr backups list)")

        def build(state_dir: str) -> RestoreResult:
            header = _read_header(src, file)
            meta = header.metadata
            ident = RepoIdentity(header.store_id, str(meta.get("store_name") or "restored"), header.created_ns,
                                 int(meta.get("first_lsn", 1)), header.chain_digest)
            target = RestoreTarget(lsn=header.lsn)
            window = Window(header.ts_ns, header.ts_ns, header.lsn, header.lsn)
            plan = RestorePlan(target, window, Base(header.lsn, header.ts_ns, os.path.basename(file)), None,
                               [], header.lsn, header.ts_ns, header.ts_ns, ident)
            return build_state(state_dir, plan, src, [], name=name or ident.name)

        return await publish_restored(dest, force, build, replace_foreign=replace_foreign, repo_roots=roots)


async def cleanup(path: str = DEFAULT_PATH, *, keep_count: int = 10, keep_days: float = 30,
                  dry_run: bool = False, now_ns: int | None = None, s3_endpoint: str | None = None) -> int:
    """Delete backups outside the retention rule and the log no kept backup needs; returns the count.

    Keeps a backup if it is among the `keep_count` newest OR younger than
    `keep_days`; never deletes the newest. With `dry_run`, deletes nothing and
    returns how many files would go.
    """
    async with open_repository(path, s3_endpoint=s3_endpoint) as repo:
        plan = await plan_cleanup(repo, keep_count, keep_days, now_ns or time.time_ns())
        if dry_run:
            return plan.deleted_count
        return await run_cleanup(repo, plan)


__all__ = ["BackupInfo", "VerifyResult", "cleanup", "create", "list", "restore", "verify"]
