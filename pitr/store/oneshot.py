"""One commit without an event loop: what `pitr put` and `pitr delete` do in a whole process.

`commit_once` opens the store as its writer (`StoreLog`: the lock, the WAL's
recovery after the checkpoint), gives the commit its LSN and time by
`Store._stamp`'s rules, writes and fsyncs it as one group, applies it to LMDB
and closes: the same record, LSN, time, state and checkpoint as
``async with Store(path) as s: await s.commit(ops)`` (tests/store/test_oneshot.py
holds the two equal). It spares a command that makes one commit the event loop,
its threads and their imports (docs/decisions.md, "Start-up: one commit
without an event loop").
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

from pitr.datadir.keys import check_key, check_put
from pitr.datadir.overlay import fold
from pitr.errors import FileError, InvalidArgument, PitrError, StoreClosed
from pitr.store.log import StoreLog
from pitr.store.options import StoreOptions
from segments import record as rec
from segments.fold import Change
from segments.record import PUT, Op
from segments.wal import WalFileOps


def commit_once(path: str, ops: tuple[Op, ...], options: StoreOptions | None = None, *,
                ttls: Mapping[int, int] | None = None, clock: Callable[[], int] | None = None,
                wal_ops: WalFileOps | None = None) -> tuple[int, int]:
    """Commit `ops` (each key and value checked first, as `Batch` checks them) as one durable record;
    `ttls` maps an op's index to a TTL in ns, an expiry from the commit's time. Returns (LSN, time)."""
    if not ops:
        raise InvalidArgument("a commit needs at least one operation")
    for op in ops:  # refused before the store is opened: nothing is written
        if op.kind == PUT:
            check_put(op.key, op.value)
        else:
            check_key(op.key)
    clock = clock or time.time_ns
    store_log = StoreLog(os.path.abspath(path), options or StoreOptions(), clock, wal_ops or WalFileOps())
    try:
        floor = store_log.last_ts if store_log.last_ts > store_log.promised_ns else store_log.promised_ns
        now = clock()
        lsn, ts = store_log.last_lsn + 1, (now if now > floor else floor + 1)
        if ttls:
            ops = tuple(Op(PUT, op.key, op.value, ts + ttls[i]) if i in ttls else op for i, op in enumerate(ops))
        try:
            if len(ops) == 1 and ops[0].expires_at_ns is None:
                data = rec.encode_single(lsn, ts, ops[0].kind, ops[0].key, ops[0].value)
            else:
                data = rec.encode_record(lsn, ts, ops)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from exc
        try:
            store_log.write_group(data, 1, lsn)
        except Exception as exc:  # noqa: BLE001 - a write or fsync failure, as the WAL thread reports it
            raise _not_acknowledged(store_log, exc, lsn) from exc
        changes: dict[bytes, Change] = {}
        fold(changes, ops)
        try:
            store_log.state.apply(changes, lsn, ts, store_log.wal_position(lsn))
        except PitrError as exc:
            exc.args = (f"{exc}; every commit through LSN {lsn} is durable in the WAL and is applied when "
                        f"the store is next opened",)
            raise
        store_log.remove_archived(lsn)
    finally:
        store_log.close()
    return lsn, ts


def _not_acknowledged(store_log: StoreLog, exc: Exception, lsn: int) -> BaseException:
    """The WAL write or fsync failure as `Store` reports it to the commit's writer."""
    error = store_log.translate_error(exc)
    if isinstance(error, FileError):
        return type(error)(f"commit at LSN {lsn} was not acknowledged: {error}", path=error.path,
                           operation=error.operation, errno=error.errno, hint=error.hint)
    return StoreClosed(f"{store_log.path}: commit at LSN {lsn} was not acknowledged: {error}")
