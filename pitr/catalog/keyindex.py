"""The catalog's key index: one key table per segment (`pitr.catalog.keytable`), queried by key and time.

Sub-databases:
    keytables  u64 segment first_lsn -> u64 last_lsn, i64 first_ts, i64 last_ts, u64 entries
    keychunks  u64 segment first_lsn | first 24 bytes of the chunk's first entry -> entries

A lookup visits the tables newest first (time travel) or oldest first
(history) and costs one cursor seek and one chunk read per table it visits;
tables follow segments, so merging segments merges their tables. The table
directory is read once per catalog change and checked against the segment
rows: a segment without its table (or a table without its segment) is
damage, never a silent miss.

In an encrypted repository's catalog the digests are keyed under the data
key's index subkey (`use_index_key`), and meta row `index_key_id` names that
key: a catalog built under another key (or unkeyed) is rebuilt, and one opened
without the key refuses every lookup by key (`WrongKey`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import lmdb
from blake3 import blake3

from pitr.catalog import keytable
from pitr.catalog.entries import U64BE, KeyVersion, SegmentEntry
from pitr.catalog.environment import CatalogEnvironment
from pitr.catalog.keytable import (
    CHUNKS_DB,
    ENTRY_SIZE,
    ChunkRow,
    check_chunk,
    chunk_rows,
    decode_entry,
    first_at_or_after,
    merge_entries,
    search_prefix,
)
from pitr.catalog.rows import load_json
from pitr.errors import CatalogDamaged, WrongKey

TABLES_DB = b"keytables"
TABLE_ROW = struct.Struct(">QqqQ")  # last_lsn, first_ts, last_ts, entries
INDEX_KEY_ID = b"index_key_id"  # meta row: which index subkey keys the digests (absent: unkeyed)


def index_key_id(index_key: bytes) -> str:
    """What the catalog records of the index subkey it is keyed with: 16 bytes of keyed BLAKE3 of a
    fixed label, in hex (it names the key without revealing it)."""
    return blake3(b"pitr catalog index key id", key=index_key).digest()[:16].hex()


@dataclass(frozen=True, slots=True)
class KeyTable:
    """A segment's key table as the directory lists it."""

    first_lsn: int
    last_lsn: int
    first_ts_ns: int
    last_ts_ns: int
    entries: int


def _version(entry: bytes) -> KeyVersion:
    _digest, ts, lsn, kind, has_expiry = decode_entry(entry)
    return KeyVersion(ts, lsn, kind, has_expiry)


