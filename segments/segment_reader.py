"""Reading and verifying archive segments through their block index."""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import zstandard
from blake3 import blake3

from segments import chain
from segments import record as rec
from segments import segment_format as fmt
from segments._errors import CorruptFile
from segments.block_scan import ScanResult, scan_block, scan_block_reference
from segments.block_seal import KIND_SEGMENT, BlockPlace, BlockSealer, SealedFile, SegmentKeys
from segments.chain_check import check_links
from segments.crc import crc32c
from segments.source import FileSource, RangeSource


class Hasher(Protocol):
    """What `read_blocks` feeds the bytes it reads to (a `blake3` object)."""

    def update(self, data: bytes, /) -> object: ...


@dataclass(frozen=True, slots=True)
class SegmentMeta:
    """Header, trailer and tables of a segment: everything but the blocks."""

    name: str
    size: int
    header: fmt.SegmentHeader
    trailer: fmt.SegmentTrailer
    index: list[fmt.BlockEntry]
    pieces: list[chain.Piece]

    @property
    def first_lsn(self) -> int:
        return self.header.first_lsn

    @property
    def last_lsn(self) -> int:
        return self.trailer.last_lsn

    @property
    def chain_digest(self) -> bytes:
        return self.trailer.chain_digest


def read_meta(source: RangeSource) -> SegmentMeta:
    """Read and check everything but the blocks (the quick verification of one file)."""
    path = source.name
    size = source.size
    if size < fmt.HEADER_SIZE + fmt.TRAILER_SIZE:
        raise CorruptFile(f"{size} bytes is too short to be a segment", path=path, offset=0)
    header = fmt.decode_header(source.read(0, fmt.HEADER_SIZE), path)
    tail = source.read(size - fmt.TRAILER_SIZE, fmt.TRAILER_SIZE)
    trailer = fmt.decode_trailer(tail, size, path)
    tables = source.read(trailer.index_offset, size - fmt.TRAILER_SIZE - trailer.index_offset)
    index, pieces = fmt.decode_tables(tables, tail, trailer, path)
    meta = SegmentMeta(path, size, header, trailer, index, pieces)
    _check_meta(meta)
    return meta


def _check_meta(meta: SegmentMeta) -> None:
    path, h, t = meta.name, meta.header, meta.trailer

    def bad(why: str) -> CorruptFile:
        return CorruptFile(why, path=path, offset=t.index_offset)

    if t.last_lsn < h.first_lsn or t.record_count != t.last_lsn - h.first_lsn + 1:
        raise bad(f"LSN range {h.first_lsn}..{t.last_lsn} does not match {t.record_count} records")
    if t.last_ts_ns < h.first_ts_ns or t.complete_through_ns < t.last_ts_ns:
        raise bad("timestamps out of order in header and trailer")
    expected_offset = fmt.HEADER_SIZE
    next_lsn, prev_ts, records, raw = h.first_lsn, h.first_ts_ns - 1, 0, 0
    for entry in meta.index:
        if entry.offset != expected_offset or entry.first_lsn != next_lsn or entry.first_ts_ns <= prev_ts:
            raise bad(f"block index entry at LSN {entry.first_lsn} out of place")
        if entry.raw_size > fmt.MAX_BLOCK_RAW or entry.raw_size > entry.compressed_size * fmt.MAX_ZSTD_RATIO \
                or entry.record_count == 0 or entry.raw_size < entry.record_count * rec.HEADER_SIZE:
            raise bad(f"block at LSN {entry.first_lsn} has a bad size or record count")
        expected_offset += entry.compressed_size
        next_lsn += entry.record_count
        prev_ts = entry.first_ts_ns
        records += entry.record_count
        raw += entry.raw_size
    if expected_offset != t.index_offset or records != t.record_count or raw != t.raw_bytes:
        raise bad("block index does not cover the segment exactly")
    if meta.index[0].first_ts_ns != h.first_ts_ns:
        raise bad("first block does not start at the header's first commit")
    expect = h.first_lsn
    for piece in meta.pieces:
        if piece.first_lsn != expect or piece.last_lsn < piece.first_lsn:
            raise bad(f"piece table breaks at LSN {expect}")
        expect = piece.last_lsn + 1
    if expect != t.last_lsn + 1:
        raise bad("piece table does not end at the last LSN")
    # a keyed chain's fold needs the key: checked when the segment is opened with it (BlockOpener)
    if not h.keyed_chain and chain.fold(h.prev_chain_digest, meta.pieces) != t.chain_digest:
        raise CorruptFile("chain digest does not match the piece table", path=path,
                          offset=meta.size - fmt.TRAILER_SIZE)


