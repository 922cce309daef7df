"""Reading a segment or snapshot file into catalog rows (synchronous; run in a worker thread)."""

from __future__ import annotations

from pitr.catalog.catalog import KeyRow
from pitr.catalog.entries import BlockRow, SegmentEntry, SnapshotEntry
from segments import record as rec
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


def key_rows_of(data: bytes | memoryview, spans: list[rec.Span]) -> list[KeyRow]:
    """One row per operation: (key, commit time, LSN, kind, has expiry)."""
    rows: list[KeyRow] = []
    for span in spans:
        record = rec.decode_payload(data, span, skip_unknown=True)
        if record is None:
            continue
        lsn, ts = record.lsn, record.ts_ns
        rows.extend((op.key, ts, lsn, op.kind, op.expires_at_ns is not None) for op in record.ops)
    return rows


def index_segment(name: str, source: RangeSource) -> tuple[SegmentEntry, list[BlockRow], list[KeyRow]]:
    """Check every block and record of a segment and return its catalog rows."""
    reader = SegmentReader(source)
    rows: list[KeyRow] = []
    for i in range(len(reader.meta.index)):
        raw = reader.read_block(i)
        rows.extend(key_rows_of(raw, reader.block_spans(i, raw)))
    return segment_entry(name, reader.meta), block_rows(reader.meta), rows


def snapshot_entry(name: str, source: RangeSource) -> SnapshotEntry:
    """A snapshot's catalog row from its header and footer (the body is not read)."""
    reader = SnapshotReader(source)
    h, f = reader.header, reader.footer
    return SnapshotEntry(name, h.lsn, h.ts_ns, source.size, h.entry_count, h.logical_bytes, h.created_ns,
                         h.chain_digest, f.state_digest, dict(h.metadata))
