"""Snapshot files: a full, sorted copy of a store's state at one LSN.

    header   fixed 108 bytes + metadata JSON (<= 16 KiB) + u32 CRC-32C
    blocks   zstd frames of sorted entries, back to back
    index    per block: u64 offset, u32 csize, u32 rsize, u32 entries, u32 crc, u32 klen, first key
    footer   112 bytes: index offset and size, counts, state digest, CRC; then file digest and magic

An entry is ``u8 flags | u32 key_len | u32 value_len | [i64 expires_at_ns] | key | value``.
The state digest is the sum modulo 2**256 of BLAKE3(entry encoding) over all
entries: independent of order, so any copy of the same state (a snapshot, a
restored LMDB, a replayed log) yields the same digest. See docs/format.md.
"""

from __future__ import annotations

import bisect
import json
import os
import struct
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate, islice
from typing import Any, BinaryIO

import zstandard
from blake3 import blake3

from segments import record as rec
from segments._errors import CorruptFile, UnsupportedVersion
from segments.block_seal import TAG_BYTES, BlockSealer, SealedFile, SegmentKeys
from segments.crc import crc32c
from segments.fold import Change
from segments.segment_format import MAX_ZSTD_RATIO
from segments.snapshot_codec import DAMAGED, OK, check_encoded
from segments.snapshot_encode import batch_in_order, digest_terms, encode_entries
from segments.snapshot_seal import (
    SALT_BYTES,
    SEALED_VERSION,
    encode_key_table,
    open_key_table,
    snapshot_sealer,
)
from segments.source import FileSource, RangeSource

MAGIC = b"PITRSNP\n"
END_MAGIC = b"PITRSNE\n"
VERSION = SEALED_VERSION  # the newest this code reads; a plaintext snapshot is still written as 1
FIXED = struct.Struct("<8sHHI16sQq32sQQqI")  # 108 bytes
MAX_META = 16 << 10
ENTRY = struct.Struct("<BII")
INDEX_ENTRY = struct.Struct("<QIIIII")
FOOTER_FIELDS = struct.Struct("<QIIQQ32s")  # 64 bytes
FOOTER_SIZE = FOOTER_FIELDS.size + 8 + 32 + 8  # 112
FLAG_EXPIRY = 0x01
FLAG_RAW_BLOCKS = 0x0001  # header flags: blocks are stored uncompressed (compress=False)
BLOCK_SIZE = 256 << 10
MAX_BLOCK_SIZE = 64 << 20  # the largest block size a writer may be asked for
MAX_ENTRY = ENTRY.size + 8 + rec.MAX_KEY + rec.MAX_VALUE
# A block is cut after the entry that reaches the block size, so it may exceed it by one entry.
MAX_BLOCK_RAW = MAX_BLOCK_SIZE + MAX_ENTRY
_MOD = 1 << 256
ADD_BATCH = 4096  # entries encoded and hashed per C-level pass of add_many


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    """What `list` shows without reading the body."""

    store_id: uuid.UUID
    lsn: int
    ts_ns: int
    chain_digest: bytes
    entry_count: int
    logical_bytes: int
    created_ns: int
    metadata: dict[str, Any] = field(default_factory=dict)
    size: int = 0  # header bytes
    flags: int = 0
    salt: bytes | None = None  # a sealed snapshot's file salt (version 2); None: plaintext blocks

    @property
    def sealed(self) -> bool:
        return self.salt is not None


@dataclass(frozen=True, slots=True)
class SnapshotFooter:
    index_offset: int
    block_count: int
    index_size: int
    entry_count: int
    logical_bytes: int
    state_digest: bytes
    file_digest: bytes


@dataclass(frozen=True, slots=True)
class SnapshotBlock:
    offset: int
    compressed_size: int
    raw_size: int
    entry_count: int
    crc: int
    first_key: bytes


def encode_entry(key: bytes, value: bytes, expires_at_ns: int | None) -> bytes:
    if expires_at_ns is None:
        return ENTRY.pack(0, len(key), len(value)) + key + value
    return ENTRY.pack(FLAG_EXPIRY, len(key), len(value)) + rec.I64.pack(expires_at_ns) + key + value


