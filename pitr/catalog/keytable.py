"""Key tables: the catalog's key index of one segment, as fixed-width entries packed into big rows.

Pure functions (a sealing process builds a segment's table before the main
process writes it). Specified in docs/format.md, "Catalog", format 3.

An entry is 25 bytes, `digest u64 | ts + 2**63 u64 | lsn u64 | kind u8`
(big-endian; bit 0x80 of kind marks a put with an expiry), so the byte order
of entries is the order (key digest, commit time, LSN). The digest is the
first 8 bytes of BLAKE2b of the key, personalised `pitr-key-index`, or, in
an encrypted repository's catalog, of keyed BLAKE3 under the data key's index
subkey (`keyed_digest`: without the key a digest confirms no guess of a key):
every key, short or long, is indexed by it, and a reader compares the real key
in the record it reads (a collision costs a block read, never an answer).

A table is its entries sorted, one per (key digest, LSN) (a commit touching
a key twice keeps its last operation), cut into chunks of up to CHUNK_ENTRIES
entries. A chunk's row key is the table's first LSN (u64) followed by the
first 24 bytes of its first entry; its value is the entries, sealed like
every row.
"""

from __future__ import annotations

import hashlib
import heapq
import struct
from collections.abc import Callable, Iterable, Iterator

from blake3 import blake3

from pitr.catalog.rows import seal

KeyRow = tuple[bytes, int, int, int, bool]  # key, ts, lsn, kind, has_expiry
ENTRY = struct.Struct(">QQQB")
ENTRY_SIZE = ENTRY.size  # 25
SORT_RUN = 4_096
CHUNK_ENTRIES = 163  # 4,075 bytes + a 4-byte CRC: one 4 KiB overflow page per chunk
TS_BIAS = 1 << 63
KIND_EXPIRY = 0x80
DIGEST_SIZE = 8
CHUNKS_DB = b"keychunks"
_U64 = struct.Struct(">Q")
ChunkRow = tuple[bytes, bytes]  # row key, sealed value


def key_digest(key: bytes) -> bytes:
    """The 8-byte digest a key is indexed by."""
    return hashlib.blake2b(key, digest_size=DIGEST_SIZE, person=b"pitr-key-index").digest()


def keyed_digest(key: bytes, index_key: bytes) -> bytes:
    """The 8-byte digest a key is indexed by in an encrypted repository's catalog: keyed BLAKE3 under
    the index subkey (docs/format.md, "Keyed key digests")."""
    return blake3(key, key=index_key).digest()[:DIGEST_SIZE]


def digest_function(index_key: bytes | None) -> Callable[[bytes], bytes]:
    """How keys are digested: `key_digest` for a plaintext repository, keyed under `index_key` otherwise."""
    if index_key is None:
        return key_digest
    return lambda key: keyed_digest(key, index_key)


def entry_of(digest: bytes, ts_ns: int, lsn: int, kind: int, has_expiry: bool) -> bytes:
    return digest + ENTRY.pack(0, ts_ns + TS_BIAS, lsn, kind | (KIND_EXPIRY if has_expiry else 0))[8:]


def search_prefix(digest: bytes, ts_ns: int) -> bytes:
    """The first 16 bytes of an entry of `digest` at `ts_ns` (clamped to the representable times)."""
    return digest + _U64.pack(min(max(ts_ns + TS_BIAS, 0), (1 << 64) - 1))


def table_entries(key_rows: Iterable[KeyRow], index_key: bytes | None = None) -> list[bytes]:
    """A segment's entries, sorted: one per (key digest, LSN), the commit's last operation on it winning
    (digests keyed under `index_key` in an encrypted repository)."""
    latest: dict[tuple[bytes, int], bytes] = {}
    digests: dict[bytes, bytes] = {}
    digest_of = digest_function(index_key)
    for key, ts, lsn, kind, has_expiry in key_rows:
        digest = digests.get(key)
        if digest is None:
            digest = digests[key] = digest_of(key)
        # keyed by digest, not key: two keys of one digest in one commit share one entry (a reader
        # reads the record once and finds the key it asked for)
        latest[(digest, lsn)] = entry_of(digest, ts, lsn, kind, has_expiry)
    entries = list(latest.values())
    if len(entries) <= SORT_RUN:
        return sorted(entries)
    # sorted in runs, then merged: one sort call holds the GIL for its whole length (a 100,000-row
    # sort stalled the writers' event loop 90-260 ms on this project's 2-vCPU VM)
    runs = [sorted(entries[i : i + SORT_RUN]) for i in range(0, len(entries), SORT_RUN)]
    return list(heapq.merge(*runs))


def chunk_rows(table_lsn: int, entries: Iterable[bytes]) -> list[ChunkRow]:
    """The sealed chunk rows of a table whose entries (sorted) are given."""
    rows: list[ChunkRow] = []
    prefix = _U64.pack(table_lsn)
    part: list[bytes] = []
    for entry in entries:
        part.append(entry)
        if len(part) == CHUNK_ENTRIES:
            rows.append(_chunk(prefix, b"".join(part)))
            part = []
    if part:
        rows.append(_chunk(prefix, b"".join(part)))
    return rows


def _chunk(prefix: bytes, payload: bytes) -> ChunkRow:
    key = prefix + payload[:24]
    return key, seal(CHUNKS_DB, key, payload)


def build_table(table_lsn: int, key_rows: Iterable[KeyRow],
                index_key: bytes | None = None) -> tuple[int, list[ChunkRow]]:
    """(entry count, chunk rows) of the table of a segment starting at `table_lsn` (`index_key`: an
    encrypted repository's, which keys the digests)."""
    entries = table_entries(key_rows, index_key)
    return len(entries), chunk_rows(table_lsn, entries)


def check_chunk(row_key: bytes, payload: bytes) -> bytes:
    """A chunk payload whose shape matches its row key (ValueError otherwise)."""
    if not payload or len(payload) % ENTRY_SIZE or len(payload) > CHUNK_ENTRIES * ENTRY_SIZE:
        raise ValueError(f"a key-table chunk of {len(payload)} bytes")
    if len(row_key) != 32 or row_key[8:] != payload[:24]:
        raise ValueError("a key-table chunk does not start with the entry its row key names")
    return payload


def first_at_or_after(chunk: bytes, prefix: bytes) -> int:
    """Index of the first entry of `chunk` whose first len(prefix) bytes are >= prefix."""
    lo, hi, width = 0, len(chunk) // ENTRY_SIZE, len(prefix)
    while lo < hi:
        mid = (lo + hi) // 2
        at = mid * ENTRY_SIZE
        if chunk[at : at + width] < prefix:
            lo = mid + 1
        else:
            hi = mid
    return lo


def split_entries(payload: bytes) -> Iterator[bytes]:
    for at in range(0, len(payload), ENTRY_SIZE):
        yield payload[at : at + ENTRY_SIZE]


def merge_entries(tables: list[bytes]) -> Iterator[bytes]:
    """The entries of LSN-disjoint tables (each given as its chunks' payloads joined), in order.

    A Python-level merge, not one sort: it lets other threads run while it works."""
    return heapq.merge(*(split_entries(t) for t in tables))


def decode_entry(entry: bytes) -> tuple[bytes, int, int, int, bool]:
    """(digest, ts, lsn, kind, has_expiry)."""
    _d, ts, lsn, kind = ENTRY.unpack(entry)
    return entry[:8], ts - TS_BIAS, lsn, kind & ~KIND_EXPIRY, bool(kind & KIND_EXPIRY)
