"""Building a restored state: load the base snapshot, replay the log to the target (synchronous)."""

from __future__ import annotations

import bisect
import os
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from contextlib import closing, nullcontext
from dataclasses import dataclass
from itertools import islice

from pitr.datadir.overlay import visible
from pitr.datadir.state import I64BE, StateDB, StoreIdentity
from pitr.errors import CorruptData, file_error, to_corrupt
from pitr.gcpause import gc_paused
from pitr.memory import peak_rss_bytes
from pitr.restore.destination import Replacement
from pitr.restore.plan import RestorePlan, SkippedBase
from pitr.restore.prefetch import prefetched
from segments import SegmentsError
from segments import record as rec
from segments.chain import genesis
from segments.fold import Change, fold_records
from segments.segment_reader import SegmentReader
from segments.snapshot import SnapshotReader
from segments.source import RangeSource

MAX_CHANGES = 4_000_000  # changed keys held in memory before the replay spills them into LMDB
MAX_MERGED = 4_000_000  # base entries + changes merged in a dict; a larger base is streamed
BLOCKS_PER_READ = 256  # blocks decompressed per call by the reader thread (16 MiB of records)
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


def build_state(state_dir: str, plan: RestorePlan, snapshot: RangeSource | None,
                segments: list[RangeSource], *, name: str, progress: Progress | None = None,
                clock: Callable[[], int] = time.time_ns, pause_gc: bool = False) -> RestoreResult:
    """Write the state at `plan.target_lsn` into a new LMDB at `state_dir`.

    `pause_gc` pauses Python's cyclic garbage collector for the whole process while it builds
    (`pitr.gcpause`): a command line that owns its process opts in; a library caller decides.
    """
    started = time.monotonic()
    new_id = uuid.uuid4()
    parent = {"store_id": str(plan.identity.store_id), "lsn": plan.target_lsn, "ts_ns": plan.target_ts_ns,
              "target": plan.target.describe()}
    ident = StoreIdentity(new_id, name, clock(), plan.target_lsn + 1, genesis(new_id), parent)
    state = StateDB(state_dir, sync=False)  # synced once, when complete; discarded if not
    try:
        with gc_paused() if pause_gc else nullcontext():
            state.init_identity(ident)
            base = SnapshotReader(snapshot) if snapshot is not None else None
            changes, spilled = _replay(state, plan, base, segments, progress)
            final_ts = max(plan.target_ts_ns, plan.base.ts_ns)
            if spilled:
                state.apply(changes, plan.target_lsn, final_ts)
                changes = {}
                expired = state.drop_expired(plan.cutoff_ns)
            else:
                expired = _load_final(state, base, changes, plan.cutoff_ns, plan.target_lsn, final_ts)
            keys = state.count()
            state.sync()
    except SegmentsError as exc:
        raise to_corrupt(exc) from exc
    except OSError as exc:
        raise file_error(exc, state_dir, "write the restored state") from exc
    finally:
        state.close()
    rss = peak_rss_bytes()
    return RestoreResult(os.path.dirname(state_dir), new_id, plan.target_lsn, plan.target_ts_ns,
                         plan.base.lsn, plan.commits_to_replay, keys, expired,
                         time.monotonic() - started, rss, plan.base.snapshot, None, plan.skipped, plan.notes)


def _replay(state: StateDB, plan: RestorePlan, base: SnapshotReader | None, segments: list[RangeSource],
            progress: Progress | None) -> tuple[dict[bytes, Change], bool]:
    """Fold the log after the base up to the target LSN into a key -> change map.

    When the map outgrows MAX_CHANGES the base is loaded into LMDB and the map
    applied there (`spilled`): memory stays bounded whatever the history.
    """
    expected = plan.base.lsn + 1
    changes: dict[bytes, Change] = {}
    spilled = False
    last_ts = plan.base.ts_ns
    total = plan.commits_to_replay
    stopped = False
    with prefetched(_blocks(plan, segments), depth=2) as blocks:
        for path, run in blocks:
            for raw in run:
                # read_blocks checked the block's CRC over exactly these bytes: no per-record CRC needed
                expected, ts, stopped = fold_records(raw, changes, expected, plan.target_lsn, rec.MAX_I64,
                                                     path=path, check_crc=False)
                if ts is not None:
                    last_ts = ts
                if stopped or expected > plan.target_lsn:
                    break
            if len(changes) >= MAX_CHANGES:
                if not spilled:
                    _load_base(state, base, plan)
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
    return changes, spilled


