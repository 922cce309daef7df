"""A history written through a real Store and archiver, and the plain model the audit answers must match.

`write_history` runs a list of steps (puts, deletes, batches, clock ticks,
archive cycles, snapshots) against a Store with a fake clock, archiving into a
local repository with aggressive merging; it records every acknowledged commit.
The model functions answer the audit questions from that list alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from pitr.archiver import ArchiveOptions
from pitr.archiving import archiving
from pitr.audit import KeyChange
from pitr.repo import layout
from pitr.repo.repository import Repository, live_segments
from pitr.snapshots.take import take_snapshot
from pitr.store import Store
from segments import parse_segment_name
from segments import record as rec

T0 = 1_795_961_387_000_000_000
LONG_A = b"long/" + b"a" * 490 + b"/1"  # over the catalog's 480-byte limit: indexed by digest
LONG_B = b"long/" + b"a" * 490 + b"/2"
MERGING = ArchiveOptions(interval=3600.0, merge_count=2, merge_small_bytes=450, merge_max_bytes=900)


class FakeClock:
    """Nanoseconds that move only when a test says so."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass(frozen=True)
class Commit:
    lsn: int
    ts_ns: int
    ops: tuple[rec.Op, ...]


@dataclass
class Written:
    """What a history left behind: its commits, snapshots and the store's creation time."""

    commits: list[Commit] = field(default_factory=list)
    snapshots: list[tuple[int, int]] = field(default_factory=list)  # (lsn, ts_ns)
    created_ns: int = 0
    final_ns: int = 0


Step = tuple[Any, ...]


def ttl_seconds(ttl_ns: int | None) -> float | None:
    return None if ttl_ns is None else ttl_ns / 1e9


def expiry(commit_ts_ns: int, ttl_ns: int | None) -> int | None:
    """The expiry the Store gives a put with a TTL: commit time + TTL (same float arithmetic)."""
    seconds = ttl_seconds(ttl_ns)
    return None if seconds is None else commit_ts_ns + int(seconds * 1_000_000_000)


async def write_history(root: str, steps: list[Step], *, options: ArchiveOptions = MERGING) -> Written:
    clock = FakeClock()
    out = Written(created_ns=clock.now)
    async with Store(os.path.join(root, "data"), clock=clock) as store, \
            archiving(store, os.path.join(root, "repo"), options=options) as archiver:
        for step in steps:
            name = step[0]
            if name == "tick":
                clock.now += step[1]
            elif name == "put":
                _, key, value, ttl_ns = step
                c = await store.put(key, value, ttl=ttl_seconds(ttl_ns))
                out.commits.append(Commit(c.lsn, c.ts_ns, (rec.Op(rec.PUT, key, value, expiry(c.ts_ns, ttl_ns)),)))
            elif name == "delete":
                c = await store.delete(step[1])
                out.commits.append(Commit(c.lsn, c.ts_ns, (rec.Op(rec.DELETE, step[1]),)))
            elif name == "batch":
                async with store.batch() as batch:
                    for sub in step[1]:
                        if sub[0] == "put":
                            batch.put(sub[1], sub[2], ttl=ttl_seconds(sub[3]))
                        else:
                            batch.delete(sub[1])
                assert batch.commit is not None
                ts = batch.commit.ts_ns
                ops = [rec.Op(rec.PUT, sub[1], sub[2], expiry(ts, sub[3])) if sub[0] == "put"
                       else rec.Op(rec.DELETE, sub[1]) for sub in step[1]]
                out.commits.append(Commit(batch.commit.lsn, ts, tuple(ops)))
            elif name == "cycle":
                await archiver.cycle()
            elif name == "snapshot":
                entry = await take_snapshot(archiver, prepare=store.flush)
                if not out.snapshots or out.snapshots[-1][0] != entry.lsn:
                    out.snapshots.append((entry.lsn, entry.ts_ns))
            else:  # pragma: no cover - a typo in a test
                raise AssertionError(step)
        clock.now += 50
        out.final_ns = clock.now
    return out


async def drop_segments_before(repo: Repository, lsn: int) -> list[str]:
    """Retention by hand: delete every segment ending before `lsn`, then catch the catalog up.

    The segment holding `lsn` stays: the timeline binds a snapshot at `lsn`
    through the chain pieces of the segment that contains it.
    """
    dropped = [s.name for s in repo.catalog.segments() if s.last_lsn < lsn]
    # and, as cleanup does, the merge inputs those superseded (else they would hold the history again)
    listed = [i.name[len(layout.SEGMENTS):] for i in await repo.storage.list(layout.SEGMENTS)]
    _keep, superseded = live_segments(listed)
    dropped += [n for n in superseded if (parse_segment_name(n) or (0, lsn))[1] < lsn]
    for name in dropped:
        await repo.storage.delete(layout.segment_object(name))
    await repo.sync()
    return dropped


# the model ------------------------------------------------------------------------------------

def net_ops(commit: Commit) -> dict[bytes, rec.Op]:
    """Each key's last operation in a commit (a batch applies in order)."""
    return {op.key: op for op in commit.ops}


def last_change(commits: list[Commit], key: bytes, ts_ns: int, exclusive: bool) -> tuple[Commit, rec.Op] | None:
    found = None
    for commit in commits:
        if commit.ts_ns > ts_ns or (exclusive and commit.ts_ns == ts_ns):
            break
        op = net_ops(commit).get(key)
        if op is not None:
            found = (commit, op)
    return found


def visible(found: tuple[Commit, rec.Op] | None, cutoff_ns: int) -> rec.Op | None:
    if found is None:
        return None
    op = found[1]
    if op.kind != rec.PUT or (op.expires_at_ns is not None and op.expires_at_ns <= cutoff_ns):
        return None
    return op


def state_at(commits: list[Commit], keys: set[bytes], ts_ns: int) -> dict[bytes, tuple[bytes, int | None]]:
    state = {}
    for key in keys:
        op = visible(last_change(commits, key, ts_ns, False), ts_ns)
        if op is not None:
            state[key] = (op.value, op.expires_at_ns)
    return state


def check_value(got: KeyChange | None, commits: list[Commit], key: bytes, ts_ns: int, exclusive: bool,
                base_lsn: int) -> None:
    """`value_at`'s answer against the model, including which commit (or snapshot) it names."""
    found = last_change(commits, key, ts_ns, exclusive)
    op = visible(found, ts_ns - 1 if exclusive else ts_ns)
    where = f"key {key[:20]!r} {'before' if exclusive else 'at'} {ts_ns - T0}"
    if op is None:
        assert got is None, f"{where}: expected absent, got {got}"
        return
    assert found is not None
    assert got is not None, f"{where}: expected {op}, got nothing"
    assert (got.op, got.value, got.expires_at_ns) == ("put", op.value, op.expires_at_ns), where
    if got.snapshot is None:
        assert (got.lsn, got.ts_ns) == (found[0].lsn, found[0].ts_ns), where
    else:
        assert got.lsn == base_lsn >= found[0].lsn, where


def keys_of(commits: list[Commit]) -> set[bytes]:
    return {op.key for c in commits for op in c.ops}
