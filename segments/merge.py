"""Merging adjacent segments into one larger segment that keeps the chain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO

from segments import record as rec
from segments._errors import ChainError, CorruptFile
from segments.block_seal import SegmentKeys
from segments.segment_reader import SegmentReader
from segments.segment_writer import BLOCK_SIZE, LEVEL, SealedSegment, SegmentBuilder


def merge_segments(
    readers: Sequence[SegmentReader], out: BinaryIO, *, block_size: int = BLOCK_SIZE, level: int = LEVEL,
    keys: SegmentKeys | None = None,
) -> SealedSegment:
    """Write the records of consecutive, linked `readers` as one segment to `out`.

    Every input block is checked as it is read; with `keys` (the readers' own) the output is sealed
    too. The output keeps each input's
    pieces, so its chain digest equals the last input's and the segment after it
    still links.
    """
    if not readers:
        raise ValueError("nothing to merge")
    for prev, cur in zip(readers, readers[1:], strict=False):
        if cur.meta.first_lsn != prev.meta.last_lsn + 1 or \
                cur.meta.header.prev_chain_digest != prev.meta.chain_digest or \
                cur.meta.header.store_id != prev.meta.header.store_id:
            raise ChainError(f"{cur.meta.name} does not follow {prev.meta.name}; refusing to merge",
                             path=cur.meta.name, previous=prev.meta.name)
    first = readers[0].meta
    if any(reader.opener.sealed != (keys is not None) for reader in readers):
        raise ValueError("sealed and plaintext segments are never merged together")
    builder = SegmentBuilder(out, first.header.store_id, first.header.prev_chain_digest,
                             block_size=block_size, level=level, keys=keys, last_lsn=readers[-1].meta.last_lsn)
    for reader in readers:
        raw = b"".join(reader.read_block(i) for i in range(len(reader.meta.index)))
        spans = list(rec.scan_spans(raw))
        base = reader.meta.first_lsn
        for piece in reader.meta.pieces:
            piece_spans = spans[piece.first_lsn - base : piece.last_lsn - base + 1]
            before = len(builder.pieces)
            builder.add_piece(raw, piece_spans)
            if builder.pieces[before].records_digest != piece.records_digest:
                raise CorruptFile(f"records of LSNs {piece.first_lsn}..{piece.last_lsn} do not match "
                                  "their digest", path=reader.meta.name, lsn=piece.first_lsn)
    return builder.finish(readers[-1].meta.trailer.complete_through_ns)