def entry_digest(key: bytes, value: bytes, expires_at_ns: int | None) -> int:
    """One entry's contribution to the order-independent state digest."""
    return encoded_digest(encode_entry(key, value, expires_at_ns))


def encoded_digest(encoded: bytes) -> int:
    """`entry_digest` of an entry given as its encoding (the writer has it, and a block holds it)."""
    return int.from_bytes(blake3(encoded).digest(), "little")


def entry_key(encoded: bytes) -> bytes:
    """The key of an entry given as its encoding (checked by whoever made it)."""
    _flags, klen, _vlen = ENTRY.unpack_from(encoded)
    head = ENTRY.size + (8 if encoded[0] & FLAG_EXPIRY else 0)
    return encoded[head : head + klen]


class StateDigest:
    """Order-independent digest of a set of entries (sum of entry digests mod 2**256)."""

    def __init__(self) -> None:
        self.total = 0
        self.count = 0

    def add(self, key: bytes, value: bytes, expires_at_ns: int | None) -> None:
        self.add_encoded(encode_entry(key, value, expires_at_ns))

    def add_encoded(self, encoded: bytes) -> None:
        """Add an entry given as its encoding (`encode_entry`)."""
        self.total += encoded_digest(encoded)  # reduced in digest()
        self.count += 1

    def digest(self) -> bytes:
        return (self.total % _MOD).to_bytes(32, "little")


def _encode_header(h: SnapshotHeader) -> bytes:
    meta = json.dumps(h.metadata, sort_keys=True, separators=(",", ":")).encode()
    if len(meta) > MAX_META:
        raise ValueError(f"snapshot metadata of {len(meta)} bytes exceeds {MAX_META}")
    salt = b"" if h.salt is None else h.salt
    if h.salt is not None and len(h.salt) != SALT_BYTES:
        raise ValueError(f"a snapshot salt is {SALT_BYTES} bytes")
    size = FIXED.size + len(salt) + len(meta) + 4
    version = 1 if h.salt is None else SEALED_VERSION
    body = FIXED.pack(MAGIC, version, h.flags, size, h.store_id.bytes, h.lsn, h.ts_ns, h.chain_digest,
                      h.entry_count, h.logical_bytes, h.created_ns, len(meta)) + salt + meta
    return body + struct.pack("<I", crc32c(body))


def read_header(source: RangeSource) -> SnapshotHeader:
    """Read and check the header only (what listing needs)."""
    path = source.name
    if source.size < FIXED.size + 4 + FOOTER_SIZE:
        raise CorruptFile("too short to be a snapshot", path=path, offset=0)
    fixed = source.read(0, FIXED.size)
    (magic, version, flags, size, store_id, lsn, ts_ns, chain_digest, entries, logical, created,
     meta_len) = FIXED.unpack(fixed)
    if magic != MAGIC:
        raise CorruptFile(f"bad magic {magic!r}, not a pitr snapshot", path=path, offset=0)
    if not FIXED.size + 4 <= size <= FIXED.size + SALT_BYTES + MAX_META + 4 or size + FOOTER_SIZE > source.size:
        raise CorruptFile("snapshot header size out of bounds", path=path, offset=0)
    rest = source.read(FIXED.size, size - FIXED.size)
    # The CRC is checked before the version, so a damaged version field reads as damage, not as newer.
    (crc,) = struct.unpack_from("<I", rest, len(rest) - 4)
    if crc32c(rest[:-4], crc32c(fixed)) != crc:
        raise CorruptFile("snapshot header CRC-32C mismatch", path=path, offset=0)
    if version > VERSION:
        raise UnsupportedVersion(path, "snapshot", version, VERSION)
    salt_len = SALT_BYTES if version == SEALED_VERSION else 0
    if version < 1 or size != FIXED.size + salt_len + meta_len + 4:
        raise CorruptFile(f"bad snapshot header version {version} / size {size}", path=path, offset=0)
    salt = bytes(rest[:salt_len]) if salt_len else None
    try:
        metadata = json.loads(rest[salt_len : salt_len + meta_len]) if meta_len else {}
    except (ValueError, RecursionError) as exc:
        raise CorruptFile(f"snapshot metadata is not JSON: {exc}", path=path, offset=FIXED.size) from exc
    if not isinstance(metadata, dict):
        raise CorruptFile("snapshot metadata is not an object", path=path, offset=FIXED.size)
    return SnapshotHeader(uuid.UUID(bytes=store_id), lsn, ts_ns, chain_digest, entries, logical,
                          created, metadata, size, flags, salt)