def _blocks(plan: RestorePlan, segments: list[RangeSource]) -> Iterator[tuple[str, list[bytes]]]:
    """(file name, decompressed blocks) for every block from base LSN + 1 through the target LSN,
    a run of up to BLOCKS_PER_READ blocks at a time."""
    start = plan.base.lsn + 1
    for source in segments:
        seg = SegmentReader(source)
        if seg.meta.first_lsn > plan.target_lsn:
            return
        if seg.meta.last_lsn < start:
            continue
        index = seg.meta.index
        first = seg.block_for_lsn(max(start, seg.meta.first_lsn))
        stop = bisect.bisect_right([e.first_lsn for e in index], plan.target_lsn, lo=first)
        for i in range(first, stop, BLOCKS_PER_READ):
            yield source.name, seg.read_blocks(i, min(i + BLOCKS_PER_READ, stop))


def _base_blocks(base: SnapshotReader | None) -> Generator[list[tuple[bytes, Change]], None, None]:
    """The base snapshot's entries as (key, change), one sorted list per block, decompressed a few
    blocks ahead."""
    if base is None:
        return
    with prefetched(iter(map(base.read_block, range(len(base.blocks))))) as raws:
        for i, raw in enumerate(raws):
            yield base.block_changes(i, raw)


def _load_base(state: StateDB, base: SnapshotReader | None, plan: RestorePlan) -> None:
    """The base as it is, expired keys included (judged after the replay), with its checkpoint."""
    if base is not None:
        with closing(_base_with_changes(base, {})) as entries:  # its read-ahead thread stops on errors
            _append_in_key_order(state, entries, rec.MIN_I64 - 1)  # nothing expires
    state.set_checkpoint(plan.base.lsn, plan.base.ts_ns)


def _load_final(state: StateDB, base: SnapshotReader | None, changes: dict[bytes, Change],
                cutoff_ns: int, lsn: int, ts_ns: int) -> int:
    """Write the base with `changes` applied into the empty state, without keys expired at the
    cutoff, and set the checkpoint; returns how many keys expired. Empties `changes`."""
    if base is not None and base.footer.entry_count + len(changes) > MAX_MERGED:
        # a large base is streamed: each of its keys takes its change out of the map
        with closing(_base_with_changes(base, changes)) as entries:
            expired = _append_in_key_order(state, entries, cutoff_ns)
        new_keys = {key: change for key, change in changes.items() if change is not None}
    else:
        expired, new_keys = 0, _append_merged(state, base, changes)
    changes.clear()
    expired += drop_expiring(new_keys, cutoff_ns)
    state.apply(new_keys, lsn, ts_ns)  # sorts them, and sets the checkpoint
    return expired


def _append_merged(state: StateDB, base: SnapshotReader | None,
                   changes: dict[bytes, Change]) -> dict[bytes, bytes | tuple[bytes, int]]:
    """The base read into a dict in key order, the changes merged into it by one C-level
    `dict.update`, and the result handed to LMDB's `putmulti` without a Python step per key.

    Returns the changes left to apply: keys the base did not have, and the entries with
    an expiry (not yet judged at the cutoff). Keys whose final change is not a bare value
    (deletes, puts with an expiry) are taken out of the dict first, so that its first
    entries are exactly the base's surviving keys, in order, each with a bare value.
    """
    merged: dict[bytes, Change] = {}
    with closing(_base_blocks(base)) as blocks:
        for entries in blocks:
            merged.update(entries)
    in_base = len(merged)
    odd = [key for key, change in changes.items() if type(change) is not bytes]  # deletes, expiries
    odd += [key for key, change in merged.items() if type(change) is not bytes]  # the base's expiries
    odd_in_base = {key for key in odd if key in merged}
    merged.update(changes)
    rest: dict[bytes, bytes | tuple[bytes, int]] = {}
    for key in odd:
        change = merged.get(key, _KEEP)
        if change is _KEEP or type(change) is bytes:
            continue  # taken already, or a bare value now: stays where it is
        del merged[key]
        if key in odd_in_base:
            in_base -= 1
        if change is not None:
            rest[key] = change  # type: ignore[assignment]
    items = iter(merged.items())
    while in_base > 0:
        chunk = min(in_base, LOAD_CHUNK)
        state.append_sorted(islice(items, chunk), [])  # type: ignore[arg-type]  # bare values only
        in_base -= chunk
    rest.update(items)  # type: ignore[arg-type]  # keys the base did not have (bare values), unordered
    return rest


_KEEP = object()


def _base_with_changes(base: SnapshotReader,
                       changes: dict[bytes, Change]) -> Generator[tuple[bytes, Change], None, None]:
    """(key, change) for every base key in key order, its change taken out of `changes` if it has one."""
    take = changes.pop
    with closing(_base_blocks(base)) as blocks:
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