class KeyIndex(CatalogEnvironment):
    """Key-index rows and queries (mixed into `Catalog`)."""

    _tables_cache: tuple[int, list[KeyTable]] | None = None
    index_key: bytes | None = None  # an encrypted repository's index subkey (`use_index_key`)
    # a keyed chain's link subkey (segment version 3: `pitr.repo.keyring.unlock`), to fold inside its segments
    link_key: bytes | None = None

    def key_digest(self, key: bytes) -> bytes:
        """The digest `key` is indexed by in this catalog; `WrongKey` when the catalog is keyed and
        was opened without its key (a plain digest would find nothing: a wrong, empty answer)."""
        if self.index_key is not None:
            return keytable.keyed_digest(key, self.index_key)
        with self._txn("read") as txn:
            keyed = self._get(txn, b"meta", INDEX_KEY_ID, load_json)
        if keyed is not None:
            raise WrongKey(f"the catalog {self.path} indexes an encrypted repository's keys by keyed digests, "
                           "and no key was given", hint="give the key file with --key-file FILE or PITR_KEY_FILE")
        return keytable.key_digest(key)

    def close(self) -> None:
        self._tables_cache = None  # a rebuilt environment numbers its transactions from the start again
        super().close()

    # writing ---------------------------------------------------------------------
    def _put_key_table(self, txn: lmdb.Transaction, entry: SegmentEntry, entries: int,
                       rows: list[ChunkRow]) -> None:
        self._drop_key_tables(txn, entry.first_lsn, entry.last_lsn)
        self._put(txn, TABLES_DB, U64BE.pack(entry.first_lsn),
                  TABLE_ROW.pack(entry.last_lsn, entry.first_ts_ns, entry.last_ts_ns, entries))
        if rows:
            txn.cursor(self._dbs[CHUNKS_DB]).putmulti(rows, dupdata=False, overwrite=True)

    def _drop_key_tables(self, txn: lmdb.Transaction, first_lsn: int, last_lsn: int,
                         spans: list[tuple[int, int]] | None = None) -> list[bytes]:
        """Remove the tables starting inside [first_lsn, last_lsn]; returns their chunks' payloads
        joined (and appends their LSN ranges to `spans`)."""
        dropped = []
        cursor = txn.cursor(self._dbs[TABLES_DB])
        found = cursor.set_range(U64BE.pack(first_lsn))
        while found and self._key(TABLES_DB, cursor.key()) <= last_lsn:
            table = self._table(bytes(cursor.key()), cursor.value())
            dropped.append(self._drop_chunks(txn, table.first_lsn))
            if spans is not None:
                spans.append((table.first_lsn, table.last_lsn))
            found = cursor.delete() and bool(cursor.key())
        return dropped

    def _drop_chunks(self, txn: lmdb.Transaction, table_lsn: int) -> bytes:
        prefix = U64BE.pack(table_lsn)
        payloads = []
        cursor = txn.cursor(self._dbs[CHUNKS_DB])
        found = cursor.set_range(prefix)
        while found and bytes(cursor.key()[:8]) == prefix:
            payloads.append(self._chunk(cursor))
            found = cursor.delete() and bool(cursor.key())
        return b"".join(payloads)

    def _merge_key_tables(self, txn: lmdb.Transaction, entry: SegmentEntry) -> None:
        """Replace the tables inside `entry`'s LSN range by one table of all their entries."""
        spans: list[tuple[int, int]] = []
        joined = self._drop_key_tables(txn, entry.first_lsn, entry.last_lsn, spans)
        ends = [entry.first_lsn - 1] + [last for _first, last in spans]
        if [first for first, _last in spans] != [end + 1 for end in ends[:-1]] or ends[-1] != entry.last_lsn:
            # a merged table missing some of its runs' versions would answer without them
            raise CatalogDamaged(f"the key tables of LSNs {entry.first_lsn}..{entry.last_lsn} do not cover the "
                                 f"segments being merged (found {spans})", path=self.path)
        count = sum(len(t) for t in joined) // ENTRY_SIZE
        self._put_key_table(txn, entry, count, chunk_rows(entry.first_lsn, merge_entries(joined)))

    # reading ---------------------------------------------------------------------
    def _table(self, key: bytes, raw: bytes | memoryview) -> KeyTable:
        first = self._key(TABLES_DB, key)
        last, first_ts, last_ts, entries = self._decode(TABLES_DB, key, raw, TABLE_ROW.unpack)
        if last < first:
            raise CatalogDamaged(f"catalog row keytables/{key.hex()} has an empty LSN range", path=self.path)
        return KeyTable(first, last, first_ts, last_ts, entries)

    def _chunk(self, cursor: lmdb.Cursor) -> bytes:
        key = bytes(cursor.key())
        return self._decode(CHUNKS_DB, key, cursor.value(), lambda p: check_chunk(key, p))

    def _key_tables(self, txn: lmdb.Transaction) -> list[KeyTable]:
        """Every key table, oldest first, checked once per catalog change against the segment rows."""
        cached = self._tables_cache
        if cached is not None and cached[0] == txn.id():
            return cached[1]
        tables = [self._table(bytes(k), v) for k, v in txn.cursor(self._dbs[TABLES_DB])]
        spans = [(t.first_lsn, t.last_lsn) for t in tables]
        segments = [self._decode(b"segments", k, v, SegmentEntry.decode) for k, v in txn.cursor(self._dbs[b"segments"])]
        if spans != [(s.first_lsn, s.last_lsn) for s in segments]:
            missing = sorted({(s.first_lsn, s.last_lsn) for s in segments} ^ set(spans))
            raise CatalogDamaged(f"the key index and the segment rows disagree about LSNs {missing[0][0]}.."
                                 f"{missing[0][1]} (a segment without its key table, or the reverse)", path=self.path)
        self._tables_cache = (txn.id(), tables)
        return tables

    def key_tables(self) -> list[KeyTable]:
        with self._txn("read") as txn:
            return list(self._key_tables(txn))

    def _versions_before(self, cursor: lmdb.Cursor, table: KeyTable, digest: bytes,
                         bound: bytes) -> Iterator[KeyVersion]:
        """Versions of `digest` in `table` whose entry sorts before `bound`, newest first."""
        prefix = U64BE.pack(table.first_lsn)
        found = cursor.prev() if cursor.set_range(prefix + bound) else cursor.last()
        target: bytes | None = bound
        while found and bytes(cursor.key()[:8]) == prefix:
            chunk = self._chunk(cursor)
            i = (first_at_or_after(chunk, target) if target is not None else len(chunk) // ENTRY_SIZE) - 1
            while i >= 0:
                entry = chunk[i * ENTRY_SIZE : (i + 1) * ENTRY_SIZE]
                if entry[:8] != digest:
                    return
                yield _version(entry)
                i -= 1
            target = None  # every entry of an earlier chunk sorts before the bound
            found = cursor.prev()

    def key_version_at(self, key: bytes, ts_ns: int, *, inclusive: bool = True,
                       skip: int = 0) -> KeyVersion | None:
        """The newest version of `key` with ts <= ts_ns (< when exclusive): one seek per table visited.

        `skip` steps further back (past versions of other keys with the same digest).
        """
        digest = self.key_digest(key)
        bound_ts = ts_ns + 1 if inclusive else ts_ns
        bound = search_prefix(digest, bound_ts)
        with self._txn("read") as txn:
            cursor = txn.cursor(self._dbs[CHUNKS_DB])
            for table in reversed(self._key_tables(txn)):
                if table.first_ts_ns >= bound_ts or table.entries == 0:
                    continue
                for version in self._versions_before(cursor, table, digest, bound):
                    if skip == 0:
                        return version
                    skip -= 1
        return None

    def key_versions(self, key: bytes, since_ns: int | None = None,
                     until_ns: int | None = None) -> Iterator[KeyVersion]:
        """Versions of `key` with since <= ts <= until, oldest first (other keys with its digest too)."""
        digest = self.key_digest(key)
        since = search_prefix(digest, since_ns if since_ns is not None else -(1 << 63))
        with self._txn("read") as txn:
            cursor = txn.cursor(self._dbs[CHUNKS_DB])
            for table in self._key_tables(txn):
                if table.entries == 0 or (until_ns is not None and table.first_ts_ns > until_ns) or \
                        (since_ns is not None and table.last_ts_ns < since_ns):
                    continue
                prefix = U64BE.pack(table.first_lsn)
                # start in the chunk before the first one at or after `since`: it may hold the first version
                if cursor.set_range(prefix + since):
                    if not (cursor.prev() and bytes(cursor.key()[:8]) == prefix):
                        cursor.set_range(prefix + since)
                    found = True
                else:
                    found = cursor.last()
                target: bytes | None = since
                while found and bytes(cursor.key()[:8]) == prefix:
                    chunk = self._chunk(cursor)
                    i = first_at_or_after(chunk, target) if target is not None else 0
                    target = None
                    for at in range(i * ENTRY_SIZE, len(chunk), ENTRY_SIZE):
                        entry = chunk[at : at + ENTRY_SIZE]
                        if entry[:8] != digest:
                            break
                        version = _version(entry)
                        if until_ns is not None and version.ts_ns > until_ns:
                            break
                        yield version
                    else:
                        found = cursor.next()
                        continue
                    break

    def key_index(self) -> Iterator[tuple[bytes, int, int, int]]:
        """Every entry as (digest + u64 ts + u64 LSN, LSN, kind, flags), table by table (verify compares them)."""
        with self._txn("read") as txn:
            tables = self._key_tables(txn)
            cursor = txn.cursor(self._dbs[CHUNKS_DB])
            for table in tables:
                prefix = U64BE.pack(table.first_lsn)
                found = cursor.set_range(prefix)
                count = 0
                while found and bytes(cursor.key()[:8]) == prefix:
                    chunk = self._chunk(cursor)
                    for at in range(0, len(chunk), ENTRY_SIZE):
                        digest, ts, lsn, kind, has_expiry = decode_entry(chunk[at : at + ENTRY_SIZE])
                        yield key_index_row(digest, ts, lsn), lsn, kind, int(has_expiry)
                    count += len(chunk) // ENTRY_SIZE
                    found = cursor.next()
                if count != table.entries:
                    raise CatalogDamaged(f"the key table of LSNs {table.first_lsn}..{table.last_lsn} holds {count} "
                                         f"entries, its directory row says {table.entries}", path=self.path)

    def key_table_payloads(self) -> Iterator[tuple[KeyTable, bytes]]:
        """Every table with its chunks' entries joined, oldest first (verify compares them with the
        tables it computes from the segments, byte for byte)."""
        with self._txn("read") as txn:
            tables = self._key_tables(txn)
            cursor = txn.cursor(self._dbs[CHUNKS_DB])
            for table in tables:
                prefix = U64BE.pack(table.first_lsn)
                found = cursor.set_range(prefix)
                parts = []
                while found and bytes(cursor.key()[:8]) == prefix:
                    parts.append(self._chunk(cursor))
                    found = cursor.next()
                payload = b"".join(parts)
                if len(payload) // ENTRY_SIZE != table.entries:
                    raise CatalogDamaged(f"the key table of LSNs {table.first_lsn}..{table.last_lsn} holds "
                                         f"{len(payload) // ENTRY_SIZE} entries, its directory row says "
                                         f"{table.entries}", path=self.path)
                yield table, payload

    def keys_count(self) -> int:
        """Key versions indexed (entries in every table)."""
        return sum(t.entries for t in self.key_tables())


def key_index_row(digest: bytes, ts_ns: int, lsn: int) -> bytes:
    """How `key_index` names an entry: digest, u64 time, u64 LSN (what verify recomputes from the files)."""
    return digest + U64BE.pack(ts_ns % (1 << 64)) + U64BE.pack(lsn)
