"""Reading the next chunk of durable commits and sealing it into a segment: one worker-thread call.

`read_and_seal` does everything that reads the WAL or touches every record
(list the WAL files, read and CRC-check the chunk, seal and compress the
segment, read its metadata back, build its key-index rows), so an archive cycle
hands the event loop back once per chunk rather than once per step, and never
runs a per-record loop on the loop thread.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from pitr.archiver.sources import CommitSource
from pitr.catalog.catalog import KeyRow
from pitr.errors import CorruptData
from pitr.repo.indexing import key_rows_of
from segments import seal_segment, segment_name
from segments.segment_reader import SegmentMeta, read_meta
from segments.source import BytesSource


@dataclass(frozen=True, slots=True)
class SealedChunk:
    """A segment ready to publish, with the catalog rows that index it."""

    name: str
    blob: bytes
    meta: SegmentMeta
    key_rows: list[KeyRow]
    gaps: list[tuple[int, int]]  # commits following a gap in the source: (LSN, time of the commit before)
    commits: int
    last_ts_ns: int  # the newest commit's time (the archive lag is measured from it)


def check_wal_reaches(source: CommitSource, repo_url: str, last_lsn: int) -> None:
    """`CorruptData` when the local WAL no longer holds the commit after `last_lsn` (it was removed
    before this repository got it: only a new base snapshot can continue its history)."""
    files = source.wal.files()
    if files and files[0][0] > last_lsn + 1:
        raise CorruptData(
            f"{repo_url}: the archive ends at LSN {last_lsn} but the local WAL now starts "
            f"at {files[0][0]}; the commits between are gone from this machine",
            hint="take a snapshot into this repository (pitr snapshot) to start a new base")


def read_and_seal(source: CommitSource, repo_url: str, after_lsn: int, upto: int, chain_digest: bytes,
                  max_bytes: int) -> SealedChunk | None:
    """The durable commits after `after_lsn` (through `upto`, about `max_bytes` of them) sealed
    into one segment chained from `chain_digest` for `repo_url`; None when there are none.

    Synchronous: run it in a worker thread (it reads files and loops over every record).
    """
    check_wal_reaches(source, repo_url, after_lsn)
    chunk = next(iter(source.read_after(after_lsn, upto, max_bytes)), None)
    if chunk is None:
        return None
    data, spans = chunk
    name = segment_name(spans[0].lsn, spans[-1].lsn)
    out = io.BytesIO()
    seal_segment(out, source.identity.store_id, chain_digest, data, spans, spans[-1].ts_ns)
    blob = out.getvalue()
    meta = read_meta(BytesSource(blob, name))
    gaps: list[tuple[int, int]] = []
    rows = key_rows_of(data, spans, gaps)
    return SealedChunk(name, blob, meta, rows, gaps, len(spans), spans[-1].ts_ns)
