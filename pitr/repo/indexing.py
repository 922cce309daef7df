"""Reading a segment or snapshot file into catalog rows (synchronous; run in a worker thread)."""

from __future__ import annotations

from pitr.catalog.catalog import KeyRow
from pitr.catalog.entries import BlockRow, SegmentEntry, SnapshotEntry
from segments import CorruptFile
from segments import record as rec
from segments.block_seal import SegmentKeys
from segments.segment_reader import SegmentMeta, SegmentReader
from segments.snapshot import SnapshotReader
from segments.source import RangeSource


def segment_entry(name: str, meta: SegmentMeta) -> SegmentEntry:
    h, t = meta.header, meta.trailer
    return SegmentEntry(name, h.first_lsn, t.last_lsn, h.first_ts_ns, t.last_ts_ns, t.complete_through_ns,
                        meta.size, t.record_count, t.raw_bytes, t.block_count, h.prev_chain_digest,
                        t.chain_digest, tuple(meta.pieces))


def block_rows(meta: SegmentMeta) -> list[BlockRow]:
    return [BlockRow(e.first_lsn, meta.first_lsn, e.first_ts_ns, e.offset, e.compressed_size, e.raw_size,
                     e.record_count, e.crc) for e in meta.index]


def key_rows_of(data: bytes | memoryview, spans: list[rec.Span],
                gaps: list[tuple[int, int]] | None = None) -> list[KeyRow]:
    """One row per operation: (key, commit time, LSN, kind, has expiry).

    Commits flagged as following a gap in the source's history are appended to
    `gaps` as (LSN, commit time of the commit before it; -1 when that is not in `data`).
    """
    rows: list[KeyRow] = []
    append = rows.append
    first_op = rec.FIRST_OP.unpack_from
    prev_ts = -1
    for span in spans:
        start, end = span.start, span.end
        if end - start < rec.FIRST_OP_SIZE:
            continue  # shorter than any commit: a record type this reader skips
        _crc, _len, rtype, flags, _r, count, lsn, ts, kind, oflags, _r2, klen, vlen = first_op(data, start)
        if rtype != rec.TYPE_COMMIT:
            continue
        if flags & rec.FLAG_GAP and gaps is not None:
            gaps.append((lsn, prev_ts))
        prev_ts = ts
        if count == 1 and flags & rec.FLAG_SOURCE_REV == 0 and oflags == 0 and \
                rec.FIRST_OP_SIZE + klen + vlen == end - start:
            key_at = start + rec.FIRST_OP_SIZE  # the common single-operation commit, without decoding
            append((bytes(data[key_at : key_at + klen]), ts, lsn, kind, False))
            continue
        record = rec.decode_payload(data, span, skip_unknown=True)
        if record is not None:
            rows.extend((op.key, ts, lsn, op.kind, op.expires_at_ns is not None) for op in record.ops)
    return rows


def index_segment(name: str, source: RangeSource, gaps: list[tuple[int, int]] | None = None, *,
                  keys: SegmentKeys | None = None) -> tuple[SegmentEntry, list[BlockRow], list[KeyRow]]:
    """Check every block and record of a segment and return its catalog rows (and gap commits);
    `keys` open an encrypted repository's sealed blocks."""
    reader = SegmentReader(source, keys=keys)
    rows: list[KeyRow] = []
    block_gaps: list[tuple[int, int]] = []
    last_ts = -1
    for i in range(len(reader.meta.index)):
        raw = reader.read_block(i)
        spans = reader.block_spans(i, raw)
        found: list[tuple[int, int]] = []
        rows.extend(key_rows_of(raw, spans, found))
        block_gaps += [(lsn, last_ts if before == -1 else before) for lsn, before in found]
        last_ts = spans[-1].ts_ns
    if gaps is not None:
        gaps.extend(block_gaps)
    return segment_entry(name, reader.meta), block_rows(reader.meta), rows


def snapshot_entry(name: str, source: RangeSource, *, keys: SegmentKeys | None = None) -> SnapshotEntry:
    """A snapshot's catalog row from its header, footer and index (no block is read).

    With an encrypted repository's `keys` the snapshot must be sealed (a plaintext one was not
    written with the repository's key: `CorruptFile`, never a base a restore could build on), and
    its sealed key table gives the state digest."""
    reader = SnapshotReader(source, keys=keys)
    h, f = reader.header, reader.footer
    return SnapshotEntry(name, h.lsn, h.ts_ns, source.size, h.entry_count, h.logical_bytes, h.created_ns,
                         h.chain_digest, f.state_digest, dict(h.metadata))


def refused_snapshot(path: str | None) -> CorruptFile:
    """What a plaintext snapshot in an encrypted repository is: one written by someone without the key."""
    return CorruptFile("the snapshot is not sealed, but the repository is encrypted: it was not written with "
                       "the repository's key", path=path, offset=0, hint="move the file out of the repository")
