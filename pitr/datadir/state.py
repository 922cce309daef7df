"""The live state in LMDB: data, expiries and the checkpoint (applied LSN) in one environment.

Sub-databases:
    data    key -> value
    expiry  key -> i64 big-endian absolute expiry (ns); only keys that have one
    meta    store identity and the checkpoint: applied_lsn, applied_ts_ns

Updates arrive as already-durable WAL commits, so LMDB is written in large,
key-sorted transactions off the commit path. The checkpoint is committed in
the same transaction as the data it covers.
"""

from __future__ import annotations

import json
import os
import struct
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import lmdb

from pitr.errors import CorruptData, lmdb_error
from pitr.lmdbfile import truncation_problem
from segments.fold import Change
from segments.snapshot import StateDigest

I64BE = struct.Struct(">q")
U64BE = struct.Struct(">Q")
DEFAULT_MAP_SIZE = 1 << 40
MAX_KEY = 511  # LMDB's compiled-in limit for keys



@dataclass(frozen=True, slots=True)
class StoreIdentity:
    """Who this store is: the history its LSNs belong to."""

    store_id: uuid.UUID
    name: str
    created_ns: int
    first_lsn: int  # the first LSN of this history (1, or restore point + 1)
    start_chain_digest: bytes  # chain digest before first_lsn
    parent: dict[str, Any] | None = None


