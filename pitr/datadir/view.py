"""Checked reads of the live state: one LMDB read transaction, every row checked as it is read.

A row that fails its CRC-32C (`pitr.datadir.entries`) is refused with
`StateDamaged`. A key not found is checked too: the rows on either side of
where it would be (the cursor's insertion point and the row before it) must
pass their checksums and bracket the key in order. A garbled branch page that
sends a lookup to the wrong leaf, or a garbled key in the leaf, shows there,
instead of answering "not found" for a key the state holds.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from itertools import islice
from typing import TYPE_CHECKING, NoReturn, cast

import lmdb

from pitr.datadir.entries import Checkpoint, RowDamage, decode_checkpoint, decode_expiry, decode_value
from pitr.datadir.rowcodec import OUT_OF_ORDER, scan_rows
from pitr.errors import CorruptData, PitrError, StateDamaged, lmdb_error
from pitr.lmdbpages import check_lookup, check_pages

if TYPE_CHECKING:
    from pitr.datadir.state import StateDB

SCAN_BATCH = 1024  # rows a scan reads and checks per call of the row codec

STATE_HINT = ("the WAL and the repository are not damaged: restore the store from its repository "
              "(pitr restore --latest --dest NEW) and use NEW")


def show_key(key: bytes) -> str:
    """A key as an error message names it (shortened past 80 characters)."""
    text = repr(key)
    return text if len(text) <= 80 else text[:77] + "..."


def damaged(state_path: str, reason: str, key: bytes | None = None) -> StateDamaged:
    """`StateDamaged` naming the state's data file and the key."""
    where = "" if key is None else f" at key {show_key(key)}"
    return StateDamaged(f"the state database is damaged{where}: {reason}",
                        path=os.path.join(state_path, "data.mdb"), hint=STATE_HINT)


def state_lmdb_error(exc: Exception, state_path: str, operation: str) -> PitrError:
    """An LMDB error of the state, with damage reported as `StateDamaged`."""
    error = lmdb_error(exc, state_path, operation)
    if type(error) is CorruptData:
        return StateDamaged(f"the state database is damaged: {error.message}",
                            path=os.path.join(state_path, "data.mdb"), hint=STATE_HINT)
    return error


def is_live(expires: int | None, now_ns: int | None) -> bool:
    """Whether an entry with expiry `expires` is visible at `now_ns`: an expiry at or before it hides
    the entry; no expiry, or no moment (None: judge nothing), keeps it."""
    return expires is None or now_ns is None or expires > now_ns


def _item(cursor: lmdb.Cursor) -> tuple[bytes, bytes]:
    """The cursor's key and row (a view opens its transaction with `buffers=False`: bytes)."""
    return cast("tuple[bytes, bytes]", cursor.item())


