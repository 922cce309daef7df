"""segments: pitr's on-disk log formats (records, WAL files, archive segments, snapshots, chains).

Synchronous and policy-free; the `pitr` engine builds on it. Byte layouts are
specified in docs/format.md.
"""

from segments._errors import (
    ChainError,
    CorruptFile,
    MidLogCorruption,
    SegmentsError,
    UnsupportedVersion,
    WriterPoisoned,
)
from segments.chain import Piece, genesis
from segments.chain_check import ChainProblem, check_chain
from segments.merge import merge_segments
from segments.naming import parse_segment_name, parse_snapshot_name, segment_name, snapshot_name
from segments.record import (
    DELETE,
    PUT,
    Op,
    Record,
    Span,
    decode_payload,
    decode_record,
    decode_records,
    encode_record,
    scan_spans,
)
from segments.segment_reader import SegmentMeta, SegmentReader, read_meta
from segments.segment_writer import SealedSegment, SegmentBuilder, seal_segment
from segments.snapshot import SnapshotHeader, SnapshotReader, SnapshotWriter, StateDigest
from segments.source import BytesSource, FileSource, RangeSource
from segments.wal import TornTail, WalHeader, WalScan, WalWriter, scan_wal, wal_name

__all__ = [
    "DELETE",
    "PUT",
    "BytesSource",
    "ChainError",
    "ChainProblem",
    "CorruptFile",
    "FileSource",
    "MidLogCorruption",
    "Op",
    "Piece",
    "RangeSource",
    "Record",
    "SealedSegment",
    "SegmentBuilder",
    "SegmentMeta",
    "SegmentReader",
    "SegmentsError",
    "SnapshotHeader",
    "SnapshotReader",
    "SnapshotWriter",
    "Span",
    "StateDigest",
    "TornTail",
    "UnsupportedVersion",
    "WalHeader",
    "WalScan",
    "WalWriter",
    "WriterPoisoned",
    "check_chain",
    "decode_payload",
    "decode_record",
    "decode_records",
    "encode_record",
    "genesis",
    "merge_segments",
    "parse_segment_name",
    "parse_snapshot_name",
    "read_meta",
    "scan_spans",
    "scan_wal",
    "seal_segment",
    "segment_name",
    "snapshot_name",
    "wal_name",
]