class SnapshotWriter:
    """Streams sorted entries into a snapshot; memory is bounded by one block."""

    def __init__(self, out: BinaryIO, header: SnapshotHeader, *, block_size: int = BLOCK_SIZE,
                 level: int = 3, compress: bool = True, keys: SegmentKeys | None = None) -> None:
        """`compress=False` stores blocks raw (header flag FLAG_RAW_BLOCKS); CRCs still cover them.

        With an encrypted repository's `keys` the file is sealed (version 2): a fresh random salt
        (the header's, if it has one: test vectors), every block and the key table sealed."""
        self._out = out
        flags = header.flags & ~FLAG_RAW_BLOCKS if compress else header.flags | FLAG_RAW_BLOCKS
        salt = None
        self._sealer: BlockSealer | None = None
        if keys is not None:
            salt = header.salt if header.salt is not None else os.urandom(SALT_BYTES)
            self._sealer = snapshot_sealer(keys, salt, header.lsn)
        elif header.salt is not None:
            raise ValueError("a snapshot header with a salt needs the keys that seal it")
        header = SnapshotHeader(header.store_id, header.lsn, header.ts_ns, header.chain_digest,
                                header.entry_count, header.logical_bytes, header.created_ns, header.metadata,
                                header.size, flags, salt)
        self._compress = compress
        self._header = header
        self._head_size = len(_encode_header(header))
        out.write(b"\0" * self._head_size)  # patched in finish() once counts are known
        self._offset = self._head_size
        self._cctx = zstandard.ZstdCompressor(level=level, write_content_size=True)
        if not 0 < block_size <= MAX_BLOCK_SIZE:
            raise ValueError(f"block size {block_size} is not in 1..{MAX_BLOCK_SIZE}")
        self._block_size = block_size
        self._parts: list[bytes] = []
        self._part_bytes = 0
        self._block_entries = 0
        self._first_key: bytes | None = None
        self._last_key: bytes | None = None
        self._index: list[SnapshotBlock] = []
        self._state = StateDigest()
        self.logical_bytes = 0

    def add(self, key: bytes, value: bytes, expires_at_ns: int | None = None) -> None:
        """Add one entry; keys must arrive in strictly increasing order."""
        if self._last_key is not None and key <= self._last_key:
            raise ValueError("snapshot keys must be strictly increasing")
        if len(key) > rec.MAX_KEY or len(value) > rec.MAX_VALUE:
            raise ValueError(f"entry of {len(key)}+{len(value)} bytes exceeds the key or value limit")
        self._last_key = key
        data = encode_entry(key, value, expires_at_ns)
        self._state.add_encoded(data)
        self.logical_bytes += len(key) + len(value)
        if self._first_key is None:
            self._first_key = key
        self._parts.append(data)
        self._part_bytes += len(data)
        self._block_entries += 1
        if self._part_bytes >= self._block_size:
            self._flush()

    def add_many(self, entries: Iterable[tuple[bytes, bytes, int | None]], *, batch_size: int = ADD_BATCH) -> None:
        """Add entries as `add` does one by one (the same file), encoding and hashing a batch at a time.

        A batch with a key out of order or over a limit is added one by one, so the error names
        the same entry `add` would, with the entries before it added.
        """
        it = iter(entries)
        while batch := list(islice(it, batch_size)):
            keys, values, expiries = zip(*batch, strict=True)
            if not batch_in_order(keys, self._last_key) or max(map(len, values)) > rec.MAX_VALUE:
                for key, value, expires in batch:
                    self.add(key, value, expires)
                continue
            encoded = encode_entries(keys, values, expiries)
            self._state.total += digest_terms(encoded)
            self._state.count += len(encoded)
            self.logical_bytes += sum(map(len, keys)) + sum(map(len, values))
            self._last_key = keys[-1]
            self._append_encoded(keys.__getitem__, encoded)

    def add_encoded(self, encoded: list[bytes]) -> None:
        """Add entries given as their encodings (`encode_entry`), keys strictly increasing: the same
        file as `add` of each, in one compiled pass that checks every encoding (layout, limits,
        order) and hashes it. A bad encoding raises ValueError naming it; none of the run is added."""
        status, index, total, logical, last = check_encoded(encoded, self._last_key)
        if status != OK:
            why = "is not a snapshot entry encoding" if status == DAMAGED else \
                "does not sort strictly after the key before it"
            raise ValueError(f"snapshot entry {self._state.count + index} {why}")
        if not encoded:
            return
        self._state.total += total
        self._state.count += len(encoded)
        self.logical_bytes += logical
        self._last_key = last
        self._append_encoded(lambda pos: entry_key(encoded[pos]), encoded)

    def _append_encoded(self, key_at: Callable[[int], bytes], encoded: list[bytes]) -> None:
        """Put encoded entries into blocks, cut where `add` cuts them (after the entry that reaches
        the block size); `key_at(i)` is entry i's key (asked once per block)."""
        ends = list(accumulate(map(len, encoded)))
        pos, count = 0, len(encoded)
        while pos < count:
            if self._first_key is None:
                self._first_key = key_at(pos)
            base = ends[pos - 1] if pos else 0
            last = bisect.bisect_left(ends, self._block_size - self._part_bytes + base, pos)
            stop = min(last + 1, count)
            self._parts.extend(encoded[pos:stop])
            self._part_bytes += ends[stop - 1] - base
            self._block_entries += stop - pos
            if last < count:
                self._flush()
            pos = stop

    def _flush(self) -> None:
        if not self._parts or self._first_key is None:
            return
        raw = b"".join(self._parts)
        compressed = self._cctx.compress(raw) if self._compress else raw
        if self._sealer is not None:
            compressed = self._sealer.seal(len(self._index), self._header.lsn, compressed)
        self._index.append(SnapshotBlock(self._offset, len(compressed), len(raw), self._block_entries,
                                         crc32c(compressed), self._first_key))
        self._out.write(compressed)
        self._offset += len(compressed)
        self._parts, self._part_bytes, self._block_entries, self._first_key = [], 0, 0, None

    @property
    def header(self) -> SnapshotHeader:
        """The header as given (counts and, until `finish`, possibly the chain digest still open)."""
        return self._header

    def finish(self, *, chain_digest: bytes | None = None) -> tuple[SnapshotHeader, SnapshotFooter]:
        """Write index and footer, patch the header, append the file digest. `out` must be seekable.

        `chain_digest` replaces the header's: a snapshot's entries can be written before the log
        is sealed through its LSN, which gives the digest. The header's CRC and the file digest
        are computed after the patch.
        """
        if chain_digest is not None and len(chain_digest) != 32:
            raise ValueError(f"a chain digest is 32 bytes, not {len(chain_digest)}")
        self._flush()
        state_digest = self._state.digest()
        stored_digest = state_digest
        if self._sealer is None:
            index = b"".join(INDEX_ENTRY.pack(b.offset, b.compressed_size, b.raw_size, b.entry_count, b.crc,
                                              len(b.first_key)) + b.first_key for b in self._index)
        else:  # first keys and the state digest only in the sealed key table (block number block_count)
            table = encode_key_table(state_digest, [b.first_key for b in self._index])
            index = b"".join(INDEX_ENTRY.pack(b.offset, b.compressed_size, b.raw_size, b.entry_count, b.crc, 0)
                             for b in self._index) + self._sealer.seal(len(self._index), self._header.lsn, table)
            stored_digest = bytes(32)
        fields = FOOTER_FIELDS.pack(self._offset, len(self._index), len(index), self._state.count,
                                    self.logical_bytes, stored_digest)
        crc = crc32c(fields, crc32c(index))
        self._out.write(index + fields + struct.pack("<II", crc, 0))
        end = self._offset + len(index) + FOOTER_SIZE - 40
        h = self._header
        bound = h.chain_digest if chain_digest is None else chain_digest
        header = SnapshotHeader(h.store_id, h.lsn, h.ts_ns, bound, self._state.count, self.logical_bytes,
                                h.created_ns, h.metadata, self._head_size, h.flags, h.salt)
        self._out.seek(0)
        self._out.write(_encode_header(header))
        self._out.flush()
        self._out.seek(0)
        hasher = blake3(max_threads=1)
        remaining = end
        while remaining:
            chunk = self._out.read(min(remaining, 8 << 20))
            if not chunk:
                raise OSError("snapshot file shrank while it was being written")
            hasher.update(chunk)
            remaining -= len(chunk)
        file_digest = hasher.digest()
        self._out.seek(end)
        self._out.write(file_digest + END_MAGIC)
        footer = SnapshotFooter(self._offset, len(self._index), len(index), self._state.count,
                                self.logical_bytes, state_digest, file_digest)
        return header, footer