class StateView:
    """A consistent view of the state, from `StateDB.read_view()`: valid inside its `with` block only,
    in the thread that opened it."""

    def __init__(self, state: StateDB, txn: lmdb.Transaction) -> None:
        self._state = state
        self._txn = txn
        self._walked = False

    def _check_lookup(self, db_name: bytes, key: bytes) -> None:
        """With page checks on (a read-only state), refuse a lookup whose pages are unsound before
        LMDB follows them (it trusts every offset and page number, and would crash the process)."""
        if self._state.checks_pages and not self._walked:
            problem = check_lookup(self._state.data_file, self._txn.id(), db_name, key)
            if problem is not None:
                self._damaged(problem, key if db_name == b"data" else None)

    def check_all_pages(self) -> None:
        """Walk every page of this view's tree once (before a scan of the whole state)."""
        if self._state.checks_pages and not self._walked:
            problem = check_pages(self._state.data_file, self._txn.id())
            if problem is not None:
                self._damaged(problem)
            self._walked = True

    def _damaged(self, reason: str, key: bytes | None = None) -> NoReturn:
        raise damaged(self._state.path, reason, key)

    def _decode(self, key: bytes, raw: bytes) -> tuple[bytes, int | None]:
        try:
            return decode_value(key, raw)
        except RowDamage as exc:
            self._damaged(str(exc), key)

    def stored_checkpoint(self) -> Checkpoint:
        """The checkpoint row this view sees: applied LSN and time, state digest and count."""
        self._check_lookup(b"meta", b"checkpoint")
        try:
            raw = cast("bytes | None", self._txn.get(b"checkpoint", db=self._state.meta))
        except lmdb.Error as exc:
            raise state_lmdb_error(exc, self._state.path, "read the checkpoint") from exc
        if raw is None:
            self._damaged("it has no checkpoint row")
        try:
            return decode_checkpoint(raw)
        except RowDamage as exc:
            self._damaged(str(exc))

    def checkpoint(self) -> tuple[int, int]:
        """(applied_lsn, applied_ts_ns) of the state this view sees."""
        cp = self.stored_checkpoint()
        return cp.applied_lsn, cp.applied_ts_ns

    def count(self) -> int:
        """How many keys the view holds (expired ones included)."""
        try:
            return int(self._txn.stat(self._state.data)["entries"])
        except lmdb.Error as exc:
            raise state_lmdb_error(exc, self._state.path, "read the LMDB state") from exc

    def get(self, key: bytes, now_ns: int | None) -> tuple[bytes, int | None] | None:
        """The value and expiry of `key`, or None; an expiry at or before now_ns hides it."""
        self._check_lookup(b"data", key)
        try:
            raw = cast("bytes | None", self._txn.get(key, db=self._state.data))
            if raw is None:
                self._check_miss(key)
                return None
        except lmdb.Error as exc:
            raise state_lmdb_error(exc, self._state.path, "read the LMDB state") from exc
        value, expires = self._decode(key, raw)
        return (value, expires) if is_live(expires, now_ns) else None

    def _check_miss(self, key: bytes) -> None:
        """Refuse unless the rows around where `key` would be pass their checks and bracket it."""
        cursor = self._txn.cursor(self._state.data)
        if cursor.set_range(key):
            after, raw = _item(cursor)
            self._decode(after, raw)
            if after <= key:
                self._damaged(f"a lookup did not find it, but the rows hold {show_key(after)} there", key)
            if cursor.prev():
                before, raw = _item(cursor)
                self._decode(before, raw)
                if before >= key:
                    self._damaged(f"the rows around it are out of order ({show_key(before)} before "
                                  f"{show_key(after)})", key)
        elif cursor.last():
            last, raw = _item(cursor)
            self._decode(last, raw)
            if last >= key:
                self._damaged(f"a lookup ran past the last row, {show_key(last)}, which does not sort before it",
                              key)

    def rows(self, start: bytes = b"", stop: bytes | None = None, *, prefix: bytes = b"",
             live_at: int | None = None) -> Generator[tuple[bytes, bytes, int | None], None, None]:
        """(key, value, expiry) from `start` in key order, before `stop` and while keys start with
        `prefix`; with `live_at`, without the keys expired at that moment. Every row is checked,
        with the rows just outside the range (so a damaged key at its edge shows)."""
        for batch in self._batches(start, stop, prefix, live_at, encode=False):
            yield from cast("list[tuple[bytes, bytes, int | None]]", batch)

    def encoded_rows(self, live_at: int | None = None) -> Generator[list[bytes], None, None]:
        """Every row, checked as `rows` checks it, as its snapshot entry encoding (what the state digest
        hashes), a batch at a time; with `live_at`, without the keys expired at that moment."""
        for batch in self._batches(b"", None, b"", live_at, encode=True):
            yield cast("list[bytes]", batch)

    def _batches(self, start: bytes, stop: bytes | None, prefix: bytes, live_at: int | None,
                 encode: bool) -> Generator[list[object], None, None]:
        self.check_all_pages()
        try:
            yield from self._scan(start, stop, prefix, live_at, encode)
        except lmdb.Error as exc:
            raise state_lmdb_error(exc, self._state.path, "read the LMDB state") from exc

    def _scan(self, start: bytes, stop: bytes | None, prefix: bytes, live_at: int | None,
              encode: bool) -> Iterator[list[object]]:
        start = max(start, prefix)  # a start before the prefix would stop at the first key outside it
        cursor = self._txn.cursor(self._state.data)
        decode = self._decode
        if not cursor.set_range(start):
            if cursor.last():
                last, raw = _item(cursor)
                decode(last, raw)
                if last >= start:
                    self._damaged(f"a scan from {show_key(start)} found nothing, but the last row sorts after it",
                                  last)
            return
        previous = b""  # below every key (keys are never empty)
        if cursor.prev():
            previous, raw = _item(cursor)
            decode(previous, raw)
            if previous >= start:
                self._damaged(f"the row before a scan's start {show_key(start)} does not sort before it", previous)
            cursor.next()
        rows = cast("Iterator[tuple[bytes, bytes]]", iter(cursor))
        # the rows are checked a batch at a time (pitr.datadir.rowcodec, compiled when built)
        while batch := list(islice(rows, SCAN_BATCH)):
            out, previous, ended, bad, why = scan_rows(batch, previous, stop, prefix, live_at, encode)
            if out:
                yield out
            if bad >= 0:
                key, raw = batch[bad]
                if why == OUT_OF_ORDER:
                    self._damaged(f"rows out of order ({show_key(previous)} before it)", key)
                decode(key, raw)  # says why the row is bad
                self._damaged("its row fails its checks", key)
            if ended:
                return

    def expiry_rows(self) -> Iterator[tuple[bytes, int]]:
        """(key, expiry) of every row of the expiry index, in key order, each checked."""
        self.check_all_pages()
        try:
            for key, raw in cast("Iterator[tuple[bytes, bytes]]", self._txn.cursor(self._state.expiry)):
                try:
                    yield key, decode_expiry(key, raw)
                except RowDamage as exc:
                    self._damaged(str(exc), key)
        except lmdb.Error as exc:
            raise state_lmdb_error(exc, self._state.path, "read the LMDB state") from exc