class BlockOpener:
    """Turns a segment's stored blocks into zstd frames: checks each block's CRC and, for a sealed
    segment, opens it with the repository's keys.

    Given keys, a segment that is not sealed is refused (`CorruptFile`): in an
    encrypted repository it was written by someone without the key. Without
    keys, a sealed segment's metadata reads as usual and its blocks raise
    `SealedFile`.
    """

    def __init__(self, meta: SegmentMeta, keys: SegmentKeys | None) -> None:
        self.path = meta.name
        self.meta = meta
        salt = meta.header.salt
        self.sealed = salt is not None
        self.digest_key_hasher = keys.records_hasher if keys is not None else None
        self._sealer: BlockSealer | None = None
        if salt is None and keys is not None:
            raise CorruptFile("the segment is not sealed, but the repository is encrypted: it was not written "
                              "with the repository's key", path=self.path, offset=0,
                              hint="move the file out of the repository and restore it from another copy")
        if salt is not None and keys is not None:
            check_links(meta, keys.link_key)
            self._sealer = keys.sealer(salt, BlockPlace(KIND_SEGMENT, meta.first_lsn, meta.last_lsn))

    def records_hasher(self) -> blake3:
        """A fresh hasher of a piece's records: keyed BLAKE3 for a sealed segment, BLAKE3 otherwise."""
        if self.sealed:
            if self.digest_key_hasher is None:
                raise SealedFile(self.path)
            return self.digest_key_hasher()
        return blake3(max_threads=1)

    def frame(self, i: int, data: bytes | memoryview) -> bytes | memoryview:
        """Block `i`'s zstd frame from its stored bytes: CRC checked, and opened when sealed."""
        entry = self.meta.index[i]
        if crc32c(data) != entry.crc:
            raise CorruptFile("block CRC-32C mismatch", path=self.path, offset=entry.offset, lsn=entry.first_lsn)
        if not self.sealed:
            return data
        if self._sealer is None:
            raise SealedFile(self.path)
        return self._sealer.open(i, entry.first_lsn, data, path=self.path, offset=entry.offset)


