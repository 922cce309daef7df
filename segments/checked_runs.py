"""Reading a segment's blocks once, checking its digests on the way: the reading half of a fused
verification.

`checked_runs` reads the blocks of a segment in runs (one request and one zstd call each, as
`SegmentReader.read_blocks` does) and, when asked to verify, also reads every other byte of the
file exactly once: the BLAKE3 file digest and each piece's records digest are computed over the
bytes as they pass, and a mismatch is raised before the run that completes it is handed out.
Whoever consumes the runs checks the records themselves (`segments.block_replay.replay_block`);
together the two check everything `SegmentReader.verify` does, reading and decompressing each
block once instead of twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from blake3 import blake3

from segments import record as rec
from segments import segment_format as fmt
from segments._errors import CorruptFile
from segments.segment_reader import SegmentReader

BLOCKS_PER_READ = 256  # blocks decompressed per call (16 MiB of records)


@dataclass(frozen=True, slots=True)
class BlockRun:
    """Consecutive decompressed blocks of one segment, from block `first`."""

    segment: SegmentReader
    first: int
    blocks: list[bytes]
    opening: bool  # the first run read from this segment
    last: bool  # the segment's last run: with verification, every digest of the file has matched


def checked_runs(seg: SegmentReader, first: int, stop: int, *, verify: bool,
                 per_read: int = BLOCKS_PER_READ) -> Iterator[BlockRun]:
    """Runs of blocks first..stop-1 of `seg`; with `verify`, all of its blocks (first and stop
    are then ignored), every byte of the file hashed and every digest checked."""
    meta = seg.meta
    if verify:
        first, stop = 0, len(meta.index)
    if first >= stop:
        return
    path = meta.name
    file_hasher = blake3(max_threads=1) if verify else None
    pieces = _PieceCheck(seg) if verify else None
    if file_hasher is not None:
        file_hasher.update(seg.source.read(0, meta.index[0].offset))
    for i in range(first, stop, per_read):
        j = min(i + per_read, stop)
        blocks = seg.read_blocks(i, j, hasher=file_hasher)
        if pieces is not None:
            for k, raw in enumerate(blocks):
                pieces.add(i + k, raw)
        last = j == stop
        if last and file_hasher is not None and pieces is not None:
            pieces.finish()
            digest_end = meta.size - fmt.FILE_DIGEST_OFFSET_FROM_END
            file_hasher.update(seg.source.read(meta.trailer.index_offset, digest_end - meta.trailer.index_offset))
            if file_hasher.digest() != meta.trailer.file_digest:
                raise CorruptFile("file digest (BLAKE3) mismatch", path=path, offset=digest_end)
        yield BlockRun(seg, i, blocks, i == first, last)


class _PieceCheck:
    """The records digest of every piece, over the decompressed blocks in order."""

    def __init__(self, seg: SegmentReader) -> None:
        self._meta = seg.meta
        self._pieces = iter(seg.meta.pieces)
        self._piece = next(self._pieces, None)
        self._new = seg.opener.records_hasher  # keyed for a sealed segment
        self._hasher = self._new()

    def add(self, i: int, raw: bytes) -> None:
        entry = self._meta.index[i]
        block_last = entry.first_lsn + entry.record_count - 1
        done = 0
        with memoryview(raw) as view:
            while self._piece is not None and self._piece.last_lsn <= block_last:
                stop = len(raw) if self._piece.last_lsn == block_last else \
                    _record_end(raw, self._piece.last_lsn - entry.first_lsn, i, entry, self._meta.name)
                self._hasher.update(view[done:stop])
                done = stop
                if self._hasher.digest() != self._piece.records_digest:
                    raise CorruptFile(f"records digest of LSNs {self._piece.first_lsn}..{self._piece.last_lsn} "
                                      "does not match", path=self._meta.name, lsn=self._piece.first_lsn)
                self._hasher = self._new()
                self._piece = next(self._pieces, None)
            self._hasher.update(view[done:])

    def finish(self) -> None:
        if self._piece is not None:  # read_meta checked that the pieces tile the segment
            raise CorruptFile(f"piece ending at LSN {self._piece.last_lsn} was not reached",
                              path=self._meta.name, lsn=self._piece.first_lsn)


def _record_end(raw: bytes, k: int, i: int, entry: fmt.BlockEntry, path: str) -> int:
    """The end offset of record `k` of a block, walking the records' lengths (not yet checked:
    a walk that leaves the block is damage)."""
    pos = 0
    for _ in range(k + 1):
        if len(raw) - pos < rec.PREFIX.size:
            raise CorruptFile(f"block {i} records do not match the block index", path=path, offset=entry.offset,
                              lsn=entry.first_lsn)
        pos += 8 + rec.PREFIX.unpack_from(raw, pos)[1]
    if pos > len(raw):
        raise CorruptFile(f"block {i} records do not match the block index", path=path, offset=entry.offset,
                          lsn=entry.first_lsn)
    return pos