class StateDB:
    """One LMDB environment holding a store's state."""

    def __init__(self, path: str, *, readonly: bool = False, map_size: int = DEFAULT_MAP_SIZE,
                 sync: bool = True, create: bool = True) -> None:
        """`sync=False` skips the fsync of each transaction: for a state that is built whole and
        synced once at the end (a restore), and thrown away if the build does not finish.
        A state it creates is private to the user (directory 0700, files 0600)."""
        self.path = path
        create = create and not readonly
        if create and not os.path.isdir(path):
            os.mkdir(path, 0o700)
        problem = truncation_problem(path)
        if problem is not None:  # mapping it would end the process with SIGBUS
            raise CorruptData(problem, path=path, hint="the store's state is damaged: restore it from the "
                              "archive (pitr restore --latest --dest NEW), then use NEW")
        try:
            self.env = lmdb.open(
                path, map_size=map_size, max_dbs=4, readonly=readonly, subdir=True,
                metasync=False, sync=sync, writemap=False, readahead=False, max_readers=256,
                create=create, lock=True, mode=0o600,
            )
        except lmdb.Error as exc:
            raise lmdb_error(exc, path, "open the LMDB state") from exc
        try:
            self.data = self.env.open_db(b"data", create=create)
            self.expiry = self.env.open_db(b"expiry", create=create)
            self.meta = self.env.open_db(b"meta", create=create)
        except lmdb.Error as exc:
            self.env.close()
            raise lmdb_error(exc, path, "open the LMDB state") from exc

    def close(self) -> None:
        self.env.close()

    # identity and checkpoint -------------------------------------------------
    def identity(self) -> StoreIdentity | None:
        try:
            with self.env.begin(db=self.meta) as txn:
                raw = txn.get(b"identity")
        except lmdb.Error as exc:
            raise lmdb_error(exc, self.path, "read the store identity") from exc
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            ident = StoreIdentity(uuid.UUID(doc["store_id"]), doc["name"], doc["created_ns"], doc["first_lsn"],
                                  bytes.fromhex(doc["start_chain_digest"]), doc.get("parent"))
            if not (isinstance(ident.name, str) and type(ident.created_ns) is int and type(ident.first_lsn) is int
                    and ident.first_lsn >= 1 and (ident.parent is None or isinstance(ident.parent, dict))):
                raise ValueError("a field has the wrong type")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CorruptData(f"the store identity is damaged ({exc})", path=self.path,
                              hint="restore the store from its archive (pitr restore)") from exc
        return ident

    def init_identity(self, ident: StoreIdentity) -> None:
        doc = {"store_id": str(ident.store_id), "name": ident.name, "created_ns": ident.created_ns,
               "first_lsn": ident.first_lsn, "start_chain_digest": ident.start_chain_digest.hex(),
               "parent": ident.parent}
        try:
            with self.env.begin(write=True, db=self.meta) as txn:
                txn.put(b"identity", json.dumps(doc).encode())
                txn.put(b"applied_lsn", U64BE.pack(ident.first_lsn - 1))
                txn.put(b"applied_ts_ns", I64BE.pack(0))
        except lmdb.Error as exc:
            raise lmdb_error(exc, self.path, "create the store") from exc

    def checkpoint(self) -> tuple[int, int]:
        """(applied_lsn, applied_ts_ns): every commit up to applied_lsn is in the state."""
        try:
            with self.env.begin(db=self.meta) as txn:
                lsn = txn.get(b"applied_lsn")
                ts = txn.get(b"applied_ts_ns")
        except lmdb.Error as exc:
            raise lmdb_error(exc, self.path, "read the checkpoint") from exc
        if lsn is None or ts is None or len(lsn) != 8 or len(ts) != 8:
            raise CorruptData("state has no valid checkpoint", path=self.path,
                              hint="restore the store from its archive (pitr restore)")
        return U64BE.unpack(lsn)[0], I64BE.unpack(ts)[0]

    # reads ---------------------------------------------------------------------
    def get(self, key: bytes, now_ns: int | None) -> tuple[bytes, int | None] | None:
        """The value and expiry of `key`, or None; an expiry at or before now_ns hides it."""
        try:
            with self.env.begin() as txn:
                return self.read_in(txn, key, now_ns)
        except lmdb.Error as exc:
            raise lmdb_error(exc, self.path, "read the LMDB state") from exc

    def read_in(self, txn: lmdb.Transaction, key: bytes, now_ns: int | None) -> tuple[bytes, int | None] | None:
        """`get` inside a read transaction the caller holds (a reader's consistent view)."""
        value = txn.get(key, db=self.data)
        if value is None:
            return None
        raw = txn.get(key, db=self.expiry)
        expires = None if raw is None else I64BE.unpack(raw)[0]
        if expires is not None and now_ns is not None and expires <= now_ns:
            return None
        return bytes(value), expires

    def iter_range(self, start: bytes, stop: bytes | None) -> Iterator[tuple[bytes, bytes, int | None]]:
        """(key, value, expiry) for start <= key < stop in key order, from one read transaction."""
        try:
            yield from self._iter_range(start, stop)
        except lmdb.Error as exc:
            raise lmdb_error(exc, self.path, "read the LMDB state") from exc

    def _iter_range(self, start: bytes, stop: bytes | None) -> Iterator[tuple[bytes, bytes, int | None]]:
        with self.env.begin() as txn:
            yield from self.rows_in(txn, start, stop)

    def rows_in(self, txn: lmdb.Transaction, start: bytes, stop: bytes | None, *,
                prefix: bytes = b"") -> Iterator[tuple[bytes, bytes, int | None]]:
        """(key, value, expiry) from `start` in key order, before `stop` and while keys start with
        `prefix`, inside a read transaction the caller holds."""
        expiry_cursor = txn.cursor(self.expiry)
        has_expiry = bool(txn.stat(self.expiry)["entries"])
        cursor = txn.cursor(self.data)
        if not cursor.set_range(start):
            return
        for raw_key, raw_value in cursor:
            key = bytes(raw_key)
            if (stop is not None and key >= stop) or (prefix and not key.startswith(prefix)):
                return
            expires = None
            if has_expiry:
                raw = expiry_cursor.get(key)
                expires = None if raw is None else I64BE.unpack(raw)[0]
            yield key, bytes(raw_value), expires

    def state_digest(self, now_ns: int | None) -> tuple[bytes, int]:
        """Order-independent digest and count of the entries visible at now_ns."""
        digest = StateDigest()
        for key, value, expires in self.iter_range(b"", None):
            if expires is not None and now_ns is not None and expires <= now_ns:
                continue
            digest.add(key, value, expires)
        return digest.digest(), digest.count

    # writes --------------------------------------------------------------------
    def apply(self, changes: Mapping[bytes, Change], applied_lsn: int, applied_ts_ns: int) -> None:
        """Apply the final state of each changed key and move the checkpoint, in one transaction.

        A change is the value (no expiry) or (value, expiry) for a put, None for a delete.
        """
        puts: list[tuple[bytes, bytes]] = []
        expiring: list[tuple[bytes, bytes]] = []
        plain: list[bytes] = []
        deletes: list[bytes] = []
        for key in sorted(changes):
            change = changes[key]
            if change is None:
                deletes.append(key)
            elif isinstance(change, bytes):
                puts.append((key, change))
                plain.append(key)
            else:
                value, expires = change
                puts.append((key, value))
                expiring.append((key, I64BE.pack(expires)))
        try:
            self._apply_sorted(puts, plain, expiring, deletes, applied_lsn, applied_ts_ns)
        except lmdb.Error as exc:
            raise lmdb_error(exc, self.path, "apply commits to the LMDB state") from exc

    def _apply_sorted(self, puts: list[tuple[bytes, bytes]], plain: list[bytes],
                      expiring: list[tuple[bytes, bytes]], deletes: list[bytes], applied_lsn: int,
                      applied_ts_ns: int) -> None:
        with self.env.begin(write=True) as txn:
            had_expiry = bool(txn.stat(self.expiry)["entries"]) or bool(expiring)
            if puts:
                txn.cursor(self.data).putmulti(puts, dupdata=False, overwrite=True)
            for key in deletes:
                txn.delete(key, db=self.data)
            if had_expiry:
                for key in deletes:
                    txn.delete(key, db=self.expiry)
                for key in plain:
                    txn.delete(key, db=self.expiry)
                if expiring:
                    txn.cursor(self.expiry).putmulti(expiring, dupdata=False, overwrite=True)
            self._put_checkpoint(txn, applied_lsn, applied_ts_ns)

    def append_sorted(self, puts: Iterable[tuple[bytes, bytes]], expiring: list[tuple[bytes, bytes]]) -> None:
        """Append entries whose keys all sort after the state's last key (restore), in one transaction.

        `puts` may be any iterable (LMDB consumes it without a Python step per entry);
        `expiring` holds (key, i64 big-endian expiry) for the puts that have one.
        """
        with self.env.begin(write=True) as txn:
            txn.cursor(self.data).putmulti(puts, append=True)
            if expiring:
                txn.cursor(self.expiry).putmulti(expiring, append=True)

    def set_checkpoint(self, applied_lsn: int, applied_ts_ns: int) -> None:
        with self.env.begin(write=True) as txn:
            self._put_checkpoint(txn, applied_lsn, applied_ts_ns)

    def _put_checkpoint(self, txn: lmdb.Transaction, applied_lsn: int, applied_ts_ns: int) -> None:
        txn.put(b"applied_lsn", U64BE.pack(applied_lsn), db=self.meta)
        txn.put(b"applied_ts_ns", I64BE.pack(applied_ts_ns), db=self.meta)
