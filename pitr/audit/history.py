"""The history of one key: every archived commit that changed it, oldest first.

The catalog's key index names the commits (LSN and time) that touched a key;
the values come from the blocks holding those commits. Keys are indexed by a
digest, so each record's actual key is compared and a colliding key's commits
are passed over.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Literal

import anyio

from pitr.audit.floor import refuse_before_floor
from pitr.audit.holes import Hole, find_holes, history_gap, history_start, key_text
from pitr.audit.records import RecordReader, last_op_on, take
from pitr.catalog.entries import KeyVersion, SnapshotEntry
from pitr.errors import CatalogDamaged, Gap, to_corrupt
from pitr.repo import layout
from pitr.repo.repository import Repository
from segments import SegmentsError
from segments import record as rec
from segments.snapshot import SnapshotReader

PAGE = 1024  # key versions read per catalog transaction while streaming

Operation = Literal["put", "delete"]


@dataclass(frozen=True, slots=True)
class KeyChange:
    """One change of a key: the commit (LSN, time) and what it left the key holding.

    A delete has no value. `expires_at_ns` is the put's absolute expiry, if any.
    `snapshot` names the snapshot a value was read from when the log that
    changed the key is no longer archived (retention); `lsn` and `ts_ns` are
    then the snapshot's, the latest moment the value is known to have held.
    """

    lsn: int
    ts_ns: int
    op: Operation
    value: bytes | None
    expires_at_ns: int | None = None
    snapshot: str | None = None

    def live_at(self, ts_ns: int) -> bool:
        """Whether a read at `ts_ns` sees this change as a value (a put not yet expired)."""
        return self.op == "put" and (self.expires_at_ns is None or self.expires_at_ns > ts_ns)


def change_of(record: rec.Record, op: rec.Op) -> KeyChange:
    """The KeyChange an operation of a commit makes."""
    if op.kind == rec.PUT:
        return KeyChange(record.lsn, record.ts_ns, "put", op.value, op.expires_at_ns)
    return KeyChange(record.lsn, record.ts_ns, "delete", None, None)


async def change_at(reader: RecordReader, key: bytes, version: KeyVersion) -> KeyChange | None:
    """What the commit named by a key-index row did to `key`.

    None when the archive no longer holds that commit, or when the record
    touches another key with the same digest (the key index names keys by digest).
    """
    record = await reader.record_at(version.lsn)
    if record is None:
        return None
    op = last_op_on(record, key)
    if op is None:
        return None
    return change_of(record, op)


async def history(repo: Repository, key: bytes, *, since_ns: int | None = None, until_ns: int | None = None,
                  allow_gaps: bool = False, holes: Sequence[Hole] | None = None) -> AsyncIterator[KeyChange]:
    """Every archived change to `key` with since_ns <= commit time <= until_ns, oldest first.

    A commit that touches the key more than once (a batch) appears once, with
    its net effect. Streams: versions are read from the catalog a page at a
    time and each block is decompressed once for all the versions it holds.

    Raises HistoryGap, before yielding anything, when a hole in the archive
    (`find_holes`; pass `holes` to use ones already found) lies in the range:
    the key may have changed there. With `allow_gaps` the known changes are
    listed; `history_entries` lists them with each hole in place.
    """
    async with aclosing(history_entries(repo, key, since_ns=since_ns, until_ns=until_ns, holes=holes,
                                        allow_gaps=allow_gaps)) as entries:
        async for entry in entries:
            if isinstance(entry, KeyChange):
                yield entry


async def history_entries(repo: Repository, key: bytes, *, since_ns: int | None = None,
                          until_ns: int | None = None, holes: Sequence[Hole] | None = None,
                          allow_gaps: bool = True) -> AsyncGenerator[KeyChange | Gap, None]:
    """`history` with each hole in the range yielded in place, as a `Gap`, between the changes around it.

    Raises HistoryGap before yielding anything when there is a hole and not `allow_gaps`.

    When retention removed the oldest commits (`pitr.audit.floor`), a `since_ns`
    before the floor raises OutsideWindow; without `since_ns` the key's value in
    the snapshot at the floor comes first (a KeyChange naming the snapshot),
    unless the log itself holds a change at or before it.
    """
    ident = await repo.require_identity()
    if holes is None:
        holes = find_holes(repo.catalog, ident)
    start = history_start(repo.catalog, ident)
    what = f"the history of {key_text(key)}"
    floor = refuse_before_floor(repo.catalog, ident, what, since_ns)
    pending = [h for h in holes if h.meets_times(since_ns, until_ns)]
    if pending and not allow_gaps:
        raise history_gap(what, pending)
    base = floor.snapshot if floor is not None and since_ns is None else None
    if base is not None and until_ns is not None and base.ts_ns > until_ns:
        base = None
    since = since_ns
    with RecordReader(repo) as reader:
        while True:
            page = take(repo.catalog.key_versions(key, since, until_ns), PAGE)
            reader.plan([version.lsn for version in page])
            for version in page:
                while pending and pending[0].gap.last_lsn < version.lsn:
                    yield pending.pop(0).gap
                if base is not None and version.lsn > base.lsn:
                    found = await snapshot_change(repo, base, key)
                    base = None
                    if found is not None:
                        yield found
                change = await change_at(reader, key, version)
                if change is not None:
                    if base is not None:  # (a key index row of a colliding key does not count)
                        base = None  # the log reaches the snapshot: its own changes say it all
                    yield change
                elif version.lsn >= start and await reader.record_at(version.lsn) is None and \
                        not any(h.gap.first_lsn <= version.lsn <= h.gap.last_lsn for h in holes):
                    raise CatalogDamaged(f"{repo.url}: the catalog's key index names LSN {version.lsn} for "
                                         f"{key_text(key)}, but no indexed segment holds that LSN")
            if len(page) < PAGE:
                break
            since = page[-1].ts_ns + 1
    if base is not None:
        found = await snapshot_change(repo, base, key)
        if found is not None:
            yield found
    for hole in pending:
        yield hole.gap


async def snapshot_change(repo: Repository, snapshot: SnapshotEntry, key: bytes) -> KeyChange | None:
    """The key's value in a published snapshot, as a KeyChange at the snapshot's LSN naming it;
    None when the snapshot does not hold the key (or holds a put expired at its time)."""
    source = await repo.open_source(layout.snapshot_object(snapshot.name))
    try:
        found = await anyio.to_thread.run_sync(lambda: SnapshotReader(source, keys=repo.segment_keys).get(key))
    except SegmentsError as exc:
        raise to_corrupt(exc) from exc
    finally:
        source.close()  # the reader's only resource
    if found is None:
        return None
    value, expires_at_ns = found
    change = KeyChange(snapshot.lsn, snapshot.ts_ns, "put", value, expires_at_ns, snapshot.name)
    return change if change.live_at(snapshot.ts_ns) else None  # a put expired by then held nothing
