"""Taking a snapshot: a consistent copy of the LMDB state at one LSN, bound to the log's chain.

The state is read in one worker call: it opens a read view, reads the
checkpoint (the snapshot's LSN and time), streams the visible state into a
temporary file (hashed, compressed and written in a second thread while the
rows are read: `pitr.snapshots.pipeline`) and closes the view, so no LMDB
pages stay pinned while files upload and writers are never blocked. The archiver then seals the log through
exactly that LSN, which gives the chain digest of that segment boundary; the
file's header takes it when the file is finished, so a restore can prove the
snapshot belongs to the log it replays.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, BinaryIO, TypeVar

import anyio

from pitr.archiver.archiver import Archiver
from pitr.archiver.options import RepoProgress
from pitr.catalog.entries import SnapshotEntry
from pitr.datadir.state import StateDB
from pitr.errors import CorruptData, InvalidArgument, ObjectExists, file_error
from pitr.jsontypes import JSONValue
from pitr.repo import layout
from pitr.repo.indexing import snapshot_entry
from pitr.repo.repository import Repository
from pitr.snapshots.pipeline import handed_off
from segments import SegmentsError
from segments.block_seal import SegmentKeys
from segments.naming import snapshot_name
from segments.snapshot import SnapshotHeader, SnapshotWriter

PRODUCER = "pitr 0.1.0"
PROGRESS_EVERY = 65536  # entries between progress reports
Progress = Callable[[str, int, int], None]
_T = TypeVar("_T")
HeaderAt = Callable[[int, int], SnapshotHeader]  # (lsn, ts_ns) of the checkpoint -> the file's header


def write_snapshot_entries(state: StateDB, out: BinaryIO, header_at: HeaderAt, progress: Progress | None = None,
                           compress: bool = True, keys: SegmentKeys | None = None) -> SnapshotWriter:
    """Stream the state into a snapshot at `out`, from one read view opened and closed in this call.

    The header is `header_at(lsn, ts_ns)` of the view's checkpoint; keys already expired at its
    time are left out; with an encrypted repository's `keys` the file is sealed. Returns the writer,
    to be finished (`finish_snapshot_file`) once the chain digest at its LSN is known.
    """
    with state.read_view() as view:
        header = header_at(*view.checkpoint())
        total = view.count()
        writer = SnapshotWriter(out, header, compress=compress, keys=keys)
        done = reported = 0
        # each run of rows checked and encoded in one compiled call (pitr.datadir.rowcodec) here,
        # then checked again, hashed, compressed and written in a second thread (handed_off)
        with handed_off(writer.add_encoded) as write:
            for encoded in view.encoded_rows(live_at=header.ts_ns):
                write(encoded)
                done += len(encoded)
                if progress is not None and done - reported >= PROGRESS_EVERY:
                    progress("snapshot", done, total)
                    reported = done
    if progress is not None:
        progress("snapshot", total, total)
    return writer


def finish_snapshot_file(writer: SnapshotWriter, out: BinaryIO,
                         chain_digest: bytes | None = None) -> tuple[SnapshotHeader, bytes, int]:
    """Finish the file (with `chain_digest` in its header, if given) and fsync it; returns the
    final header, the state digest and the file size."""
    final, footer = writer.finish(chain_digest=chain_digest)
    out.flush()
    os.fsync(out.fileno())
    return final, footer.state_digest, out.tell()


def write_snapshot_file(state: StateDB, path: str, header_at: HeaderAt, progress: Progress | None = None,
                        compress: bool = True, keys: SegmentKeys | None = None) -> tuple[SnapshotHeader, bytes, int]:
    """Write a whole snapshot file of the state at `path` (its header's chain digest as given)."""
    with open(path, "w+b") as out:
        writer = write_snapshot_entries(state, out, header_at, progress, compress, keys)
        return finish_snapshot_file(writer, out)


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
    if await anyio.to_thread.run_sync(lambda: all(prog.repo.catalog.snapshots() for prog in archiver.progress)):
        return None  # every repository has a base (catalog reads: off the loop)
    return await take_snapshot(archiver, prepare=prepare, metadata={"reason": "base of a restored history"})


async def take_snapshot(archiver: Archiver, *, prepare: Callable[[], Awaitable[object]] | None = None,
                        metadata: Mapping[str, JSONValue] | None = None, compress: bool = True,
                        include_metadata: bool = True, progress: Progress | None = None) -> SnapshotEntry:
    """Snapshot the archiver's store into every repository the archiver ships to.

    `prepare` (an async callable) runs first under the archiver's lock; the
    in-process store passes its `flush` so the snapshot is as fresh as possible.
    """
    keys = _sealing_keys(archiver)
    source = archiver.source
    state = source.state
    ident = source.identity
    async with archiver.cycle_lock:
        if prepare is not None:
            await prepare()
        meta: dict[str, Any] = {"store_name": ident.name, "first_lsn": ident.first_lsn}
        if include_metadata:
            meta.update({"host": socket.gethostname(), "producer": PRODUCER, "compressed": compress,
                         **(metadata or {})})
        created_ns = archiver.clock()

        def header_at(lsn: int, ts: int) -> SnapshotHeader:
            if ts == 0:  # nothing committed yet: the snapshot of the empty store is dated at creation
                ts = ident.created_ns
            # the chain digest at `lsn` is known once the log is sealed through it: set by finish()
            return SnapshotHeader(ident.store_id, lsn, ts, bytes(32), 0, 0, created_ns, meta)

        tmpdir = archiver.progress[0].repo.cache_dir
        tmp, out = await anyio.to_thread.run_sync(_create_temporary, tmpdir)
        try:
            with out:
                writer = await _writing(tmp, write_snapshot_entries, state, out, header_at, progress, compress,
                                         keys)
                lsn, ts = writer.header.lsn, writer.header.ts_ns  # the view is closed: nothing pinned
                chain_digest, rebased = await _ship_through(archiver, lsn)
                try:
                    final, state_digest, size = await _writing(tmp, finish_snapshot_file, writer, out,
                                                               chain_digest)
                    out.close()
                    entry = SnapshotEntry(snapshot_name(lsn, ts), lsn, ts, size, final.entry_count,
                                          final.logical_bytes, final.created_ns, chain_digest, state_digest,
                                          meta)
                    await _publish(archiver, entry, tmp, rebased)
                finally:
                    _put_back(rebased)
        finally:
            with contextlib.suppress(FileNotFoundError):  # only a temporary copy: published or not
                os.unlink(tmp)
    return entry


def _sealing_keys(archiver: Archiver) -> SegmentKeys | None:
    """The keys the snapshot is sealed with: an encrypted repository's, which then takes it alone (one
    file is published to every repository, and each encrypted one has its own data key)."""
    sealed = [prog.repo for prog in archiver.progress if prog.repo.segment_keys is not None]
    if sealed and len(archiver.progress) > 1:
        raise InvalidArgument(f"{sealed[0].url} is encrypted, and a snapshot is one file for every repository: "
                              "an encrypted repository takes its snapshots alone (run pitr snapshot with only "
                              "that --repo)")
    return sealed[0].segment_keys if sealed else None


async def _writing(tmp: str, write: Callable[..., _T], *args: object) -> _T:
    """`write(*args)` in a worker thread, its OSError translated as one writing `tmp`."""
    try:
        return await anyio.to_thread.run_sync(write, *args)
    except OSError as exc:
        raise file_error(exc, tmp, "write the snapshot") from exc


async def _publish(archiver: Archiver, entry: SnapshotEntry, tmp: str, rebased: _Rebased) -> None:
    """Publish the finished file into every repository and index it there."""
    name = entry.name
    for prog in archiver.progress:
        indexed = entry
        try:
            await prog.repo.storage.publish_file(layout.snapshot_object(name), tmp)
        except ObjectExists:  # a snapshot at this LSN exists already: keep the first if it agrees
            indexed = await _existing_snapshot(prog.repo, name, entry)
        if prog in rebased.progress:
            prog.tail_object = layout.snapshot_object(name)  # what the history now ends with
        await anyio.to_thread.run_sync(prog.repo.catalog.add_snapshot, indexed)


def _create_temporary(tmpdir: str) -> tuple[str, BinaryIO]:
    """A new temporary snapshot file in `tmpdir`, open for writing and reading."""
    try:
        os.makedirs(tmpdir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".snapshot-", dir=tmpdir)
    except OSError as exc:
        raise file_error(exc, tmpdir, "create a snapshot file") from exc
    return tmp, os.fdopen(fd, "w+b")


@dataclass(slots=True)
class _Rebased:
    """The repositories rebased onto the snapshot, and where each was before (put back on failure)."""

    progress: list[RepoProgress]
    before: list[tuple[RepoProgress, int, bytes]]


async def _ship_through(archiver: Archiver, lsn: int) -> tuple[bytes, _Rebased]:
    """Seal and ship the log through exactly `lsn` and return the chain digest there, with the
    repositories rebased onto the snapshot (a new repository's history starts with it).

    A rebased repository's position is put back (`_put_back`) unless its base is published.
    """
    ident = archiver.source.identity
    progress = [prog for prog in archiver.progress if archiver.needs_base(prog)]
    rebased = _Rebased(progress, [(prog, prog.last_lsn, prog.chain_digest) for prog in progress])
    try:
        for prog in rebased.progress:
            archiver.rebase(prog, lsn)
        await archiver.ship_through(lsn)

        def digests_at() -> list[tuple[RepoProgress, bytes | None]]:  # catalog reads: off the loop
            return [(prog, prog.chain_digest if prog.last_lsn == lsn else
                     prog.repo.catalog.chain_digest_at(lsn, ident.start_chain_digest, ident.first_lsn))
                    for prog in archiver.progress]

        digests: set[bytes] = set()
        for prog, digest in await anyio.to_thread.run_sync(digests_at):
            if digest is None:
                raise CorruptData(f"{prog.repo.url}: no segment boundary at LSN {lsn}; cannot bind "
                                  "a snapshot there")
            digests.add(digest)
        if len(digests) != 1:
            raise CorruptData(f"repositories disagree on the chain digest at LSN {lsn}",
                              hint="a new repository's base snapshot is taken into it alone: "
                                   "run pitr snapshot with only that --repo" if rebased.progress else None)
    except BaseException:
        _put_back(rebased)
        raise
    return digests.pop(), rebased


def _put_back(rebased: _Rebased) -> None:
    for prog, last_lsn, digest in rebased.before:
        if prog.tail_object is None:  # its base was not published: nothing may follow it there
            prog.last_lsn, prog.chain_digest = last_lsn, digest


async def _existing_snapshot(repo: Repository, name: str, taken: SnapshotEntry) -> SnapshotEntry:
    """The catalog row of a snapshot already published under `name`; it must hold the same state."""
    object_name = layout.snapshot_object(name)
    source = await repo.open_source(object_name, fresh=True)
    try:
        existing = await anyio.to_thread.run_sync(partial(snapshot_entry, name, source, keys=repo.segment_keys))
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
