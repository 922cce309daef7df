"""Restoring part of the keys: those under some prefixes, and single keys, at a planned target.

The state of a selection at the plan's target is read without building the rest:

* a selected key (`--key`) is one key-index lookup (`ValueReader.newest_change`): one chunk
  read per key table it visits and one block read, whatever the size of the archive;
* a prefix has no lookup of its own (the key index holds 8-byte digests of keys, which do not
  keep the order of the keys), so its keys come from the two places that do keep it: the base
  snapshot, whose first-key index seeks straight to the blocks under the prefix, and the log
  from the base to the target (the restore's own replay, its changes filtered to the
  prefixes). The cost is the snapshot blocks under the prefix plus the log since the base,
  never the whole archive (docs/decisions.md, "undo: prefix restore").

Every block read is checked as it is read (block CRC, every record's CRC and framing, snapshot
block checks); whole-file digests of files read only in part are left to `pitr verify`.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from pitr.audit.at import ValueReader, open_value_reader
from pitr.audit.window import Moment
from pitr.datadir.keys import check_key
from pitr.datadir.state import I64BE, StateDB, StoreIdentity
from pitr.errors import InvalidArgument, file_error, to_corrupt
from pitr.memory import peak_rss_bytes
from pitr.repo.repository import Repository
from pitr.restore.engine import RestoreResult
from pitr.restore.options import KeySelection
from pitr.restore.plan import RestorePlan
from pitr.restore.replay import replay_log
from segments import SegmentsError
from segments.chain import genesis
from segments.fold import Change
from segments.snapshot import SnapshotReader
from segments.source import RangeSource

Row = tuple[bytes, int | None]  # value, absolute expiry
Progress = Callable[[str, int, int], None]
SPILL_EVERY = 200_000  # changed keys folded before the map is filtered to the prefixes


@dataclass(frozen=True, slots=True)
class SelectedState:
    """The live selected keys at a plan's target (their original names), and what reading them cost."""

    rows: dict[bytes, Row]
    expired_dropped: int
    commits_read: int  # commits of the log replayed (for the prefixes)
    blocks_read: int  # log blocks read for the single keys


def plan_moment(plan: RestorePlan) -> Moment:
    """The plan's target as a moment of the audit functions: every commit up to `target_lsn`.

    Commit times strictly increase with LSN, so "ts <= the target LSN's commit time" names
    exactly the commits up to the target LSN, whichever way the target was given.
    """
    return Moment(plan.target_ts_ns, False, plan.window, plan.base)


async def read_selection(repo: Repository, plan: RestorePlan, selection: KeySelection,
                         segments: list[RangeSource], progress: Progress | None = None) -> SelectedState:
    """The state of the selected keys at `plan`'s target, TTL judged at its cutoff.

    `segments` are the plan's segments, open (read only when the selection has prefixes).
    """
    moment = plan_moment(plan)
    changes: dict[bytes, Row | None] = {}
    async with open_value_reader(repo) as reader:
        for key in sorted(set(selection.keys)):
            change = await reader.newest_change(key, moment)
            changes[key] = None if change is None or change.op != "put" else \
                (change.value or b"", change.expires_at_ns)
        if selection.prefixes:
            changes.update(await _base_under(reader, plan, selection.prefixes))
            changes.update(await anyio.to_thread.run_sync(_log_under, plan, segments, selection.prefixes, progress))
        blocks = reader.records.blocks_read
    rows: dict[bytes, Row] = {}
    expired = 0
    for key, row in changes.items():
        if row is None:
            continue
        if row[1] is not None and row[1] <= plan.cutoff_ns:
            expired += 1
            continue
        rows[key] = row
    commits = plan.commits_to_replay if selection.prefixes else 0
    return SelectedState(rows, expired, commits, blocks)


async def _base_under(reader: ValueReader, plan: RestorePlan, prefixes: tuple[bytes, ...]) -> dict[bytes, Row]:
    """The base snapshot's entries under the prefixes (none for the start of the history)."""
    if plan.base.snapshot is None:
        return {}
    snapshot = await reader.snapshot(plan.base.snapshot)
    try:
        return await anyio.to_thread.run_sync(_snapshot_under, snapshot, prefixes)
    except SegmentsError as exc:
        raise to_corrupt(exc) from exc


