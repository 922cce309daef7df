"""Promotion: a standby stops following and becomes a writable store with a history of its own.

The promoted store gets a new store id, its history starting after the last LSN it applied, with
the followed history named as its parent (as a restore does): it can never archive into the
history it followed. The steps are recorded in the FOLLOWER marker first, so a promotion
interrupted at any point is finished by running it again, with the same new store id.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

from pitr.datadir.lock import WriterLock
from pitr.datadir.markers import Promotion, read_follower, remove_follower, write_follower
from pitr.datadir.state import StateDB, StoreIdentity
from pitr.errors import InvalidArgument, StoreLocked, file_error
from segments.chain import genesis


@dataclass(frozen=True, slots=True)
class Promoted:
    """The store a promotion made: its new history, and the followed one it branched from."""

    path: str
    store_id: uuid.UUID
    parent_store_id: uuid.UUID
    lsn: int  # the last commit applied from the followed history; the new history starts after it
    ts_ns: int
    repo: str


def promote(path: str, *, clock: Callable[[], int] = time.time_ns) -> Promoted:
    """Make the follower at `path` a writable store with a new history (blocking).

    Refused while a process holds the store (a running follower: `StoreLocked` naming its PID) and for a
    directory that is not a follower (`InvalidArgument`).
    """
    path = os.path.abspath(path)
    if not os.path.isfile(os.path.join(path, "state", "data.mdb")):
        raise InvalidArgument(f"{path}: no pitr store here (no state/data.mdb); name the standby's directory")
    if read_follower(path) is None:
        raise InvalidArgument(f"{path} is not a follower (no FOLLOWER marker): it is already a writable store")
    try:
        lock = WriterLock(path)
    except StoreLocked as exc:
        refusal = StoreLocked(path, exc.pid)
        refusal.hint = (f"its follower ({'process ' + str(exc.pid) if exc.pid else 'another process'}) is "
                        f"running: stop it, then run pitr promote {path} again")
        raise refusal from exc
    except OSError as exc:
        raise file_error(exc, path, "lock the standby") from exc
    try:
        marker = read_follower(path)  # again, holding the lock: a follower may have finished in between
        if marker is None:
            raise InvalidArgument(f"{path} is not a follower (no FOLLOWER marker): it is already a writable store")
        state = StateDB(os.path.join(path, "state"), create=False)
        try:
            current = state.identity()
            if current is None:
                raise InvalidArgument(f"{path}: the standby has no identity; restore it again")
            promotion = marker.promotion
            if promotion is None:
                lsn, ts_ns = state.checkpoint()
                promotion = Promotion(uuid.uuid4(), lsn, ts_ns)
                write_follower(path, replace(marker, promotion=promotion))
            parent = {"store_id": str(marker.source_store_id), "lsn": promotion.lsn, "ts_ns": promotion.ts_ns,
                      "target": f"promoted follower of {marker.repo}"}
            ident = StoreIdentity(promotion.store_id, current.name, clock(), promotion.lsn + 1,
                                  genesis(promotion.store_id), parent)
            state.init_identity(ident)  # the checkpoint keeps LSN promotion.lsn, its time is set next
            state.set_checkpoint(promotion.lsn, promotion.ts_ns)
            state.sync()
        finally:
            state.close()
        remove_follower(path)
    finally:
        lock.release()
    return Promoted(path, promotion.store_id, marker.source_store_id, promotion.lsn, promotion.ts_ns, marker.repo)