class SegmentReader:
    """Random access to a segment's records, decompressing only the blocks needed (opening them with
    `keys` when the segment is sealed)."""

    def __init__(self, source: RangeSource, meta: SegmentMeta | None = None, *,
                 keys: SegmentKeys | None = None) -> None:
        self.source = source
        self.meta = meta if meta is not None else read_meta(source)
        self.opener = BlockOpener(self.meta, keys)
        self._dctx = zstandard.ZstdDecompressor()
        self._block_lsns = [e.first_lsn for e in self.meta.index]
        self._block_ts = [e.first_ts_ns for e in self.meta.index]

    @classmethod
    def open(cls, path: str) -> SegmentReader:
        return cls(FileSource(path))

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> SegmentReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def block_for_lsn(self, lsn: int) -> int:
        """Index of the block holding `lsn` (which must be in this segment)."""
        if not self.meta.first_lsn <= lsn <= self.meta.last_lsn:
            raise ValueError(f"LSN {lsn} is not in {self.meta.name}")
        return bisect.bisect_right(self._block_lsns, lsn) - 1

    def block_for_ts(self, ts_ns: int) -> int:
        """Index of the block holding the last commit with time <= ts_ns (-1 if none)."""
        return bisect.bisect_right(self._block_ts, ts_ns) - 1

    def read_block(self, i: int) -> bytes:
        """Decompress block `i` after checking its CRC and size (records are not yet checked)."""
        entry = self.meta.index[i]
        data = self.source.read(entry.offset, entry.compressed_size)
        return decompress_block(self._dctx, self.opener.frame(i, data), entry, self.meta.name, crc_checked=True)

    def read_blocks(self, first: int, stop: int, *, hasher: Hasher | None = None) -> list[bytes]:
        """Blocks first..stop-1, each checked like `read_block`, read in one request and
        decompressed in one call; `hasher`, if given, is updated with the bytes read (for a
        file digest over the file read once).

        The call releases the GIL once for the whole run, so a reader thread using this
        interrupts a Python loop on another thread once per run rather than once per block.
        """
        entries = self.meta.index[first:stop]
        if not entries:
            return []
        base = entries[0].offset  # blocks are contiguous (checked by read_meta)
        data = self.source.read(base, entries[-1].offset + entries[-1].compressed_size - base)
        if hasher is not None:
            hasher.update(data)
        view = memoryview(data)
        frames: list[bytes | bytearray | memoryview] = []
        for k, entry in enumerate(entries):
            frame = self.opener.frame(first + k, view[entry.offset - base : entry.offset - base + entry.compressed_size])
            check_block_frame(frame, entry, self.meta.name, crc_checked=True)
            frames.append(frame)
        sizes = struct.pack(f"={len(entries)}Q", *(e.raw_size for e in entries))
        try:
            out = self._dctx.multi_decompress_to_buffer(frames, decompressed_sizes=sizes, threads=1)
        except zstandard.ZstdError:
            return [self.read_block(i) for i in range(first, stop)]  # names the broken block
        blocks = [out[i].tobytes() for i in range(len(entries))]
        for raw, entry in zip(blocks, entries, strict=True):
            if len(raw) != entry.raw_size:
                raise CorruptFile("block decompressed to the wrong size", path=self.meta.name,
                                  offset=entry.offset, lsn=entry.first_lsn)
        return blocks

    def block_spans(self, i: int, raw: bytes) -> list[rec.Span]:
        """Check every record of block `i` (CRC, dense LSNs, count) and return the spans."""
        entry = self.meta.index[i]
        path = self.meta.name
        try:
            spans = list(rec.scan_spans(raw))
        except CorruptFile as exc:
            raise CorruptFile(f"block {i}: {exc.reason}", path=path, offset=entry.offset,
                              lsn=exc.lsn if exc.lsn is not None else entry.first_lsn) from exc
        first = entry.first_lsn
        if len(spans) != entry.record_count or spans[0].ts_ns != entry.first_ts_ns or \
                any(span.lsn != first + k for k, span in enumerate(spans)) or \
                any(b.ts_ns <= a.ts_ns for a, b in zip(spans, spans[1:], strict=False)):
            raise CorruptFile(f"block {i} records do not match the block index", path=path,
                              offset=entry.offset, lsn=entry.first_lsn)
        return spans

    def iter_records(
        self, from_lsn: int | None = None, to_lsn: int | None = None, *, skip_unknown: bool = False
    ) -> Iterator[rec.Record]:
        """Decoded records with from_lsn <= lsn <= to_lsn, checked as they are read."""
        lo = self.meta.first_lsn if from_lsn is None else max(from_lsn, self.meta.first_lsn)
        hi = self.meta.last_lsn if to_lsn is None else min(to_lsn, self.meta.last_lsn)
        if lo > hi:
            return
        for i in range(self.block_for_lsn(lo), self.block_for_lsn(hi) + 1):
            raw = self.read_block(i)
            for span in self.block_spans(i, raw):
                if lo <= span.lsn <= hi:
                    try:
                        record = rec.decode_payload(raw, span, skip_unknown=skip_unknown)
                    except CorruptFile as exc:
                        # the offset inside the decompressed block means nothing in the file: name the block
                        entry = self.meta.index[i]
                        raise CorruptFile(f"block {i}: {exc.reason}", path=self.meta.name, offset=entry.offset,
                                          lsn=span.lsn, hint=exc.hint) from exc
                    if record is not None:
                        yield record

    def verify(self) -> None:
        """Full check: every block CRC, every record CRC, LSNs, times, piece digests, file digest."""
        meta = self.meta
        path = meta.name
        digests = PieceDigests(meta, self.opener)
        prev_ts = meta.header.first_ts_ns - 1
        for i, entry in enumerate(meta.index):
            raw = self.read_block(i)
            run = _checked_run(raw, entry, i, prev_ts, path)
            prev_ts = run.last_ts_ns
            digests.feed(raw, run.ends, entry)
        if prev_ts != meta.trailer.last_ts_ns:
            raise CorruptFile("last commit time does not match the trailer", path=path,
                              lsn=meta.trailer.last_lsn)
        digest_end = meta.size - fmt.FILE_DIGEST_OFFSET_FROM_END
        file_hasher = blake3(max_threads=1)
        pos, step = 0, 8 << 20
        while pos < digest_end:
            n = min(step, digest_end - pos)
            file_hasher.update(self.source.read(pos, n))
            pos += n
        if file_hasher.digest() != meta.trailer.file_digest:
            raise CorruptFile("file digest (BLAKE3) mismatch", path=path, offset=digest_end)


