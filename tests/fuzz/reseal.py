"""Mutators for archive files, raw and re-sealed.

A raw mutation (flip, overwrite, truncate, extend, splice) is caught by the
outer checksums. To reach the parsers behind them, `reseal_segment` and
`reseal_snapshot` recompute every checksum the format spec (docs/format.md)
defines over the mutated bytes wherever the structure still locates it: the
header CRC, each block's CRC, the tables/trailer CRC, the chain digest and
the file digest. `rebuild_segment` goes deeper: it mutates the records inside
a block, optionally repairs each record's CRC, recompresses the block and
recomputes everything above it (sizes, offsets, piece digest, chain digest).
"""

from __future__ import annotations

import random
import struct

import zstandard
from blake3 import blake3
from crc32c import crc32c

from segments import BytesSource, chain, read_meta
from segments import record as rec
from segments import segment_format as fmt
from segments import snapshot as snap

EXTREMES = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 1 << 32, (1 << 63) - 1, (1 << 64) - 1]


def mutate_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """One random raw mutation of `data`, and what it was (for the failure message)."""
    d = bytearray(data)
    n = len(d)
    kind = rng.choice(["flip", "flip", "byte", "word", "zero", "truncate", "extend", "splice"])
    pos = rng.randrange(n) if n else 0
    if kind == "flip" and n:
        d[pos] ^= 1 << rng.randrange(8)
    elif kind == "byte" and n:
        d[pos] = rng.randrange(256)
    elif kind == "word" and n >= 8:
        pos = rng.randrange(n - 7)
        width = rng.choice([2, 4, 8])
        d[pos:pos + width] = (rng.choice(EXTREMES) & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
    elif kind == "zero" and n:
        end = min(n, pos + rng.randrange(1, 600))
        d[pos:end] = bytes(end - pos)
    elif kind == "truncate":
        d = d[:pos]
    elif kind == "extend":
        d += rng.randbytes(rng.randrange(1, 300))
    elif kind == "splice" and n:
        a, b = sorted((rng.randrange(n), rng.randrange(n)))
        d[a:b] = rng.randbytes(rng.randrange(0, 64))
    return bytes(d), f"{kind}@{pos}"


def mutate_field(rng: random.Random, data: bytes, start: int, end: int) -> tuple[bytes, str]:
    """Overwrite an aligned integer field in data[start:end] with an extreme or random value."""
    d = bytearray(data)
    width = rng.choice([4, 8])
    if end - start < width:
        return data, "none"
    pos = start + rng.randrange((end - start) // width) * width if rng.random() < 0.7 else \
        rng.randrange(start, end - width + 1)
    value = rng.choice(EXTREMES + [rng.getrandbits(8 * width), int.from_bytes(d[pos:pos + width], "little") + 1])
    d[pos:pos + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
    return bytes(d), f"field@{pos}={value}"


def reseal_segment(data: bytes) -> bytes:
    """Recompute the segment checksums that still locate themselves in `data`."""
    d = bytearray(data)
    if len(d) >= fmt.HEADER_SIZE:
        struct.pack_into("<I", d, fmt.HEADER_SIZE - 4, crc32c(bytes(d[: fmt.HEADER_SIZE - 4])))
    if len(d) < fmt.HEADER_SIZE + fmt.TRAILER_SIZE:
        return bytes(d)
    t0 = len(d) - fmt.TRAILER_SIZE
    index_offset, block_count, piece_count = struct.unpack_from("<QII", d, t0)
    tables = block_count * fmt.INDEX_ENTRY.size + piece_count * fmt.PIECE_ENTRY.size
    if fmt.HEADER_SIZE <= index_offset and index_offset + tables == t0:
        for i in range(block_count):
            pos = index_offset + i * fmt.INDEX_ENTRY.size
            _lsn, _ts, offset, csize, _rsize, _count, _crc = fmt.INDEX_ENTRY.unpack_from(d, pos)
            if offset + csize <= len(d):
                struct.pack_into("<I", d, pos + 36, crc32c(bytes(d[offset:offset + csize])))
        base = index_offset + block_count * fmt.INDEX_ENTRY.size
        pieces = [chain.Piece(*fmt.PIECE_ENTRY.unpack_from(d, base + i * fmt.PIECE_ENTRY.size))
                  for i in range(piece_count)]
        prev = bytes(d[48:80])  # the header's prev_chain_digest
        (version,) = struct.unpack_from("<H", d, 8)
        if version != fmt.KEYED_CHAIN_VERSION:  # a keyed chain digest needs the key: kept as it was
            d[t0 + 56:t0 + 88] = chain.fold(prev, pieces)
        struct.pack_into("<I", d, t0 + fmt.TRAILER_FIELDS.size,
                         crc32c(bytes(d[t0:t0 + fmt.TRAILER_FIELDS.size]), crc32c(bytes(d[index_offset:t0]))))
    d[-40:-8] = blake3(bytes(d[:-40])).digest()
    return bytes(d)


def fix_record_crcs(raw: bytearray) -> None:
    """Recompute the CRC of every record whose length still frames it."""
    pos = 0
    while len(raw) - pos >= rec.HEADER_SIZE:
        (length,) = struct.unpack_from("<I", raw, pos + 4)
        stop = pos + 8 + length
        if length < rec.PAYLOAD_FIXED or stop > len(raw):
            return
        struct.pack_into("<I", raw, pos, crc32c(bytes(raw[pos + 4:stop])))
        pos = stop


def rebuild_segment(rng: random.Random, data: bytes, *, digests: bool | None = None) -> tuple[bytes, str]:
    """Mutate the records inside one block of a valid segment and seal it again.

    Every CRC and the file digest are recomputed. With `digests` (drawn at
    random when None), the piece's records digest and the chain digest are
    recomputed too: the result is then a consistent forgery that only the next
    segment's link (or a snapshot bound after it) can expose.
    """
    meta = read_meta(BytesSource(data))
    dctx = zstandard.ZstdDecompressor()
    blocks = [bytearray(dctx.decompress(data[e.offset:e.offset + e.compressed_size], max_output_size=e.raw_size))
              for e in meta.index]
    i = rng.randrange(len(blocks))
    mutated, what = mutate_field(rng, bytes(blocks[i]), 0, len(blocks[i])) if rng.random() < 0.5 else \
        mutate_bytes(rng, bytes(blocks[i]))
    blocks[i] = bytearray(mutated)
    repaired = rng.random() < 0.8
    if repaired:
        fix_record_crcs(blocks[i])
    cctx = zstandard.ZstdCompressor(level=1)
    out = bytearray(data[: fmt.HEADER_SIZE])
    index = []
    for entry, raw in zip(meta.index, blocks, strict=True):
        frame = cctx.compress(bytes(raw))
        index.append(fmt.BlockEntry(entry.first_lsn, entry.first_ts_ns, len(out), len(frame), len(raw),
                                    entry.record_count, crc32c(frame)))
        out += frame
    everything = b"".join(bytes(b) for b in blocks)
    t = meta.trailer
    pieces = meta.pieces
    digests = rng.random() < 0.5 if digests is None else digests
    chain_digest = meta.chain_digest
    if digests and len(pieces) == 1:
        pieces = [chain.Piece(pieces[0].first_lsn, pieces[0].last_lsn, chain.records_digest(everything))]
        chain_digest = chain.fold(meta.header.prev_chain_digest, pieces)
    fields = (len(out), len(index), len(pieces), t.last_lsn, t.last_ts_ns, t.record_count,
              t.complete_through_ns, len(everything))
    out += fmt.encode_tail(index, pieces, fields, chain_digest)
    out += blake3(bytes(out)).digest() + fmt.END_MAGIC
    return bytes(out), f"block {i} {what}{' +record crcs' if repaired else ''}{' +digests' if digests else ''}"


def reseal_snapshot(data: bytes) -> bytes:
    """Recompute the snapshot checksums that still locate themselves in `data`."""
    d = bytearray(data)
    if len(d) < snap.FIXED.size + 4 + snap.FOOTER_SIZE:
        return bytes(d)
    (size,) = struct.unpack_from("<I", d, 12)
    if snap.FIXED.size + 4 <= size <= len(d) - snap.FOOTER_SIZE:
        struct.pack_into("<I", d, size - 4, crc32c(bytes(d[: size - 4])))
    f0 = len(d) - snap.FOOTER_SIZE
    index_offset, count, index_size = struct.unpack_from("<QII", d, f0)
    if size <= index_offset and index_offset + index_size == f0:
        pos = index_offset
        for _ in range(count):
            if f0 - pos < snap.INDEX_ENTRY.size:
                break
            off, csize, _rsize, _n, _crc, klen = snap.INDEX_ENTRY.unpack_from(d, pos)
            if off + csize <= len(d):
                struct.pack_into("<I", d, pos + 20, crc32c(bytes(d[off:off + csize])))
            pos += snap.INDEX_ENTRY.size + klen
        struct.pack_into("<I", d, f0 + snap.FOOTER_FIELDS.size,
                         crc32c(bytes(d[f0:f0 + snap.FOOTER_FIELDS.size]), crc32c(bytes(d[index_offset:f0]))))
    d[-40:-8] = blake3(bytes(d[:-40])).digest()
    return bytes(d)
