"""Taking a snapshot: a consistent copy of the LMDB state at one LSN, bound to the log's chain.

The state is read from one LMDB read transaction, so writers are never
blocked. Before the snapshot is written, the archiver seals the log through
exactly that LSN, so the snapshot's chain digest is the digest of a segment
boundary and a restore can prove the snapshot belongs to the log it replays.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import lmdb

from pitr.archiver.archiver import Archiver
from pitr.archiver.options import RepoProgress
from pitr.catalog.entries import SnapshotEntry
from pitr.datadir.state import I64BE, U64BE, StateDB
from pitr.errors import CorruptData, ObjectExists, file_error, lmdb_error
from pitr.jsontypes import JSONValue
from pitr.repo import layout
from pitr.repo.indexing import snapshot_entry
from pitr.repo.repository import Repository
from segments import SegmentsError
from segments.naming import snapshot_name
from segments.snapshot import SnapshotHeader, SnapshotWriter

PRODUCER = "pitr 0.1.0"
Progress = Callable[[str, int, int], None]


def write_snapshot_file(state: StateDB, txn: lmdb.Transaction, path: str, header: SnapshotHeader,
                        progress: Progress | None = None,
                        compress: bool = True) -> tuple[SnapshotHeader, bytes, int]:
    """Stream the state visible in `txn` into a new snapshot file at `path`.

    Keys already expired at the snapshot's time are left out. Returns the final
    header, the state digest and the file size.
    """
    total = int(txn.stat(state.data)["entries"])
    has_expiry = bool(txn.stat(state.expiry)["entries"])
    expiry_cursor = txn.cursor(state.expiry)
    cutoff = header.ts_ns
    with open(path, "w+b") as fh:
        writer = SnapshotWriter(fh, header, compress=compress)
        done = 0
        for key, value in txn.cursor(state.data):
            expires = None
            if has_expiry:
                raw = expiry_cursor.get(key)
                if raw is not None:
                    expires = I64BE.unpack(raw)[0]
                    if expires <= cutoff:
                        continue
            writer.add(bytes(key), bytes(value), expires)
            done += 1
            if progress is not None and done % 65536 == 0:
                progress("snapshot", done, total)
        final, footer = writer.finish()
        fh.flush()
        os.fsync(fh.fileno())
        size = fh.tell()
    if progress is not None:
        progress("snapshot", total, total)
    return final, footer.state_digest, size


async def ensure_base(archiver: Archiver, *,
                      prepare: Callable[[], Awaitable[object]] | None = None) -> SnapshotEntry | None:
    """Give a history that does not start empty a base snapshot in every repository lacking one.

    A restored store's history starts at the restore point with the restored
    state, not with an empty store: its archive is restorable only from a
    snapshot. So does a new, empty repository of a store whose WAL no longer
    holds the start of its history (its old repository was lost). This takes
    one as soon as archiving starts.
    """
    if any(archiver.needs_base(prog) for prog in archiver.progress):
        return await take_snapshot(archiver, prepare=prepare, metadata={
            "reason": "base of a new repository: the local WAL no longer reaches the start of the history"})
    if archiver.source.identity.first_lsn <= 1:
        return None
    if all(prog.repo.catalog.snapshots() for prog in archiver.progress):
        return None
    return await take_snapshot(archiver, prepare=prepare, metadata={"reason": "base of a restored history"})


async def take_snapshot(archiver: Archiver, *, prepare: Callable[[], Awaitable[object]] | None = None,
                        metadata: Mapping[str, JSONValue] | None = None, compress: bool = True,
                        include_metadata: bool = True, progress: Progress | None = None) -> SnapshotEntry:
    """Snapshot the archiver's store into every repository the archiver ships to.

    `prepare` (an async callable) runs first under the archiver's lock; the
    in-process store passes its `flush` so the snapshot is as fresh as possible.
    """
    source = archiver.source
    state = source.state
    ident = source.identity
    async with archiver.cycle_lock:
        if prepare is not None:
            await prepare()
        try:
            txn = await anyio.to_thread.run_sync(lambda: state.env.begin(buffers=False))
        except lmdb.Error as exc:
            raise lmdb_error(exc, state.path, "read the store's state") from exc
        saved: list[tuple[RepoProgress, int, bytes]] = []
        try:
            raw_lsn = txn.get(b"applied_lsn", db=state.meta)
            raw_ts = txn.get(b"applied_ts_ns", db=state.meta)
            if raw_lsn is None or raw_ts is None:
                raise CorruptData(f"{state.path}: state has no checkpoint", path=state.path)
            lsn, ts = U64BE.unpack(raw_lsn)[0], I64BE.unpack(raw_ts)[0]
            if ts == 0:  # nothing committed yet: the snapshot of the empty store is dated at creation
                ts = ident.created_ns
            rebased = [prog for prog in archiver.progress if archiver.needs_base(prog)]
            saved = [(prog, prog.last_lsn, prog.chain_digest) for prog in rebased]  # put back on failure
            for prog in rebased:
                archiver.rebase(prog, lsn)
            await archiver.ship_through(lsn)
            digests = set()
            for prog in archiver.progress:
                digest = prog.chain_digest if prog.last_lsn == lsn else \
                    prog.repo.catalog.chain_digest_at(lsn, ident.start_chain_digest, ident.first_lsn)
                if digest is None:
                    raise CorruptData(f"{prog.repo.url}: no segment boundary at LSN {lsn}; cannot bind "
                                      "a snapshot there")
                digests.add(digest)
            if len(digests) != 1:
                raise CorruptData(f"repositories disagree on the chain digest at LSN {lsn}",
                                  hint="a new repository's base snapshot is taken into it alone: "
                                       "run pitr snapshot with only that --repo" if rebased else None)
            chain_digest = digests.pop()
            meta: dict[str, Any] = {"store_name": ident.name, "first_lsn": ident.first_lsn}
            if include_metadata:
                meta.update({"host": socket.gethostname(), "producer": PRODUCER, "compressed": compress,
                             **(metadata or {})})
            header = SnapshotHeader(ident.store_id, lsn, ts, chain_digest, 0, 0, archiver.clock(), meta)
            tmpdir = archiver.progress[0].repo.cache_dir
            try:
                os.makedirs(tmpdir, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=".snapshot-", dir=tmpdir)
                os.close(fd)
            except OSError as exc:
                raise file_error(exc, tmpdir, "create a snapshot file") from exc
            try:
                try:
                    final, state_digest, size = await anyio.to_thread.run_sync(
                        write_snapshot_file, state, txn, tmp, header, progress, compress)
                except OSError as exc:
                    raise file_error(exc, tmp, "write the snapshot") from exc
                except lmdb.Error as exc:
                    raise lmdb_error(exc, state.path, "read the store's state") from exc
                name = snapshot_name(lsn, ts)
                entry = SnapshotEntry(name, lsn, ts, size, final.entry_count, final.logical_bytes,
                                      final.created_ns, chain_digest, state_digest, meta)
                for prog in archiver.progress:
                    indexed = entry
                    try:
                        await prog.repo.storage.publish_file(layout.snapshot_object(name), tmp)
                    except ObjectExists:  # a snapshot at this LSN exists already: keep the first if it agrees
                        indexed = await _existing_snapshot(prog.repo, name, entry)
                    if prog in rebased:
                        prog.tail_object = layout.snapshot_object(name)  # what the history now ends with
                    try:
                        prog.repo.catalog.add_snapshot(indexed)
                    except lmdb.Error as exc:
                        raise lmdb_error(exc, prog.repo.catalog.path, f"index {name}") from exc
            finally:
                with contextlib.suppress(FileNotFoundError):  # only a temporary copy: published or not
                    os.unlink(tmp)
        finally:
            for prog, last_lsn, digest in saved:
                if prog.tail_object is None:  # its base was not published: nothing may follow it there
                    prog.last_lsn, prog.chain_digest = last_lsn, digest
            await anyio.to_thread.run_sync(txn.abort)
    return entry


async def _existing_snapshot(repo: Repository, name: str, taken: SnapshotEntry) -> SnapshotEntry:
    """The catalog row of a snapshot already published under `name`; it must hold the same state."""
    object_name = layout.snapshot_object(name)
    source = await repo.open_source(object_name, fresh=True)
    try:
        existing = await anyio.to_thread.run_sync(snapshot_entry, name, source)
    except SegmentsError as exc:
        raise CorruptData(f"{repo.url}/{object_name} exists but cannot be read: {exc}", path=object_name,
                          hint="run `pitr verify` on the repository") from exc
    finally:
        source.close()
    if (existing.lsn, existing.state_digest, existing.chain_digest) != \
            (taken.lsn, taken.state_digest, taken.chain_digest):
        raise CorruptData(f"{repo.url}/{object_name} exists with another state or chain digest than the "
                          f"store's state at LSN {taken.lsn}; published files are never overwritten",
                          path=object_name, hint="another history may be writing to this repository")
    return existing
