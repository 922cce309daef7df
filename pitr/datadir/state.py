"""The live state in LMDB: data, expiries and the checkpoint in one environment (format 2).

Sub-databases (row layout in `pitr.datadir.entries`, docs/format.md "State database v2"):
    data    key -> checked row: value and expiry
    expiry  key -> checked expiry, for the keys that have one (the index `drop_expired` walks)
    meta    format, store identity and the checkpoint (applied LSN and time, state digest, count)

Updates arrive as already-durable WAL commits, so LMDB is written in large,
key-sorted transactions off the commit path. The checkpoint, with the running
state digest of every row, is committed in the same transaction as the data
it covers. Reads check every row (`pitr.datadir.view`).
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from itertools import islice, repeat
from operator import itemgetter
from typing import NoReturn, cast

import lmdb

from pitr.datadir.changes import Entry, changed_rows
from pitr.datadir.entries import (
    DIGEST_MOD,
    FORMAT,
    Checkpoint,
    RowDamage,
    decode_checkpoint,
    decode_expiry,
    decode_format,
    decode_value,
    encode_checkpoint,
    encode_expiry,
    encode_format,
    encode_value,
)
from pitr.datadir.identity import StoreIdentity, decode_identity, encode_identity
from pitr.datadir.rowcodec import encode_rows, scan_rows
from pitr.datadir.view import StateView, damaged, is_live, state_lmdb_error
from pitr.errors import CorruptData, InvalidArgument
from pitr.lmdbfile import truncation_problem
from pitr.lmdbpages import check_open
from segments.fold import Change
from segments.snapshot_encode import digest_terms, encode_entries

__all__ = ["DEFAULT_MAP_SIZE", "I64BE", "MAX_KEY", "StateDB", "StateView", "StoreIdentity", "U64BE", "is_live"]

I64BE = struct.Struct(">q")
U64BE = struct.Struct(">Q")
DEFAULT_MAP_SIZE = 1 << 40
MAX_KEY = 511  # LMDB's compiled-in limit for keys
APPEND_BATCH = 4096  # rows encoded and hashed per pass of append_sorted
V1_HINT = ("rebuild it: pitr restore --latest --dest NEW from the store's repository, then use NEW; a store never "
           "archived can be moved with the older pitr's `pitr export` and this one's `pitr import` into a new store")
_ONLY_PLAIN = frozenset({bytes})  # the change types of a batch of puts without expiry


def _digest_of(entries: Sequence[Entry]) -> int:
    if not entries:
        return 0
    # columns by itemgetter, never zip(*entries): that makes one GC-tracked iterator per entry (see apply)
    keys, values, expiries = (list(map(itemgetter(i), entries)) for i in range(3))
    return digest_terms(encode_entries(keys, values, expiries))


class StateDB:
    """One LMDB environment holding a store's state."""

    def __init__(self, path: str, *, readonly: bool = False, map_size: int = DEFAULT_MAP_SIZE,
                 sync: bool = True, create: bool = True) -> None:
        """`sync=False` skips the fsync of each transaction: for a state that is built whole and
        synced once at the end (a restore), and thrown away if the build does not finish.
        A state it creates is private to the user (directory 0700, files 0600)."""
        self.path = path
        self._views_lock = threading.Lock()
        self._views_open = 0
        create = create and not readonly
        if create and not os.path.isdir(path):
            os.mkdir(path, 0o700)
        self.data_file = os.path.join(path, "data.mdb")
        self.checks_pages = readonly  # a writer trusts the pages it wrote; readers check what they follow
        problem = truncation_problem(path)
        if problem is None and readonly:
            problem = check_open(self.data_file, b"meta", b"format")
        if problem is not None:  # mapping it would end the process with SIGBUS, or worse
            self._damaged(problem)
        try:
            self.env = lmdb.open(
                path, map_size=map_size, max_dbs=4, readonly=readonly, subdir=True,
                metasync=False, sync=sync, writemap=False, readahead=False, max_readers=256,
                create=create, lock=True, mode=0o600,
            )
        except lmdb.Error as exc:
            raise state_lmdb_error(exc, path, "open the LMDB state") from exc
        try:
            self.data = self.env.open_db(b"data", create=create)
            self.expiry = self.env.open_db(b"expiry", create=create)
            self.meta = self.env.open_db(b"meta", create=create)
            self._check_format(writable=not readonly)
        except lmdb.Error as exc:
            self.env.close()
            raise state_lmdb_error(exc, path, "open the LMDB state") from exc
        except BaseException:
            self.env.close()
            raise

    def _damaged(self, reason: str, key: bytes | None = None) -> NoReturn:
        raise damaged(self.path, reason, key)

    def _check_format(self, writable: bool) -> None:
        """Refuse a state of another format; mark a new, empty one as format 2."""
        with self.env.begin(write=writable) as txn:
            raw = txn.get(b"format", db=self.meta)
            if raw is None:
                if txn.stat(self.meta)["entries"] or txn.stat(self.data)["entries"]:
                    raise CorruptData(f"{self.path}: the state database is format 1 (written by an older pitr, "
                                      f"without row checksums); this pitr reads format {FORMAT} only",
                                      path=self.path, hint=V1_HINT)
                if writable:
                    txn.put(b"format", encode_format(), db=self.meta)
                return
            try:
                version = decode_format(raw)
            except RowDamage as exc:
                self._damaged(str(exc))
            if version != FORMAT:
                raise CorruptData(f"{self.path}: the state database is format {version}; this pitr reads "
                                  f"format {FORMAT} only (a newer pitr wrote it?)", path=self.path, hint=V1_HINT)

    def close(self) -> None:
        self.env.close()

    # identity and checkpoint -------------------------------------------------
    def identity(self) -> StoreIdentity | None:
        try:
            with self.env.begin(db=self.meta) as txn:
                raw = txn.get(b"identity")
        except lmdb.Error as exc:
            raise state_lmdb_error(exc, self.path, "read the store identity") from exc
        if raw is None:
            return None
        try:
            return decode_identity(raw)
        except RowDamage as exc:
            self._damaged(str(exc))

    def init_identity(self, ident: StoreIdentity) -> None:
        try:
            with self.env.begin(write=True) as txn:
                txn.put(b"identity", encode_identity(ident), db=self.meta)
                cp = self._read_checkpoint(txn)
                self._put_checkpoint(txn, replace(cp, applied_lsn=ident.first_lsn - 1, applied_ts_ns=0,
                                                  wal_first_lsn=0, wal_offset=0))
        except lmdb.Error as exc:
            raise state_lmdb_error(exc, self.path, "create the store") from exc

    def checkpoint(self) -> tuple[int, int]:
        """(applied_lsn, applied_ts_ns): every commit up to applied_lsn is in the state."""
        with self.read_view() as view:
            return view.checkpoint()

    def stored_checkpoint(self) -> Checkpoint:
        """The whole checkpoint row: applied LSN and time, the running state digest and count."""
        with self.read_view() as view:
            return view.stored_checkpoint()

    # reads ---------------------------------------------------------------------
    @contextmanager
    def read_view(self) -> Iterator[StateView]:
        """One consistent view of the state (an LMDB read transaction) for the thread that opens it.

        Open, read and close it inside one call of one thread (one `to_thread.run_sync`), never
        across an await: an open view pins the pages it sees, so LMDB cannot reuse them.
        """
        try:
            txn = self.env.begin(buffers=False)
        except lmdb.Error as exc:
            raise state_lmdb_error(exc, self.path, "read the LMDB state") from exc
        view = StateView(self, txn)
        with self._views_lock:
            self._views_open += 1
        try:
            yield view
        finally:
            with self._views_lock:
                self._views_open -= 1
            try:
                txn.abort()
            except lmdb.Error as exc:
                raise state_lmdb_error(exc, self.path, "end a read of the LMDB state") from exc

    @property
    def views_open(self) -> int:
        """How many read views are open now (in any thread)."""
        return self._views_open

    def get(self, key: bytes, now_ns: int | None) -> tuple[bytes, int | None] | None:
        """The value and expiry of `key`, or None; an expiry at or before now_ns hides it."""
        with self.read_view() as view:
            return view.get(key, now_ns)

    def iter_range(self, start: bytes, stop: bytes | None) -> Iterator[tuple[bytes, bytes, int | None]]:
        """(key, value, expiry) for start <= key < stop in key order, from one read view: consume
        it in one thread, and close it (or exhaust it) before an await."""
        with self.read_view() as view:
            yield from view.rows(start, stop)

    def count(self) -> int:
        """How many keys the state holds (expired ones included until they are dropped)."""
        with self.read_view() as view:
            return view.count()

    def state_digest(self, now_ns: int | None) -> tuple[bytes, int]:
        """Order-independent digest and count of the entries visible at now_ns."""
        total = count = 0
        with self.read_view() as view:
            for encoded in view.encoded_rows(now_ns):
                total += digest_terms(encoded)
                count += len(encoded)
        return (total % DIGEST_MOD).to_bytes(32, "little"), count

    # writes --------------------------------------------------------------------
    def apply(self, changes: Mapping[bytes, Change], applied_lsn: int, applied_ts_ns: int,
              wal_position: tuple[int, int] | None = None) -> None:
        """Apply the final state of each changed key and move the checkpoint, in one transaction.

        A change is the value (no expiry) or (value, expiry) for a put, None for a delete.
        `wal_position` is (first LSN of the WAL file, byte offset) of the commit group that ends at
        `applied_lsn`, kept in the checkpoint as a hint for readers (who check it).
        """
        try:
            if set(map(type, changes.values())) <= _ONLY_PLAIN:
                # Columns, never a (key, value) tuple per key: an apply of N keys would allocate N
                # objects the cyclic GC tracks, bringing on young collections that move every commit
                # in flight into the old generation (docs/decisions.md, "The cyclic GC and the event
                # loop's stalls").
                keys = sorted(changes)
                values = cast(list[bytes], list(map(changes.__getitem__, keys)))
                self._apply_plain_columns(keys, values, applied_lsn, applied_ts_ns, wal_position or (0, 0))
            else:
                self._apply_sorted(sorted(changes.items()), applied_lsn, applied_ts_ns, wal_position or (0, 0))
        except lmdb.Error as exc:
            raise state_lmdb_error(exc, self.path, "apply commits to the LMDB state") from exc

    def _apply_sorted(self, items: list[tuple[bytes, Change]], applied_lsn: int, applied_ts_ns: int,
                      wal_position: tuple[int, int]) -> None:
        """Write `items` (key order) and the checkpoint, taking each old row's digest term out and the
        new row's in."""
        with self.env.begin(write=True) as txn:
            cp = self._read_checkpoint(txn)
            data, expiry = self.data, self.expiry
            rows, index, unindex, deletes, old, new = changed_rows(items, partial(txn.get, db=data), self._decode)
            if rows:
                txn.cursor(data).putmulti(rows, dupdata=False, overwrite=True)
            for key in deletes:
                txn.delete(key, db=data)
            for key in unindex:
                txn.delete(key, db=expiry)
            if index:
                txn.cursor(expiry).putmulti(index, dupdata=False, overwrite=True)
            total = (cp.digest_total + _digest_of(new) - _digest_of(old)) % DIGEST_MOD
            self._put_checkpoint(txn, Checkpoint(applied_lsn, applied_ts_ns, total, cp.count + len(new) - len(old),
                                                 *wal_position))

    def _apply_plain_columns(self, keys: list[bytes], values: list[bytes], applied_lsn: int, applied_ts_ns: int,
                             wal_position: tuple[int, int]) -> None:
        """`_apply_sorted` of puts without expiry (imports, most batches): the keys (in order) and their values: the old rows are checked and
        encoded for the digest, and the new rows encoded, by the row codec a batch at a time (its
        compiled twin when built); a damaged old row is refused as `_apply_plain_rows` refuses it."""
        with self.env.begin(write=True) as txn:
            cp = self._read_checkpoint(txn)
            olds = list(map(txn.get, keys, repeat(None), repeat(self.data)))
            found = [(key, raw) for key, raw in zip(keys, olds, strict=True) if raw is not None]
            old_entries, _, _, bad, _ = scan_rows(found, b"", None, b"", None, True)
            if bad >= 0:
                self._decode(*found[bad])  # raises: the row's damage, worded as every read words it
                raise AssertionError("the row codec and the row decoder disagree about a row")
            rows, new_entries = encode_rows(keys, values, [None] * len(keys))
            if keys:
                txn.cursor(self.data).putmulti(zip(keys, rows, strict=True), dupdata=False, overwrite=True)
            for key, raw in found:
                if raw[0]:  # the old row had an expiry: its index entry goes with it
                    txn.delete(key, db=self.expiry)
            new_terms = digest_terms(new_entries) if keys else 0
            old_terms = digest_terms(old_entries) if old_entries else 0  # type: ignore[arg-type]
            total = (cp.digest_total + new_terms - old_terms) % DIGEST_MOD
            self._put_checkpoint(txn, Checkpoint(applied_lsn, applied_ts_ns, total, cp.count + len(keys) - len(found),
                                                 *wal_position))

    def _apply_plain_rows(self, keys: list[bytes], values: list[bytes], applied_lsn: int, applied_ts_ns: int,
                          wal_position: tuple[int, int]) -> None:
        """The row-at-a-time form of `_apply_plain_columns` (what it replaced; kept as its reference)."""
        with self.env.begin(write=True) as txn:
            cp = self._read_checkpoint(txn)
            olds = list(map(txn.get, keys, repeat(None), repeat(self.data)))
            old: list[Entry] = []
            had_expiry: list[bytes] = []
            for key, raw in zip(keys, olds, strict=True):
                if raw is not None:
                    value, expires = self._decode(key, raw)
                    old.append((key, value, expires))
                    if expires is not None:
                        had_expiry.append(key)
            if keys:
                txn.cursor(self.data).putmulti(zip(keys, map(encode_value, keys, values, repeat(None)), strict=True),
                                               dupdata=False, overwrite=True)
            for key in had_expiry:
                txn.delete(key, db=self.expiry)
            new_terms = digest_terms(encode_entries(keys, values, [None] * len(keys))) if keys else 0
            total = (cp.digest_total + new_terms - _digest_of(old)) % DIGEST_MOD
            self._put_checkpoint(txn, Checkpoint(applied_lsn, applied_ts_ns, total, cp.count + len(keys) - len(old),
                                                 *wal_position))

    def append_sorted(self, puts: Iterable[tuple[bytes, bytes]], expiring: list[tuple[bytes, bytes]], *,
                      predict: bool = True) -> None:
        """Append entries whose keys all sort after the state's last key (restore), in one transaction.

        `puts` may be any iterable of (key, value); `expiring` holds (key, i64 big-endian expiry)
        for the puts that have one. Without `predict` (an empty state only) the rows are not
        hashed: the checkpoint's digest is left for `store_digest`, which the caller must call
        with the digest of the rows read back (`pitr.restore.receipt.receipt_of_append`).
        """
        expiries = {key: I64BE.unpack(raw)[0] for key, raw in expiring}
        try:
            with self.env.begin(write=True) as txn:
                cp = self._read_checkpoint(txn)
                if not predict and (cp.count or cp.digest_total):
                    raise InvalidArgument(f"{self.path}: rows are appended unhashed to an empty state only")
                total, count = cp.digest_total, cp.count
                cursor = txn.cursor(self.data)
                it = iter(puts)
                while batch := list(islice(it, APPEND_BATCH)):
                    keys, values = map(list, zip(*batch, strict=True))
                    exps: list[int | None] = [expiries.get(key) for key in keys] if expiries else [None] * len(keys)
                    rows, encoded = encode_rows(keys, values, exps)  # the rows and what the digest hashes
                    if predict:
                        total += digest_terms(encoded)
                    consumed, added = cursor.putmulti(zip(keys, rows, strict=True), append=True)
                    if added != len(batch):
                        raise InvalidArgument(f"{self.path}: appended keys do not sort after the state's last key")
                    count += added
                if expiries:
                    index = [(key, encode_expiry(key, expires)) for key, expires in expiries.items()]
                    txn.cursor(self.expiry).putmulti(sorted(index), append=True)
                self._put_checkpoint(txn, replace(cp, digest_total=total % DIGEST_MOD, count=count))
        except lmdb.Error as exc:
            raise state_lmdb_error(exc, self.path, "append to the LMDB state") from exc

    def append_rows(self, rows: list[tuple[bytes, bytes]], expiring: list[tuple[bytes, int]]) -> None:
        """Append encoded data rows (key, row) in key order to an empty state, unhashed, in one
        transaction (a restore's merged build, `pitr.datadir.build.sorted_rows`); `expiring` holds
        (key, expiry) of the rows that have one, in key order. As with `append_sorted(predict=False)`,
        the caller reads the rows back and stores their digest (`store_digest`)."""
        try:
            with self.env.begin(write=True) as txn:
                cp = self._read_checkpoint(txn)
                if cp.count or cp.digest_total or txn.stat(self.data)["entries"]:
                    raise InvalidArgument(f"{self.path}: rows are appended unhashed to an empty state only")
                _consumed, added = txn.cursor(self.data).putmulti(rows, append=True)
                if added != len(rows):
                    raise InvalidArgument(f"{self.path}: appended keys do not sort after the state's last key")
                if expiring:
                    index = [(key, encode_expiry(key, expires)) for key, expires in expiring]
                    txn.cursor(self.expiry).putmulti(index, append=True)
                self._put_checkpoint(txn, replace(cp, count=added))
        except lmdb.Error as exc:
            raise state_lmdb_error(exc, self.path, "append to the LMDB state") from exc

    def store_digest(self, digest_total: int, count: int) -> None:
        """Set the checkpoint's state digest (reduced) after an unhashed append, whose count it must match."""
        try:
            with self.env.begin(write=True) as txn:
                cp = self._read_checkpoint(txn)
                if cp.count != count:
                    self._damaged(f"its checkpoint counts {cp.count} keys, its rows read back {count}")
                self._put_checkpoint(txn, replace(cp, digest_total=digest_total % DIGEST_MOD))
        except lmdb.Error as exc:
            raise state_lmdb_error(exc, self.path, "write the checkpoint") from exc

    def set_checkpoint(self, applied_lsn: int, applied_ts_ns: int) -> None:
        try:
            with self.env.begin(write=True) as txn:
                cp = self._read_checkpoint(txn)
                self._put_checkpoint(txn, replace(cp, applied_lsn=applied_lsn, applied_ts_ns=applied_ts_ns,
                                                  wal_first_lsn=0, wal_offset=0))
        except lmdb.Error as exc:
            raise state_lmdb_error(exc, self.path, "write the checkpoint") from exc

    def drop_expired(self, cutoff_ns: int) -> int:
        """Delete every key whose expiry is at or before `cutoff_ns`, in one transaction; returns how many.

        Each doomed row is read and checked first: the index and the row must agree on its expiry."""
        try:
            with self.env.begin(write=True) as txn:
                cp = self._read_checkpoint(txn)
                doomed: list[Entry] = []
                for raw_key, raw in txn.cursor(self.expiry):
                    key = bytes(raw_key)
                    try:
                        expires = decode_expiry(key, bytes(raw))
                    except RowDamage as exc:
                        self._damaged(str(exc), key)
                    if is_live(expires, cutoff_ns):
                        continue
                    row = txn.get(key, db=self.data)
                    if row is None:
                        self._damaged("the expiry index names it, but it has no row", key)
                    value, row_expires = self._decode(key, row)
                    if row_expires != expires:
                        self._damaged(f"its row expires at {row_expires}, its expiry index says {expires}", key)
                    doomed.append((key, value, expires))
                for key, _value, _expires in doomed:
                    txn.delete(key, db=self.data)
                    txn.delete(key, db=self.expiry)
                if doomed:
                    total = (cp.digest_total - _digest_of(doomed)) % DIGEST_MOD
                    self._put_checkpoint(txn, replace(cp, digest_total=total, count=cp.count - len(doomed)))
        except lmdb.Error as exc:
            raise state_lmdb_error(exc, self.path, "drop expired keys from the LMDB state") from exc
        return len(doomed)

    def sync(self) -> None:
        """Flush every committed transaction to disk (for a state opened with `sync=False`)."""
        try:
            self.env.sync(True)
        except lmdb.Error as exc:
            raise state_lmdb_error(exc, self.path, "sync the LMDB state") from exc

    def _decode(self, key: bytes, raw: bytes) -> tuple[bytes, int | None]:
        try:
            return decode_value(key, raw)
        except RowDamage as exc:
            self._damaged(str(exc), key)

    def _read_checkpoint(self, txn: lmdb.Transaction) -> Checkpoint:
        """The checkpoint row inside a write transaction; an empty state starts from nothing."""
        raw = cast("bytes | None", txn.get(b"checkpoint", db=self.meta))
        if raw is None:
            if txn.stat(self.data)["entries"]:
                self._damaged("it holds rows but no checkpoint row")
            return Checkpoint(0, 0, 0, 0)
        try:
            return decode_checkpoint(raw)
        except RowDamage as exc:
            self._damaged(str(exc))

    def _put_checkpoint(self, txn: lmdb.Transaction, cp: Checkpoint) -> None:
        txn.put(b"checkpoint", encode_checkpoint(cp), db=self.meta)