_KNOWN_TYPES = bytes(sorted(rec.KNOWN_TYPES))


class PieceDigests:
    """The records digest of each piece of a segment, fed block by block in order (full verification)."""

    def __init__(self, meta: SegmentMeta, opener: BlockOpener) -> None:
        self._path = meta.name
        self._pieces = iter(meta.pieces)
        self._piece: chain.Piece | None = next(self._pieces)
        self._new = opener.records_hasher
        self._hasher = self._new()

    def feed(self, raw: bytes, ends: list[int], entry: fmt.BlockEntry) -> None:
        """Add a checked block's records (`ends`: where each record ends); CorruptFile naming the
        piece's LSNs when a piece completed in it does not match its digest."""
        done = 0
        with memoryview(raw) as view:
            piece = self._piece
            while piece is not None and piece.last_lsn < entry.first_lsn + entry.record_count:
                end = ends[piece.last_lsn - entry.first_lsn]
                self._hasher.update(view[done:end])
                done = end
                if self._hasher.digest() != piece.records_digest:
                    raise CorruptFile(f"records digest of LSNs {piece.first_lsn}..{piece.last_lsn} does not match",
                                      path=self._path, lsn=piece.first_lsn)
                self._hasher = self._new()
                piece = next(self._pieces, None)
            self._piece = piece
            self._hasher.update(view[done:])


def _check_types(raw: bytes, ends: list[int], entry: fmt.BlockEntry, i: int, path: str) -> None:
    """Every record of the block is of a type this reader can replay (a restore refuses the others)."""
    for k, start in enumerate([0, *ends[:-1]]):
        rtype = raw[start + 8]  # the type is byte 8 of every record header
        if rtype not in _KNOWN_TYPES:
            raise CorruptFile(f"block {i}: unknown record type {rtype}", path=path, offset=entry.offset,
                              lsn=entry.first_lsn + k,
                              hint="a newer pitr wrote this record; upgrade pitr to verify and restore it")


def decompress_block(
    dctx: zstandard.ZstdDecompressor, data: bytes | memoryview, entry: fmt.BlockEntry, path: str, *,
    crc_checked: bool = False,
) -> bytes:
    """Check a block's CRC (unless `crc_checked`: a sealed block's CRC covers its stored bytes, checked
    before opening) and declared size, then decompress it with a bounded output."""
    check_block_frame(data, entry, path, crc_checked=crc_checked)
    try:
        raw: bytes = dctx.decompress(data, max_output_size=entry.raw_size)
    except zstandard.ZstdError as exc:
        raise CorruptFile(f"block does not decompress: {exc}", path=path, offset=entry.offset,
                          lsn=entry.first_lsn) from exc
    if len(raw) != entry.raw_size:
        raise CorruptFile("block decompressed to the wrong size", path=path, offset=entry.offset,
                          lsn=entry.first_lsn)
    return raw