def _log_under(plan: RestorePlan, segments: list[RangeSource], prefixes: tuple[bytes, ...],
               progress: Progress | None) -> dict[bytes, Row | None]:
    """Each key under the prefixes changed from the base to the target, with its last change.

    The restore's own replay (`replay_log`: every record of every block read checked, folded in
    compiled code), its map filtered to the prefixes whenever it reaches SPILL_EVERY keys, so
    memory stays bounded by the keys under the prefixes. Whole-file digests are not checked:
    only the blocks from the base on are read.
    """
    found: dict[bytes, Row | None] = {}

    def keep(changes: dict[bytes, Change], _lsn: int = 0, _ts_ns: int = 0) -> None:
        for key, change in changes.items():
            if key.startswith(prefixes):
                found[key] = None if change is None else (change, None) if isinstance(change, bytes) else change
        changes.clear()

    keep(replay_log(plan, segments, verify=False, max_changes=SPILL_EVERY, spill=keep, progress=progress))
    return found


def _snapshot_under(snapshot: SnapshotReader, prefixes: tuple[bytes, ...]) -> dict[bytes, Row]:
    found: dict[bytes, Row] = {}
    for prefix in sorted(set(prefixes)):
        for key, value, expires_at_ns in snapshot.iter_entries(prefix or None):
            if not key.startswith(prefix):
                break
            found[bytes(key)] = (bytes(value), expires_at_ns)
    return found


def landed_rows(state: SelectedState, selection: KeySelection) -> list[tuple[bytes, Row]]:
    """The selected rows under the names they are restored as, sorted by those names."""
    out = []
    for key, row in state.rows.items():
        name = selection.landed(key)
        if not name:
            raise InvalidArgument(f"the key {key!r} would be restored under an empty name (it equals "
                                  f"--strip-prefix {selection.strip_prefix!r}); give --add-prefix")
        try:
            check_key(name)
        except InvalidArgument as exc:
            raise InvalidArgument(f"the key {key!r} cannot be restored as {name!r}: {exc}") from exc
        out.append((name, row))
    out.sort()
    return out


def write_selected_state(state_dir: str, plan: RestorePlan, state: SelectedState, selection: KeySelection, *,
                         name: str, clock: Callable[[], int] = time.time_ns) -> RestoreResult:
    """Write the selected keys, renamed, as a new store's LMDB state at `state_dir` (a new history)."""
    started = time.monotonic()
    rows = landed_rows(state, selection)
    new_id = uuid.uuid4()
    parent = {"store_id": str(plan.identity.store_id), "lsn": plan.target_lsn, "ts_ns": plan.target_ts_ns,
              "target": plan.target.describe(), "selection": selection.describe()}
    ident = StoreIdentity(new_id, name, clock(), plan.target_lsn + 1, genesis(new_id), parent)
    db = StateDB(state_dir, sync=False)  # synced once, when complete; discarded if not
    try:
        db.init_identity(ident)
        puts = [(key, value) for key, (value, _expires) in rows]
        expiring = [(key, I64BE.pack(expires)) for key, (_value, expires) in rows if expires is not None]
        db.append_sorted(puts, expiring)
        db.set_checkpoint(plan.target_lsn, max(plan.target_ts_ns, plan.base.ts_ns))
        db.sync()
    except OSError as exc:
        raise file_error(exc, state_dir, "write the restored state") from exc
    finally:
        db.close()
    return RestoreResult(os.path.dirname(state_dir), new_id, plan.target_lsn, plan.target_ts_ns, plan.base.lsn,
                         state.commits_read, len(rows), state.expired_dropped, time.monotonic() - started,
                         peak_rss_bytes(), plan.base.snapshot, None, plan.skipped,
                         (*plan.notes, f"restored only {selection.describe()}: {len(rows):,} keys, "
                                       f"{state.commits_read:,} commits replayed for the prefixes, "
                                       f"{state.blocks_read:,} log blocks read for the keys"))
