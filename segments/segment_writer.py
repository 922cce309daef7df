"""Sealing archive segments: records -> independent zstd blocks + index + chain digest."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

import zstandard
from blake3 import blake3

from segments import chain
from segments import segment_format as fmt
from segments.block_seal import KIND_SEGMENT, BlockPlace, BlockSealer, SegmentKeys
from segments.crc import crc32c
from segments.record import Span

BLOCK_SIZE = 64 << 10
LEVEL = 3


@dataclass(frozen=True, slots=True)
class SealedSegment:
    """What a finished segment holds; enough to name, index and link it."""

    store_id: uuid.UUID
    first_lsn: int
    last_lsn: int
    first_ts_ns: int
    last_ts_ns: int
    record_count: int
    complete_through_ns: int
    raw_bytes: int
    size: int
    prev_chain_digest: bytes
    chain_digest: bytes
    blocks: tuple[fmt.BlockEntry, ...]


class SegmentBuilder:
    """Streams one segment into `out`: add pieces of contiguous records, then finish.

    With `keys`, every block is sealed (docs/format.md, "Encryption") and the
    piece digests are keyed; the segment's `last_lsn` must then be given, since
    every block's associated data binds the file's whole LSN range.
    """

    def __init__(
        self,
        out: BinaryIO,
        store_id: uuid.UUID,
        prev_chain_digest: bytes,
        *,
        block_size: int = BLOCK_SIZE,
        level: int = LEVEL,
        keys: SegmentKeys | None = None,
        last_lsn: int | None = None,
    ) -> None:
        if keys is not None and last_lsn is None:
            raise ValueError("a sealed segment needs its last LSN before its first block")
        self._keys = keys
        self._last_lsn = last_lsn
        self._sealer: BlockSealer | None = None
        self._out = out
        self._store_id = store_id
        self._prev = prev_chain_digest
        if not 0 < block_size <= fmt.MAX_BLOCK_SIZE:
            raise ValueError(f"block size {block_size} is not in 1..{fmt.MAX_BLOCK_SIZE}")
        self._block_size = block_size
        self._cctx = zstandard.ZstdCompressor(level=level, write_content_size=True)
        self._hasher = blake3(max_threads=1)
        self._index: list[fmt.BlockEntry] = []
        self._pieces: list[chain.Piece] = []
        self._offset = 0
        self._first: Span | None = None
        self._last: Span | None = None
        self._records = 0
        self._raw = 0
        self._pending: list[bytes | memoryview] = []
        self._pending_first: Span | None = None
        self._pending_count = 0
        self._pending_size = 0

    @property
    def pieces(self) -> list[chain.Piece]:
        """The chain pieces added so far."""
        return self._pieces

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._hasher.update(data)
        self._offset += len(data)

    def add_piece(self, buf: bytes | memoryview, spans: Sequence[Span]) -> None:
        """Append checked records buf[spans[0].start:spans[-1].end] as one chain piece.

        The spans must be contiguous in `buf`, with dense LSNs following the
        previous piece and strictly increasing timestamps.
        """
        if not spans:
            raise ValueError("a piece needs at least one record")
        first, last = spans[0], spans[-1]
        if self._last is not None:
            if first.lsn != self._last.lsn + 1:
                raise ValueError(f"LSN {first.lsn} does not follow {self._last.lsn}")
            if first.ts_ns <= self._last.ts_ns:
                raise ValueError(f"commit time at LSN {first.lsn} does not increase")
        if last.lsn - first.lsn + 1 != len(spans):
            raise ValueError(f"LSNs {first.lsn}..{last.lsn} are not dense")
        if self._first is None:
            self._first = first
            salt = None
            if self._keys is not None:
                assert self._last_lsn is not None
                salt = os.urandom(fmt.SALT_BYTES)
                self._sealer = self._keys.sealer(salt, BlockPlace(KIND_SEGMENT, first.lsn, self._last_lsn))
            keyed = self._keys is not None and self._keys.link_key is not None
            self._write(fmt.encode_header(
                fmt.SegmentHeader(self._store_id, first.lsn, first.ts_ns, self._prev, salt, keyed_chain=keyed)))
        view = memoryview(buf)
        if self._keys is None:
            digest = chain.records_digest(view[first.start:last.end])
        else:
            hasher = self._keys.records_hasher()
            hasher.update(view[first.start:last.end])
            digest = hasher.digest()
        self._pieces.append(chain.Piece(first.lsn, last.lsn, digest))
        limit = self._block_size
        run_start = first.start
        for span in spans:
            if self._pending_first is None:
                self._pending_first = span
            self._pending_count += 1
            self._pending_size += span.end - span.start
            if self._pending_size >= limit:
                self._pending.append(view[run_start : span.end])
                self._emit_block()
                run_start = span.end
        if run_start < last.end:
            self._pending.append(bytes(view[run_start : last.end]))
        self._last = last
        self._records += len(spans)

    def _emit_block(self) -> None:
        first = self._pending_first
        assert first is not None
        raw = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        compressed = self._cctx.compress(raw)
        if self._sealer is not None:
            compressed = self._sealer.seal(len(self._index), first.lsn, compressed)
        self._index.append(fmt.BlockEntry(
            first.lsn, first.ts_ns, self._offset, len(compressed), len(raw), self._pending_count,
            crc32c(compressed),
        ))
        self._raw += len(raw)
        self._write(compressed)
        self._pending = []
        self._pending_first = None
        self._pending_count = 0
        self._pending_size = 0

    def finish(self, complete_through_ns: int) -> SealedSegment:
        """Write the tables and trailer; `complete_through_ns` >= the last commit time."""
        if self._first is None or self._last is None:
            raise ValueError("a segment needs at least one record")
        if self._last_lsn is not None and self._last.lsn != self._last_lsn:
            raise ValueError(f"the segment was declared to end at LSN {self._last_lsn}, not {self._last.lsn}")
        if self._pending_first is not None:
            self._emit_block()
        complete = max(complete_through_ns, self._last.ts_ns)
        chain_digest = chain.fold(self._prev, self._pieces, None if self._keys is None else self._keys.link_key)
        fields = (self._offset, len(self._index), len(self._pieces), self._last.lsn, self._last.ts_ns,
                  self._records, complete, self._raw)
        self._write(fmt.encode_tail(self._index, self._pieces, fields, chain_digest))
        digest = self._hasher.digest()
        self._out.write(digest + fmt.END_MAGIC)
        self._offset += len(digest) + len(fmt.END_MAGIC)
        return SealedSegment(
            self._store_id, self._first.lsn, self._last.lsn, self._first.ts_ns, self._last.ts_ns,
            self._records, complete, self._raw, self._offset, self._prev, chain_digest,
            tuple(self._index),
        )


def seal_segment(
    out: BinaryIO,
    store_id: uuid.UUID,
    prev_chain_digest: bytes,
    buf: bytes | memoryview,
    spans: Sequence[Span],
    complete_through_ns: int,
    *,
    block_size: int = BLOCK_SIZE,
    level: int = LEVEL,
    keys: SegmentKeys | None = None,
) -> SealedSegment:
    """Write one segment of the checked records `spans` in `buf` to `out` (its blocks sealed with `keys`)."""
    builder = SegmentBuilder(out, store_id, prev_chain_digest, block_size=block_size, level=level, keys=keys,
                             last_lsn=spans[-1].lsn if spans else None)
    builder.add_piece(buf, spans)
    return builder.finish(complete_through_ns)
