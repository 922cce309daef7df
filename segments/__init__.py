"""segments: pitr's on-disk log formats (records, WAL files, archive segments, snapshots, chains).

Synchronous and policy-free; the `pitr` engine builds on it. Byte layouts are
specified in docs/format.md.

The errors are imported with the package; every other name is imported on
first use (PEP 562), so a program that needs one module (the WAL reader, the
record codec) does not pay for zstandard, blake3 and the rest at start-up.
"""

import importlib as _importlib
from typing import TYPE_CHECKING

from segments._errors import (
    ChainError,
    CorruptFile,
    MidLogCorruption,
    SegmentsError,
    UnsupportedVersion,
    WriterPoisoned,
)

if TYPE_CHECKING:
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

del TYPE_CHECKING  # the package's namespace holds its exports, its submodules and nothing else public

# name -> the module (under segments) that defines it
_LAZY = {
    "Piece": "chain",
    "genesis": "chain",
    "ChainProblem": "chain_check",
    "check_chain": "chain_check",
    "merge_segments": "merge",
    "parse_segment_name": "naming",
    "parse_snapshot_name": "naming",
    "segment_name": "naming",
    "snapshot_name": "naming",
    "DELETE": "record",
    "PUT": "record",
    "Op": "record",
    "Record": "record",
    "Span": "record",
    "decode_payload": "record",
    "decode_record": "record",
    "decode_records": "record",
    "encode_record": "record",
    "scan_spans": "record",
    "SegmentMeta": "segment_reader",
    "SegmentReader": "segment_reader",
    "read_meta": "segment_reader",
    "SealedSegment": "segment_writer",
    "SegmentBuilder": "segment_writer",
    "seal_segment": "segment_writer",
    "SnapshotHeader": "snapshot",
    "SnapshotReader": "snapshot",
    "SnapshotWriter": "snapshot",
    "StateDigest": "snapshot",
    "BytesSource": "source",
    "FileSource": "source",
    "RangeSource": "source",
    "TornTail": "wal",
    "WalHeader": "wal",
    "WalScan": "wal",
    "WalWriter": "wal",
    "scan_wal": "wal",
    "wal_name": "wal",
}

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


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'segments' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f"segments.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
