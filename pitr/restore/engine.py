"""Building a restored state: load the base snapshot, replay the log to the target (synchronous)."""

from __future__ import annotations

import os
import resource
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pitr.errors import CorruptData
from pitr.restore.plan import RestorePlan
from pitr.store._state import I64BE, StateDB, StoreIdentity
from pitr.store._wal_dir import to_corrupt
from segments import SegmentsError
from segments.chain import genesis
from segments.fold import Change, fold_records
from segments.segment_reader import SegmentReader
from segments.snapshot import SnapshotReader
from segments.source import RangeSource

MAX_CHANGES = 4_000_000  # changed keys held in memory before the replay spills them into LMDB
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What a finished restore produced."""

    dest: str
    store_id: uuid.UUID
    target_lsn: int
    target_ts_ns: int
    base_lsn: int
    commits_replayed: int
    keys: int
    expired_dropped: int
    seconds: float
    peak_rss_bytes: int


def build_state(state_dir: str, plan: RestorePlan, snapshot: RangeSource | None,
                segments: list[RangeSource], *, name: str, progress: Progress | None = None,
                clock: Callable[[], int] = time.time_ns) -> RestoreResult:
    """Write the state at `plan.target_lsn` into a new LMDB at `state_dir`."""
    started = time.monotonic()
    new_id = uuid.uuid4()
    parent = {"store_id": str(plan.identity.store_id), "lsn": plan.target_lsn, "ts_ns": plan.target_ts_ns,
              "target": plan.target.describe()}
    ident = StoreIdentity(new_id, name, clock(), plan.target_lsn + 1, genesis(new_id), parent)
    state = StateDB(state_dir)
    try:
        state.init_identity(ident)
        entries = iter(SnapshotReader(snapshot).iter_entries()) if snapshot is not None else iter(())
        spilled = False  # the changes outgrew memory: the base went to LMDB and changes are applied there
        expected = plan.base.lsn + 1
        changes: dict[bytes, Change] = {}
        last_ts = plan.base.ts_ns
        total = plan.commits_to_replay
        for source in segments:
            if expected > plan.target_lsn:
                break
            seg = SegmentReader(source)
            first_block = seg.block_for_lsn(max(expected, seg.meta.first_lsn))
            for i in range(first_block, len(seg.meta.index)):
                raw = seg.read_block(i)
                # read_block checked the block's CRC over exactly these bytes: no per-record CRC needed
                expected, ts, stopped = fold_records(raw, changes, expected, plan.target_lsn,
                                                     (1 << 63) - 1, path=source.name, check_crc=False)
                if ts is not None:
                    last_ts = ts
                if len(changes) >= MAX_CHANGES:
                    if not spilled:
                        state.load_sorted(entries, plan.base.lsn, plan.base.ts_ns)
                        spilled = True
                    state.apply(changes, expected - 1, last_ts)
                    changes = {}
                if progress is not None:
                    progress("replay", expected - 1 - plan.base.lsn, total)
                if stopped or expected > plan.target_lsn:
                    break
        if expected - 1 != plan.target_lsn:
            raise CorruptData(f"replay ended at LSN {expected - 1}, before the target LSN {plan.target_lsn}",
                              lsn=expected, hint="run pitr verify on the repository")
        final_ts = max(last_ts, plan.target_ts_ns)
        if spilled:
            state.apply(changes, plan.target_lsn, final_ts)
            changes = {}
            expired = _drop_expired(state, plan.cutoff_ns)
        else:
            # One pass over the sorted base, taking each key's change from the map as it goes, appended
            # to a fresh LMDB; the keys the base did not have are inserted afterwards.
            counter = [0]
            state.load_sorted(_over_base(entries, changes, plan.cutoff_ns, counter), plan.target_lsn, final_ts)
            new_keys: dict[bytes, Change] = {}
            for key, change in changes.items():
                if change is None:
                    continue
                if change[1] is not None and change[1] <= plan.cutoff_ns:
                    counter[0] += 1
                else:
                    new_keys[key] = change
            changes = {}
            if new_keys:
                state.apply(new_keys, plan.target_lsn, final_ts)
            expired = counter[0]
        keys = _count(state)
        state.env.sync(True)
    except SegmentsError as exc:
        raise to_corrupt(exc) from exc
    finally:
        state.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return RestoreResult(os.path.dirname(state_dir), new_id, plan.target_lsn, plan.target_ts_ns,
                         plan.base.lsn, plan.commits_to_replay, keys, expired,
                         time.monotonic() - started, rss)


_KEEP = object()


def _over_base(base: Iterator[tuple[bytes, bytes, int | None]], changes: dict[bytes, Change],
               cutoff_ns: int, expired: list[int]) -> Iterator[tuple[bytes, bytes, int | None]]:
    """The base entries with their changes applied (and removed from `changes`), in key order,
    without keys expired at the cutoff."""
    take = changes.pop
    for key, value, expires in base:
        change = take(key, _KEEP)
        if change is not _KEEP:
            if change is None:
                continue
            value, expires = change  # type: ignore[misc]
        if expires is not None and expires <= cutoff_ns:
            expired[0] += 1
            continue
        yield key, value, expires


def _drop_expired(state: StateDB, cutoff_ns: int) -> int:
    """Remove keys whose expiry is at or before the target moment."""
    doomed: list[bytes] = []
    with state.env.begin() as txn:
        for key, raw in txn.cursor(state.expiry):
            if I64BE.unpack(raw)[0] <= cutoff_ns:
                doomed.append(bytes(key))
    if doomed:
        with state.env.begin(write=True) as txn:
            for key in doomed:
                txn.delete(key, db=state.data)
                txn.delete(key, db=state.expiry)
    return len(doomed)


def _count(state: StateDB) -> int:
    with state.env.begin() as txn:
        return int(txn.stat(state.data)["entries"])