def check_block_frame(data: bytes | memoryview, entry: fmt.BlockEntry, path: str, *,
                      crc_checked: bool = False) -> None:
    """A block's CRC (unless `crc_checked`), and the size its zstd frame declares against the index's."""
    if not crc_checked and crc32c(data) != entry.crc:
        raise CorruptFile("block CRC-32C mismatch", path=path, offset=entry.offset, lsn=entry.first_lsn)
    if entry.raw_size > len(data) * fmt.MAX_ZSTD_RATIO:
        raise CorruptFile(f"block of {len(data)} bytes cannot decompress to the {entry.raw_size} it declares",
                          path=path, offset=entry.offset, lsn=entry.first_lsn)
    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError as exc:
        raise CorruptFile(f"block does not decompress: {exc}", path=path, offset=entry.offset,
                          lsn=entry.first_lsn) from exc
    if declared != entry.raw_size:
        raise CorruptFile(f"block declares {declared} bytes, index says {entry.raw_size}",
                          path=path, offset=entry.offset, lsn=entry.first_lsn)


@dataclass(frozen=True, slots=True)
class CheckedBlock:
    """A block that passed the full check: its index, decompressed bytes, the end of each record and
    the last commit time (and, when asked, its key-table entries and gap commits)."""

    index: int
    raw: bytes
    ends: list[int]
    last_ts_ns: int
    entries: bytes = b""  # its key-table entries (`segments.block_scan`), when verify_blocks was given a person
    gaps: list[int] = field(default_factory=list)  # LSNs of its commits flagged as following a source gap (idem)


VERIFY_RUN_BYTES = 16 << 20  # at most this many bytes read, and decompressed, per run of blocks


def verify_blocks(source: RangeSource, meta: SegmentMeta, *, run_bytes: int = VERIFY_RUN_BYTES,
                  keys: SegmentKeys | None = None, person: bytes | None = None) -> Iterator[CheckedBlock]:
    """The checks of `SegmentReader.verify`, reading every byte of the file once.

    Runs of blocks are read in one request each; the file digest is taken over
    those same bytes (no second read), each run's frames are CRC-checked and
    decompressed in one zstd call, and each block's records are checked (CRC,
    dense LSNs, increasing times, counts, known types; `segments.block_scan`,
    compiled) and hashed into their piece digests. Given `person` (the key
    digest's personalisation), each record's operations are checked too and
    the block's key-table entries computed in the same pass. Each block is yielded once it passed, so a caller derives
    what else it needs (key rows) from the same bytes. The file digest and the
    trailer's last time are checked after the last block: a caller trusts
    nothing it was given until the iterator is exhausted without an error.
    """
    path = meta.name
    file_hasher = blake3(max_threads=1)
    file_hasher.update(source.read(0, fmt.HEADER_SIZE))
    dctx = zstandard.ZstdDecompressor()
    opener = BlockOpener(meta, keys)
    digests = PieceDigests(meta, opener)
    prev_ts = meta.header.first_ts_ns - 1
    index = meta.index
    first = 0
    while first < len(index):
        stop, size, raw_size = first, 0, 0  # a run is bounded in both its stored and its raw bytes
        while stop < len(index) and (stop == first or (size + index[stop].compressed_size <= run_bytes
                                                       and raw_size + index[stop].raw_size <= run_bytes)):
            size += index[stop].compressed_size
            raw_size += index[stop].raw_size
            stop += 1
        region = source.read(index[first].offset, size)  # blocks are contiguous (checked by read_meta)
        file_hasher.update(region)
        blocks = _decompress_run(dctx, region, index[first:stop], first, opener)
        for i in range(first, stop):
            entry = index[i]
            if blocks is not None:
                raw = blocks[i - first]
            else:  # something in the run is damaged: check block by block, as the reference does
                start = entry.offset - index[first].offset
                frame = opener.frame(i, region[start : start + entry.compressed_size])
                raw = decompress_block(dctx, frame, entry, path, crc_checked=True)
            try:
                count, first_ts, last_ts, ends, entries, gaps = _scan(raw, entry.first_lsn, prev_ts, person)
            except CorruptFile as exc:
                _checked_run(raw, entry, i, prev_ts, path)  # raises, naming the damage as the reference does
                # only the operation checks, which the reference run does not make, reach here
                raise CorruptFile(f"block {i}: {exc.reason}", path=path, offset=entry.offset,
                                  lsn=exc.lsn if exc.lsn is not None else entry.first_lsn, hint=exc.hint) from exc
            if count != entry.record_count or first_ts != entry.first_ts_ns:
                _checked_run(raw, entry, i, prev_ts, path)  # raises: the records do not match the index
            prev_ts = last_ts
            digests.feed(raw, ends, entry)
            yield CheckedBlock(i, raw, ends, last_ts, entries, gaps)
        first = stop
    if prev_ts != meta.trailer.last_ts_ns:
        raise CorruptFile("last commit time does not match the trailer", path=path, lsn=meta.trailer.last_lsn)
    digest_end = meta.size - fmt.FILE_DIGEST_OFFSET_FROM_END
    file_hasher.update(source.read(meta.trailer.index_offset, digest_end - meta.trailer.index_offset))
    if file_hasher.digest() != meta.trailer.file_digest:
        raise CorruptFile("file digest (BLAKE3) mismatch", path=path, offset=digest_end)


