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
import threading
import uuid
from collections.abc import Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
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
_ONLY_PLAIN = frozenset({bytes})  # the change types of a batch of puts without expiry


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
        self._views_lock = threading.Lock()
        self._views_open = 0
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
        with self.read_view() as view:
            return view.checkpoint()

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
            raise lmdb_error(exc, self.path, "read the LMDB state") from exc
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
                raise lmdb_error(exc, self.path, "end a read of the LMDB state") from exc

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
        digest = StateDigest()
        with self.read_view() as view:
            for key, value, expires in view.rows(b"", None, live_at=now_ns):
                digest.add(key, value, expires)
        return digest.digest(), digest.count

    # writes --------------------------------------------------------------------
    def apply(self, changes: Mapping[bytes, Change], applied_lsn: int, applied_ts_ns: int) -> None:
        """Apply the final state of each changed key and move the checkpoint, in one transaction.

        A change is the value (no expiry) or (value, expiry) for a put, None for a delete.
        """
        if set(map(type, changes.values())) <= _ONLY_PLAIN:  # puts without expiry (imports): no Python per key
            plain_puts: list[tuple[bytes, bytes]] = sorted(changes.items())  # type: ignore[arg-type]
            try:
                self._apply_sorted(plain_puts, None, [], [], applied_lsn, applied_ts_ns)
            except lmdb.Error as exc:
                raise lmdb_error(exc, self.path, "apply commits to the LMDB state") from exc
            return
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

    def _apply_sorted(self, puts: list[tuple[bytes, bytes]], plain: list[bytes] | None,
                      expiring: list[tuple[bytes, bytes]], deletes: list[bytes], applied_lsn: int,
                      applied_ts_ns: int) -> None:
        """`plain` lists the keys of `puts` without expiry; None when every put is plain (then the
        list is only built if the state holds expiries it must remove)."""
        with self.env.begin(write=True) as txn:
            had_expiry = bool(txn.stat(self.expiry)["entries"]) or bool(expiring)
            if plain is None:
                plain = [key for key, _ in puts] if had_expiry else []
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
        try:
            with self.env.begin(write=True) as txn:
                txn.cursor(self.data).putmulti(puts, append=True)
                if expiring:
                    txn.cursor(self.expiry).putmulti(expiring, append=True)
        except lmdb.Error as exc:
            raise lmdb_error(exc, self.path, "append to the LMDB state") from exc

    def set_checkpoint(self, applied_lsn: int, applied_ts_ns: int) -> None:
        try:
            with self.env.begin(write=True) as txn:
                self._put_checkpoint(txn, applied_lsn, applied_ts_ns)
        except lmdb.Error as exc:
            raise lmdb_error(exc, self.path, "write the checkpoint") from exc

    def drop_expired(self, cutoff_ns: int) -> int:
        """Delete every key whose expiry is at or before `cutoff_ns`, in one transaction; returns how many."""
        try:
            with self.env.begin(write=True) as txn:
                doomed = [bytes(key) for key, raw in txn.cursor(self.expiry)
                          if not is_live(I64BE.unpack(raw)[0], cutoff_ns)]
                for key in doomed:
                    txn.delete(key, db=self.data)
                    txn.delete(key, db=self.expiry)
        except lmdb.Error as exc:
            raise lmdb_error(exc, self.path, "drop expired keys from the LMDB state") from exc
        return len(doomed)

    def sync(self) -> None:
        """Flush every committed transaction to disk (for a state opened with `sync=False`)."""
        try:
            self.env.sync(True)
        except lmdb.Error as exc:
            raise lmdb_error(exc, self.path, "sync the LMDB state") from exc

    def _put_checkpoint(self, txn: lmdb.Transaction, applied_lsn: int, applied_ts_ns: int) -> None:
        txn.put(b"applied_lsn", U64BE.pack(applied_lsn), db=self.meta)
        txn.put(b"applied_ts_ns", I64BE.pack(applied_ts_ns), db=self.meta)


def is_live(expires: int | None, now_ns: int | None) -> bool:
    """Whether an entry with expiry `expires` is visible at `now_ns`: an expiry at or before it hides
    the entry; no expiry, or no moment (None: judge nothing), keeps it."""
    return expires is None or now_ns is None or expires > now_ns


class StateView:
    """A consistent view of the state, from `StateDB.read_view()`: valid inside its `with` block only,
    in the thread that opened it."""

    def __init__(self, state: StateDB, txn: lmdb.Transaction) -> None:
        self._state = state
        self._txn = txn

    def checkpoint(self) -> tuple[int, int]:
        """(applied_lsn, applied_ts_ns) of the state this view sees."""
        path = self._state.path
        try:
            lsn = self._txn.get(b"applied_lsn", db=self._state.meta)
            ts = self._txn.get(b"applied_ts_ns", db=self._state.meta)
        except lmdb.Error as exc:
            raise lmdb_error(exc, path, "read the checkpoint") from exc
        if lsn is None or ts is None or len(lsn) != 8 or len(ts) != 8:
            raise CorruptData("state has no valid checkpoint", path=path,
                              hint="restore the store from its archive (pitr restore)")
        return U64BE.unpack(lsn)[0], I64BE.unpack(ts)[0]

    def count(self) -> int:
        """How many keys the view holds (expired ones included)."""
        try:
            return int(self._txn.stat(self._state.data)["entries"])
        except lmdb.Error as exc:
            raise lmdb_error(exc, self._state.path, "read the LMDB state") from exc

    def get(self, key: bytes, now_ns: int | None) -> tuple[bytes, int | None] | None:
        """The value and expiry of `key`, or None; an expiry at or before now_ns hides it."""
        try:
            value = self._txn.get(key, db=self._state.data)
            if value is None:
                return None
            raw = self._txn.get(key, db=self._state.expiry)
        except lmdb.Error as exc:
            raise lmdb_error(exc, self._state.path, "read the LMDB state") from exc
        expires = None if raw is None else I64BE.unpack(raw)[0]
        return (bytes(value), expires) if is_live(expires, now_ns) else None

    def rows(self, start: bytes = b"", stop: bytes | None = None, *, prefix: bytes = b"",
             live_at: int | None = None) -> Generator[tuple[bytes, bytes, int | None], None, None]:
        """(key, value, expiry) from `start` in key order, before `stop` and while keys start with
        `prefix`; with `live_at`, without the keys expired at that moment."""
        try:
            yield from self._rows(start, stop, prefix, live_at)
        except lmdb.Error as exc:
            raise lmdb_error(exc, self._state.path, "read the LMDB state") from exc

    def _rows(self, start: bytes, stop: bytes | None, prefix: bytes,
              live_at: int | None) -> Iterator[tuple[bytes, bytes, int | None]]:
        txn, state = self._txn, self._state
        expiry_cursor = txn.cursor(state.expiry)
        has_expiry = bool(txn.stat(state.expiry)["entries"])
        cursor = txn.cursor(state.data)
        if not cursor.set_range(start):
            return
        for raw_key, raw_value in cursor:
            key = bytes(raw_key)
            if (stop is not None and key >= stop) or (prefix and not key.startswith(prefix)):
                return
            expires = None
            if has_expiry:
                raw = expiry_cursor.get(key)
                if raw is not None:
                    expires = I64BE.unpack(raw)[0]
                    if not is_live(expires, live_at):
                        continue
            yield key, bytes(raw_value), expires