class SnapshotReader:
    """Reads a snapshot through its first-key index, checking every block it touches.

    Given an encrypted repository's `keys`, a snapshot that is not sealed is refused (`CorruptFile`):
    in an encrypted repository it can only come from someone without the key. Without keys, a
    sealed snapshot's header, footer and index read (the first keys empty, the state digest zero)
    and its blocks raise `SealedFile`.
    """

    def __init__(self, source: RangeSource, *, keys: SegmentKeys | None = None) -> None:
        self.source = source
        self.header = read_header(source)
        self._sealer: BlockSealer | None = None
        if keys is not None and self.header.salt is None:
            raise CorruptFile("the snapshot is not sealed, but the repository is encrypted: it was not written "
                              "with the repository's key", path=source.name, offset=0,
                              hint="move the file out of the repository")
        if keys is not None and self.header.salt is not None:
            self._sealer = snapshot_sealer(keys, self.header.salt, self.header.lsn)
        self.footer, self.blocks = self._read_tables()
        self._keys = [b.first_key for b in self.blocks]
        self._dctx = zstandard.ZstdDecompressor()

    @classmethod
    def open(cls, path: str, *, keys: SegmentKeys | None = None) -> SnapshotReader:
        return cls(FileSource(path), keys=keys)

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_tables(self) -> tuple[SnapshotFooter, list[SnapshotBlock]]:
        path, size = self.source.name, self.source.size
        tail = self.source.read(size - FOOTER_SIZE, FOOTER_SIZE)
        if tail[-8:] != END_MAGIC:
            raise CorruptFile("missing end magic (truncated snapshot?)", path=path, offset=size - 8)
        index_offset, count, index_size, entries, logical, state = FOOTER_FIELDS.unpack_from(tail)
        (crc,) = struct.unpack_from("<I", tail, FOOTER_FIELDS.size)
        if index_offset < self.header.size or index_offset + index_size != size - FOOTER_SIZE:
            raise CorruptFile("snapshot index offset out of bounds", path=path, offset=size - FOOTER_SIZE)
        index = self.source.read(index_offset, index_size)
        if crc32c(tail[: FOOTER_FIELDS.size], crc32c(index)) != crc:
            raise CorruptFile("snapshot index/footer CRC-32C mismatch", path=path, offset=index_offset)
        if entries != self.header.entry_count or logical != self.header.logical_bytes:
            raise CorruptFile("header and footer disagree on the counts", path=path, offset=index_offset)
        blocks: list[SnapshotBlock] = []
        pos, expected_offset, total = 0, self.header.size, 0
        sealed = self.header.salt is not None
        if sealed and (count > (index_size - TAG_BYTES - 32) // INDEX_ENTRY.size or state != bytes(32)):
            raise CorruptFile("sealed snapshot index has no room for its key table, or a state digest in the "
                              "clear", path=path, offset=index_offset)
        for _ in range(count):
            if index_size - pos < INDEX_ENTRY.size:
                raise CorruptFile("snapshot index truncated", path=path, offset=index_offset + pos)
            off, csize, rsize, n, bcrc, klen = INDEX_ENTRY.unpack_from(index, pos)
            pos += INDEX_ENTRY.size
            stored = self.header.flags & FLAG_RAW_BLOCKS
            if klen > index_size - pos or off != expected_offset or rsize > MAX_BLOCK_RAW or n == 0 or \
                    rsize > csize * (1 if stored else MAX_ZSTD_RATIO) or rsize < n * ENTRY.size or \
                    (sealed and (klen != 0 or csize < TAG_BYTES)):
                raise CorruptFile("snapshot index entry out of bounds", path=path, offset=index_offset + pos)
            blocks.append(SnapshotBlock(off, csize, rsize, n, bcrc, bytes(index[pos : pos + klen])))
            pos += klen
            expected_offset += csize
            total += n
        if sealed:
            if self._sealer is not None:
                state, first_keys = open_key_table(self._sealer, self.header.lsn, index[pos:], count, path=path,
                                                   offset=index_offset + pos)
                blocks = [SnapshotBlock(b.offset, b.compressed_size, b.raw_size, b.entry_count, b.crc, k)
                          for b, k in zip(blocks, first_keys, strict=True)]
            pos = index_size
        if pos != index_size or expected_offset != index_offset or total != entries:
            raise CorruptFile("snapshot index does not cover the file", path=path, offset=index_offset)
        footer = SnapshotFooter(index_offset, count, index_size, entries, logical, state,
                                bytes(tail[-40:-8]))
        return footer, blocks

    def read_block(self, i: int) -> bytes:
        """Block `i` decompressed, its CRC checked (a restore calls this from a read-ahead thread)."""
        return self._open_stored(i, self._read_stored(i))

    def _read_stored(self, i: int) -> bytes:
        """Block `i` as stored, its CRC checked."""
        b = self.blocks[i]
        data = self.source.read(b.offset, b.compressed_size)
        if crc32c(data) != b.crc:
            raise CorruptFile(f"snapshot block {i} CRC-32C mismatch", path=self.source.name, offset=b.offset)
        return data

    def _open_stored(self, i: int, data: bytes, dctx: zstandard.ZstdDecompressor | None = None) -> bytes:
        """Block `i`'s entries from its stored bytes: opened if sealed, decompressed unless raw (with
        `dctx`, a decompressor of the calling thread's own)."""
        b = self.blocks[i]
        path = self.source.name
        if self.header.salt is not None:
            if self._sealer is None:
                raise SealedFile(path)
            data = self._sealer.open(i, self.header.lsn, data, path=path, offset=b.offset)
        if self.header.flags & FLAG_RAW_BLOCKS:
            if len(data) != b.raw_size:
                raise CorruptFile(f"snapshot block {i} size mismatch", path=path, offset=b.offset)
            return data
        try:
            if zstandard.frame_content_size(data) != b.raw_size:
                raise CorruptFile(f"snapshot block {i} size mismatch", path=path, offset=b.offset)
            raw: bytes = (dctx or self._dctx).decompress(data, max_output_size=b.raw_size)
        except zstandard.ZstdError as exc:
            raise CorruptFile(f"snapshot block {i} does not decompress: {exc}", path=path,
                              offset=b.offset) from exc
        return raw

    def block_entries(self, i: int, raw: bytes) -> Iterator[tuple[bytes, bytes, int | None]]:
        """(key, value, expiry) of every entry of block `i`, given its decompressed bytes."""
        for key, value, expires, _end in self.entry_spans(i, raw):
            yield key, value, expires

    # Decoding a block: `entry_spans` is the reference (checks every bound, names the damage);
    # `block_changes` is the restore's fast copy of it. tests/segments/test_snapshot_seams.py holds
    # them equal on random and damaged blocks; change both together.

    def block_changes(self, i: int, raw: bytes) -> list[tuple[bytes, Change]]:
        """Block `i`'s entries as (key, change) in key order, given its decompressed bytes: the value
        for an entry without expiry, else (value, expiry) (the replay's representation).

        The restore's hot path over the base: one loop and one tuple per entry, with the same
        checks as `entry_spans`.
        """
        pos, end, b = 0, len(raw), self.blocks[i]
        unpack = ENTRY.unpack_from
        size = ENTRY.size
        out: list[tuple[bytes, Change]] = []
        append = out.append
        for _ in range(b.entry_count):
            if end - pos < size:
                break
            flags, klen, vlen = unpack(raw, pos)
            pos += size
            if flags & FLAG_EXPIRY:
                if end - pos < 8:
                    break
                (expires,) = rec.I64.unpack_from(raw, pos)
                pos += 8
                if klen + vlen > end - pos:
                    break
                append((raw[pos : pos + klen], (raw[pos + klen : pos + klen + vlen], expires)))
            else:
                if klen + vlen > end - pos:
                    break
                append((raw[pos : pos + klen], raw[pos + klen : pos + klen + vlen]))
            pos += klen + vlen
        if len(out) != b.entry_count or pos != end:
            for _ in self.entry_spans(i, raw):  # raises with the precise reason
                pass
            raise CorruptFile(f"snapshot block {i} does not decode", path=self.source.name, offset=b.offset)
        return out

    def entry_spans(self, i: int, raw: bytes) -> Iterator[tuple[bytes, bytes, int | None, int]]:
        """(key, value, expiry, offset just past the entry) for every entry of block `i`."""
        pos, end, b = 0, len(raw), self.blocks[i]
        path = self.source.name
        unpack = ENTRY.unpack_from
        for n in range(b.entry_count):
            if end - pos < ENTRY.size:
                raise CorruptFile(f"snapshot block {i} entry {n} truncated", path=path, offset=b.offset)
            flags, klen, vlen = unpack(raw, pos)
            pos += ENTRY.size
            expires = None
            if flags & FLAG_EXPIRY:
                if end - pos < 8:
                    raise CorruptFile(f"snapshot block {i} entry {n} truncated", path=path, offset=b.offset)
                (expires,) = rec.I64.unpack_from(raw, pos)
                pos += 8
            if klen + vlen > end - pos:
                raise CorruptFile(f"snapshot block {i} entry {n} runs past the block", path=path,
                                  offset=b.offset)
            key = raw[pos : pos + klen]
            pos += klen + vlen
            yield key, raw[pos - vlen : pos], expires, pos
        if pos != end:
            raise CorruptFile(f"snapshot block {i} has stray bytes", path=path, offset=b.offset)

    def iter_entries(self, start: bytes | None = None) -> Iterator[tuple[bytes, bytes, int | None]]:
        """Entries in key order, from the first key >= `start`."""
        first = 0 if start is None else max(0, bisect.bisect_right(self._keys, start) - 1)
        for i in range(first, len(self.blocks)):
            for entry in self.block_entries(i, self.read_block(i)):
                if start is None or entry[0] >= start:
                    yield entry

    def get(self, key: bytes) -> tuple[bytes, int | None] | None:
        """The value and expiry of `key`, reading one block, or None."""
        i = bisect.bisect_right(self._keys, key) - 1
        if i < 0:
            return None
        for k, v, e in self.block_entries(i, self.read_block(i)):
            if k == key:
                return v, e
            if k > key:
                break
        return None

    def stored_block(self, i: int) -> bytes:
        """Block `i` as stored in the file, its CRC checked."""
        return self._read_stored(i)

    def open_stored(self, i: int, data: bytes, dctx: zstandard.ZstdDecompressor | None = None) -> bytes:
        """Block `i` decompressed (and opened, if sealed) from its stored bytes."""
        return self._open_stored(i, data, dctx)

    def verify(self) -> None:
        """Full check: every block, entry order, counts, state digest and file digest
        (`segments.snapshot_check`, one compiled pass per block)."""
        from segments.snapshot_check import checked_blocks  # it builds on this module

        for _ in checked_blocks(self, decode=False):
            pass