def verify_segment(source: RangeSource, meta: SegmentMeta, *, keys: SegmentKeys | None = None) -> None:
    """`SegmentReader.verify`'s checks in one read of the file (`verify_blocks`, exhausted)."""
    for _block in verify_blocks(source, meta, keys=keys):
        pass


def _decompress_run(dctx: zstandard.ZstdDecompressor, region: bytes, entries: list[fmt.BlockEntry],
                    first: int, opener: BlockOpener) -> list[bytes] | None:
    """The blocks of one contiguous run, each CRC-checked, decompressed in one zstd call; None when
    any of them fails a check (the caller then names the first damage block by block)."""
    base = entries[0].offset
    frames: list[bytes | bytearray | memoryview] = []
    try:
        with memoryview(region) as view:
            for k, entry in enumerate(entries):
                frame = opener.frame(first + k, view[entry.offset - base : entry.offset - base + entry.compressed_size])
                frames.append(frame)
                check_block_frame(frame, entry, opener.path, crc_checked=True)
            sizes = struct.pack(f"={len(entries)}Q", *(e.raw_size for e in entries))
            out = dctx.multi_decompress_to_buffer(frames, decompressed_sizes=sizes, threads=1)
    except (CorruptFile, zstandard.ZstdError):
        return None
    finally:
        for part in frames:
            if isinstance(part, memoryview):
                part.release()
    blocks = [out[i].tobytes() for i in range(len(entries))]
    if any(len(raw) != entry.raw_size for raw, entry in zip(blocks, entries, strict=True)):
        return None
    return blocks


def _scan(raw: bytes, first_lsn: int, after_ts_ns: int, person: bytes | None) -> ScanResult:
    """`scan_block`, the compiled one; the reference for the one block a 64-bit argument cannot hold
    (a segment whose first commit is at the earliest representable time: the time before it is not)."""
    try:
        return scan_block(raw, first_lsn, after_ts_ns, person)
    except OverflowError:
        return scan_block_reference(raw, first_lsn, after_ts_ns, person)


def _checked_run(raw: bytes, entry: fmt.BlockEntry, i: int, after_ts_ns: int, path: str) -> rec.Run:
    """The reference checks of block `i`'s records (`SegmentReader.verify`'s), raising CorruptFile."""
    try:
        run = rec.check_run(raw, entry.first_lsn, after_ts_ns)
    except CorruptFile as exc:
        raise CorruptFile(f"block {i}: {exc.reason}", path=path, offset=entry.offset,
                          lsn=exc.lsn if exc.lsn is not None else entry.first_lsn) from exc
    if len(run.ends) != entry.record_count or run.first_ts_ns != entry.first_ts_ns:
        raise CorruptFile(f"block {i} records do not match the block index", path=path,
                          offset=entry.offset, lsn=entry.first_lsn)
    _check_types(raw, run.ends, entry, i, path)
    return run
