"""Building a restored state: load the base snapshot, replay the log to the target (synchronous)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from contextlib import closing, nullcontext
from dataclasses import dataclass
from itertools import islice

from pitr.datadir.build import SortedRows, sorted_rows
from pitr.datadir.overlay import visible
from pitr.datadir.state import I64BE, StateDB, StoreIdentity
from pitr.errors import file_error, to_corrupt
from pitr.gcpause import gc_paused
from pitr.memory import peak_rss_bytes
from pitr.progress import ByteCounter
from pitr.restore.base import BaseSnapshot
from pitr.restore.destination import Replacement
from pitr.restore.plan import RestorePlan, SkippedBase
from pitr.restore.receipt import check_base_digest, receipt_digest, receipt_of_append
from pitr.restore.replay import replay_log
from segments import SegmentsError
from segments import record as rec
from segments.block_seal import SegmentKeys
from segments.chain import genesis
from segments.fold import Change
from segments.snapshot import SnapshotReader
from segments.source import RangeSource

MAX_CHANGES = 4_000_000  # changed keys held in memory before the replay spills them into LMDB
MAX_MERGED = 4_000_000  # base entries + changes merged in a dict; a larger base is streamed
LOAD_CHUNK = 100_000  # entries per LMDB transaction when loading the base
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
    base_snapshot: str | None = None  # None: the start of the history
    replaced: Replacement | None = None  # what a forced restore replaced at dest
    skipped: tuple[SkippedBase, ...] = ()  # damaged bases passed over
    notes: tuple[str, ...] = ()
    state_digest: bytes | None = None  # the restore receipt (pitr.restore.receipt)


def build_state(state_dir: str, plan: RestorePlan, snapshot: RangeSource | None,
                segments: list[RangeSource], *, name: str, progress: Progress | None = None,
                clock: Callable[[], int] = time.time_ns, pause_gc: bool = False,
                verify: bool = True, segment_keys: SegmentKeys | None = None) -> RestoreResult:
    """Write the state at `plan.target_lsn` into a new LMDB at `state_dir` (reading sealed segments
    with an encrypted repository's `segment_keys`).

    With `verify`, every planned segment is checked whole as it is read (`replay_log`): a
    damaged one raises CorruptData before anything is built on it, and the caller publishes
    nothing. So is the base snapshot, as the build reads it (`pitr.restore.base`): damage there
    raises `BaseDamaged`, and the caller falls back to an older base.

    `pause_gc` pauses Python's cyclic garbage collector for the whole process while it builds
    (`pitr.gcpause`): a command line that owns its process opts in; a library caller decides.

    `progress` hears ("restore", bytes read, bytes planned): the planned files' bytes, counted as
    they are read, so the base snapshot weighs what it costs.
    """
    started = time.monotonic()
    counter = ByteCounter("restore", sum(s.size for s in segments) + (snapshot.size if snapshot else 0), progress)
    snapshot = None if snapshot is None else counter.counting(snapshot)
    segments = [counter.counting(s) for s in segments]
    new_id = uuid.uuid4()
    parent = {"store_id": str(plan.identity.store_id), "lsn": plan.target_lsn, "ts_ns": plan.target_ts_ns,
              "target": plan.target.describe()}
    ident = StoreIdentity(new_id, name, clock(), plan.target_lsn + 1, genesis(new_id), parent)
    state = StateDB(state_dir, sync=False)  # synced once, when complete; discarded if not
    try:
        with gc_paused() if pause_gc else nullcontext():
            state.init_identity(ident)
            # a verified build checks its base as it reads it (pitr.restore.base): each block read once
            base = None if snapshot is None else BaseSnapshot(SnapshotReader(snapshot, keys=segment_keys),
                                                              check=verify)
            spilled = False

            def spill(changes: dict[bytes, Change], lsn: int, ts_ns: int) -> None:
                nonlocal spilled
                if not spilled and base is None:
                    spilled = True
                    _append_first(state, changes, lsn, ts_ns)
                    return
                if not spilled:
                    _load_base(state, base, plan)
                    spilled = True
                state.apply(changes, lsn, ts_ns)

            changes = replay_log(plan, segments, verify=verify, max_changes=MAX_CHANGES, spill=spill,
                                 keys=segment_keys)
            final_ts = max(plan.target_ts_ns, plan.base.ts_ns)
            written: SortedRows | None = None
            if spilled:
                state.apply(changes, plan.target_lsn, final_ts)
                changes = {}
                expired = state.drop_expired(plan.cutoff_ns)
            else:
                expired, written = _load_final(state, base, changes, plan.cutoff_ns, plan.target_lsn, final_ts)
            keys = state.count()
            # the receipt: read back through the rows' checks, against the running digest, or (one
            # unhashed append) entry for entry against the merged map, hashed in the same pass
            digest = receipt_digest(state) if written is None else receipt_of_append(state, written)
            del written
            state.sync()
            counter.finish()
    except SegmentsError as exc:
        raise to_corrupt(exc) from exc
    except OSError as exc:
        raise file_error(exc, state_dir, "write the restored state") from exc
    finally:
        state.close()
    rss = peak_rss_bytes()
    return RestoreResult(os.path.dirname(state_dir), new_id, plan.target_lsn, plan.target_ts_ns,
                         plan.base.lsn, plan.commits_to_replay, keys, expired,
                         time.monotonic() - started, rss, plan.base.snapshot, None, plan.skipped, plan.notes,
                         digest)


def _load_base(state: StateDB, base: BaseSnapshot | None, plan: RestorePlan) -> None:
    """The base as it is, expired keys included (judged after the replay), with its checkpoint."""
    if base is not None:
        with closing(_base_with_changes(base, {})) as entries:  # its read-ahead thread stops on errors
            _append_in_key_order(state, entries, rec.MIN_I64 - 1)  # nothing expires
        check_base_digest(state, base.footer.state_digest, plan.base.snapshot or "snapshot")
    state.set_checkpoint(plan.base.lsn, plan.base.ts_ns)


def _append_first(state: StateDB, changes: dict[bytes, Change], lsn: int, ts_ns: int) -> None:
    """The first spill of a build without a base: the map appended to the empty state in key order
    (keys that will have expired kept: the build drops them at the end), read back against the map
    and hashed, which starts the running digest the later changes move. Empties `changes`."""
    built = sorted_rows(changes, None)
    changes.clear()
    state.append_rows(built.rows, built.expiring)
    built.rows.clear()
    receipt_of_append(state, built)  # stores the digest of the rows read back in the checkpoint
    state.set_checkpoint(lsn, ts_ns)


def _load_final(state: StateDB, base: BaseSnapshot | None, changes: dict[bytes, Change],
                cutoff_ns: int, lsn: int, ts_ns: int) -> tuple[int, SortedRows | None]:
    """Write the base with `changes` applied into the empty state, without keys expired at the
    cutoff, and set the checkpoint; returns how many keys expired, and the entries of an unhashed
    append (for `receipt_of_append`) or None when the running digest was kept. Empties `changes`."""
    if base is not None and base.footer.entry_count + len(changes) > MAX_MERGED:
        # a large base is streamed: each of its keys takes its change out of the map
        with closing(_base_with_changes(base, changes)) as entries:
            expired = _append_in_key_order(state, entries, cutoff_ns)
        new_keys = {key: change for key, change in changes.items() if change is not None}
        changes.clear()
        expired += drop_expiring(new_keys, cutoff_ns)
        state.apply(new_keys, lsn, ts_ns)  # sorts them, and sets the checkpoint
        return expired, None
    merged = _merge_base(base, changes)
    built = sorted_rows(merged, cutoff_ns)  # in key order: appended, not inserted
    merged.clear()
    changes.clear()
    state.append_rows(built.rows, built.expiring)  # hashed once, as the receipt reads the rows back
    built.rows.clear()  # the receipt compares the rows read back with the map's own entries
    state.set_checkpoint(lsn, ts_ns)
    return built.expired, built


def _merge_base(base: BaseSnapshot | None, changes: dict[bytes, Change]) -> dict[bytes, Change]:
    """The base's entries with `changes` applied over them (one C-level `dict.update` each); or
    `changes` itself when there is no base. (`sorted_rows` then sorts them and makes the rows the
    receipt compares, entry for entry, with this map.)"""
    if base is None:
        return changes
    merged: dict[bytes, Change] = {}
    with closing(base.blocks()) as blocks:  # checked as read, when the plan says so
        for entries in blocks:
            merged.update(entries)
    merged.update(changes)
    return merged


_KEEP = object()


def _base_with_changes(base: BaseSnapshot,
                       changes: dict[bytes, Change]) -> Generator[tuple[bytes, Change], None, None]:
    """(key, change) for every base key in key order, its change taken out of `changes` if it has one."""
    take = changes.pop
    with closing(base.blocks()) as blocks:
        for entries in blocks:
            for key, change in entries:
                newer = take(key, _KEEP)
                yield (key, change) if newer is _KEEP else (key, newer)  # type: ignore[misc]


def _append_in_key_order(state: StateDB, items: Iterator[tuple[bytes, Change]], cutoff_ns: int) -> int:
    """Append (key, change) pairs sorted by key to the state, skipping deletes and keys expired
    at the cutoff; returns how many expired."""
    expired = 0
    while chunk := list(islice(items, LOAD_CHUNK)):
        puts, expiring, dropped = split_live(chunk, cutoff_ns)
        state.append_sorted(puts, expiring)
        expired += dropped
    return expired


# The hot paths below copy the rule of `pitr.datadir.overlay.visible` (a delete is absent; a put
# whose expiry is at or before the cutoff is expired) into one loop each; their reference
# functions state it per entry, and tests/restore/test_engine_seams.py holds them equal.

def split_live(chunk: list[tuple[bytes, Change]],
               cutoff_ns: int) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]], int]:
    """The LMDB rows of the changes still live at the cutoff: (key, value) puts, (key, i64
    big-endian expiry) for the puts that have one, and how many puts had expired."""
    pack = I64BE.pack
    puts: list[tuple[bytes, bytes]] = []
    expiring: list[tuple[bytes, bytes]] = []
    expired = 0
    for key, change in chunk:
        if change is None:
            continue
        if isinstance(change, bytes):
            puts.append((key, change))
            continue
        value, expires = change
        if expires <= cutoff_ns:
            expired += 1
            continue
        expiring.append((key, pack(expires)))
        puts.append((key, value))
    return puts, expiring, expired


def split_live_reference(chunk: list[tuple[bytes, Change]],
                         cutoff_ns: int) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]], int]:
    """`split_live`, one entry at a time through `visible`."""
    puts: list[tuple[bytes, bytes]] = []
    expiring: list[tuple[bytes, bytes]] = []
    expired = 0
    for key, change in chunk:
        shown = visible(change, cutoff_ns)
        if shown is None:
            expired += change is not None
            continue
        value, expires = shown
        puts.append((key, value))
        if expires is not None:
            expiring.append((key, I64BE.pack(expires)))
    return puts, expiring, expired


def drop_expiring(changes: dict[bytes, bytes | tuple[bytes, int]], cutoff_ns: int) -> int:
    """Remove from `changes` the puts whose expiry is at or before the cutoff; returns how many."""
    doomed = [key for key, change in changes.items()
              if isinstance(change, tuple) and change[1] <= cutoff_ns]
    for key in doomed:
        del changes[key]
    return len(doomed)


def drop_expiring_reference(changes: dict[bytes, bytes | tuple[bytes, int]], cutoff_ns: int) -> int:
    """`drop_expiring`, one entry at a time through `visible`."""
    doomed = [key for key, change in changes.items() if visible(change, cutoff_ns) is None]
    for key in doomed:
        del changes[key]
    return len(doomed)
