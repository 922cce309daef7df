"""Reading the next chunk of durable commits and sealing it into a segment: one call per chunk.

`seal_chunk` does everything that reads the WAL or touches every record (list
the WAL files, read and CRC-check the chunk, seal and compress the segment,
read its metadata back, build its key-index rows, sealed, sorted), so an archive
cycle hands the event loop back once per chunk rather than once per step.

It is a pure function of the WAL directory's path and plain arguments, so it
runs in a worker thread or, for large chunks, in a worker process
(`anyio.to_process`): all of its per-record Python then runs under another
interpreter's GIL, and the writers' event loop keeps its own.
"""

from __future__ import annotations

import io
import os
import pickle
import uuid
from dataclasses import dataclass

from pitr.archiver.sources import CommitSource
from pitr.catalog.keytable import ChunkRow, build_table
from pitr.datadir.wal import WalDirectory
from pitr.errors import CorruptData
from pitr.repo.indexing import key_rows_of
from segments import seal_segment, segment_name
from segments.block_seal import SegmentKeys
from segments.segment_reader import SegmentMeta, read_meta
from segments.source import BytesSource

THREAD_MAX_COMMITS = 1 << 14  # a chunk sealed in a thread: its GC-tracked Spans and sorts stay short


@dataclass(frozen=True, slots=True)
class SealedChunk:
    """A segment ready to publish, with the catalog rows that index it."""

    name: str
    blob: bytes
    meta: SegmentMeta
    key_index: tuple[int, list[ChunkRow]]  # the segment's key table: entries, sealed chunk rows (`build_table`)
    gaps: list[tuple[int, int]]  # commits following a gap in the source: (LSN, time of the commit before)
    commits: int
    last_ts_ns: int  # the newest commit's time (the archive lag is measured from it)


def check_wal_reaches(wal: WalDirectory, repo_url: str, last_lsn: int) -> None:
    """`CorruptData` when the local WAL no longer holds the commit after `last_lsn` (it was removed
    before this repository got it: only a new base snapshot can continue its history)."""
    files = wal.files()
    if files and files[0][0] > last_lsn + 1:
        raise CorruptData(
            f"{repo_url}: the archive ends at LSN {last_lsn} but the local WAL now starts "
            f"at {files[0][0]}; the commits between are gone from this machine",
            hint="take a snapshot into this repository (pitr snapshot) to start a new base")


def read_and_seal(source: CommitSource, repo_url: str, after_lsn: int, upto: int, chain_digest: bytes,
                  max_bytes: int, keys: SegmentKeys | None = None) -> SealedChunk | None:
    """`seal_chunk` over `source`'s WAL directory in this process (a worker thread)."""
    sealed, source.wal.resume = seal_chunk(source.wal.path, source.identity.store_id, repo_url, after_lsn,
                                           upto, chain_digest, max_bytes, source.wal.resume, keys)
    return sealed


def seal_chunk(wal_path: str, store_id: uuid.UUID, repo_url: str, after_lsn: int, upto: int,
               chain_digest: bytes, max_bytes: int, resume: tuple[int, str, int] | None = None,
               keys: SegmentKeys | None = None) -> tuple[SealedChunk | None, tuple[int, str, int] | None]:
    """The durable commits after `after_lsn` (through `upto`, about `max_bytes` of them) in the WAL
    directory `wal_path` sealed into one segment chained from `chain_digest` for `repo_url`, None
    when there are none; and where the read stopped (`WalDirectory.resume`: pass it to the next call).
    With an encrypted repository's `keys` the segment's blocks are sealed.

    Synchronous and pure: run it in a worker thread or process (it reads files and loops over
    every record).
    """
    wal = WalDirectory(wal_path)
    wal.resume = resume
    check_wal_reaches(wal, repo_url, after_lsn)
    chunk = next(iter(wal.read_after(after_lsn, upto, max_bytes)), None)
    if chunk is None:
        return None, wal.resume
    data, spans = chunk
    name = segment_name(spans[0].lsn, spans[-1].lsn)
    out = io.BytesIO()
    seal_segment(out, store_id, chain_digest, data, spans, spans[-1].ts_ns, keys=keys)
    blob = out.getvalue()
    meta = read_meta(BytesSource(blob, name))
    gaps: list[tuple[int, int]] = []
    index = build_table(spans[0].lsn, key_rows_of(data, spans, gaps), None if keys is None else keys.index_key)
    return SealedChunk(name, blob, meta, index, gaps, len(spans), spans[-1].ts_ns), wal.resume


_WORKER_NICENESS = 10
_niced = False


def seal_chunk_in_worker(wal_path: str, store_id: uuid.UUID, repo_url: str, after_lsn: int, upto: int,
                         chain_digest: bytes, max_bytes: int, resume: tuple[int, str, int] | None = None,
                         keys: SegmentKeys | None = None) -> bytes:
    """`seal_chunk` in a worker process (`anyio.to_process`), which first lowers its own CPU
    priority once: on a machine with few cores, catching up a backlog then takes the cores the
    writers leave idle rather than competing with them. Never call it in the writer's process.

    Returns the result pickled (`unpickle_sealed` in a worker thread reads it): anyio would
    unpickle a returned object on the event loop's thread, tens of thousands of key rows at once.
    The bytes come from this worker, never from a file."""
    global _niced
    if not _niced:
        _niced = True
        try:
            os.nice(_WORKER_NICENESS)
        except OSError:  # not permitted here: sealing at normal priority is still right
            pass
    result = seal_chunk(wal_path, store_id, repo_url, after_lsn, upto, chain_digest, max_bytes, resume, keys)
    return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)


def unpickle_sealed(payload: bytes) -> tuple[SealedChunk | None, tuple[int, str, int] | None]:
    """What `seal_chunk_in_worker` returned (run it in a worker thread)."""
    result: tuple[SealedChunk | None, tuple[int, str, int] | None] = pickle.loads(payload)  # noqa: S301
    return result
