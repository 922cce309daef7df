"""Small shared pieces for the store, archiver and restore tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

from pitr.catalog.entries import SegmentEntry
from pitr.repo import layout
from pitr.repo.repository import Repository
from segments import SegmentReader, decode_payload
from segments.record import Record
from segments.source import FileSource
from segments.wal import scan_wal

START_NS = 1_800_000_000_000_000_000
SECOND = 1_000_000_000


class FakeClock:
    """A clock the test sets: `clock.now` ns since the epoch; `advance(ns)` moves it."""

    def __init__(self, now: int = START_NS) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ns: int) -> int:
        self.now += ns
        return self.now


def wal_records(data_dir: str) -> Iterator[Record]:
    """Every record in a store's WAL files, in file order (read-only; no repair)."""
    wal_dir = os.path.join(data_dir, "wal")
    for name in sorted(n for n in os.listdir(wal_dir) if n.endswith(".wal")):
        path = os.path.join(wal_dir, name)
        scan = scan_wal(path)
        with open(path, "rb") as fh:
            data = fh.read(scan.end)
        for span in scan.spans:
            record = decode_payload(data, span)
            assert record is not None
            yield record


def segment_records(repo: Repository, segment: SegmentEntry) -> list[Record]:
    """Every record of an archived segment, every block checked."""
    path = repo.local_path(layout.segment_object(segment.name))
    assert path is not None
    source = FileSource(path)
    try:
        reader = SegmentReader(source)
        out = []
        for i in range(len(reader.meta.index)):
            raw = reader.read_block(i)
            for span in reader.block_spans(i, raw):
                record = decode_payload(raw, span)
                assert record is not None
                out.append(record)
        return out
    finally:
        source.close()


def archived_records(repo: Repository) -> list[Record]:
    """Every record in the repository's catalogued segments, in LSN order."""
    return [r for seg in repo.catalog.segments() for r in segment_records(repo, seg)]


def assert_contiguous_chain(repo: Repository, start_digest: bytes, first_lsn: int = 1) -> None:
    """Catalogued segments cover first_lsn.. without gap or overlap, and each links to the one before."""
    segments = repo.catalog.segments()
    assert segments, "the repository holds no segment"
    expected_lsn, expected_digest = first_lsn, start_digest
    for seg in segments:
        assert seg.first_lsn == expected_lsn, f"{seg.name}: expected to start at LSN {expected_lsn}"
        assert seg.prev_chain_digest == expected_digest, f"{seg.name}: does not link to the previous segment"
        assert seg.record_count == seg.last_lsn - seg.first_lsn + 1
        expected_lsn, expected_digest = seg.last_lsn + 1, seg.chain_digest
