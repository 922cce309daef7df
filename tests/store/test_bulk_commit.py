"""`Store.queue_commits` (the bulk path of imports) against committing the same ops one by one.

The model is the store itself, driven one commit at a time: a run queued in one
piece must leave exactly the same WAL records (bytes: LSNs, times, ops), return
the same commits, and leave the same state, read live and after a reopen. Runs
touch few keys, so a key is put, deleted and put again inside one run; some
puts expire before the state is read; some runs are queued while the previous
one is still in flight; some hold a commit the store must refuse, and then none
of that run may be queued.
"""

from __future__ import annotations

import os
import tempfile

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from pitr.errors import InvalidArgument
from pitr.store import Commit, QueuedCommits, Store, StoreOptions
from segments.record import DELETE, PUT, Op
from tests.store.support import SECOND, START_NS, FakeClock, wal_records
from tests.store.test_hot_path import raw_records

KEYS = [b"a", b"b", b"c", b"d"]
ops_strategy = st.lists(st.one_of(
    st.builds(lambda k, v: Op(PUT, k, v, None), st.sampled_from(KEYS), st.binary(max_size=20)),
    st.builds(lambda k, v, e: Op(PUT, k, v, START_NS + e * SECOND), st.sampled_from(KEYS), st.binary(max_size=8),
              st.integers(-5, 200)),
    st.builds(lambda k: Op(DELETE, k), st.sampled_from(KEYS)),
), min_size=1, max_size=3)
# A commit: its ops and a time: None (the clock's), or seconds after the previous commit's time.
commit_strategy = st.tuples(ops_strategy, st.one_of(st.none(), st.integers(1, 2)))
run_strategy = st.tuples(st.lists(commit_strategy, min_size=1, max_size=12),
                         st.integers(0, 5),  # clock advance (s) before the run
                         st.booleans(),  # queued while the previous run is still in flight
                         st.one_of(st.none(), st.integers(0, 11)))  # where a refused commit goes, if any

Commits = list[tuple[list[Op], int | None]]
Run = tuple[Commits, int, bool, int | None]


def timed(runs: list[Run]) -> list[Run]:
    """Explicit times as absolute ns after the commit before (so some lie ahead of the clock)."""
    clock, last_ts = START_NS, 0
    out = []
    for commits, advance, overlap, refused in runs:
        clock += advance * SECOND
        timed_commits: Commits = []
        for ops, step in commits:
            ts = None if step is None else last_ts + step * SECOND
            if refused is None:
                last_ts = ts if ts is not None else (clock if clock > last_ts else last_ts + 1)
            timed_commits.append((ops, ts))
        out.append((timed_commits, advance, overlap, refused))
    return out


async def one_by_one(data: str, runs: list[Run]) -> tuple[list[Commit], dict[bytes, object], list[object]]:
    clock = FakeClock()
    commits: list[Commit] = []
    async with Store(data, StoreOptions(wal_file_size=4096), clock=clock) as store:
        for run, advance, _overlap, refused in runs:
            clock.advance(advance * SECOND)
            if refused is not None:
                continue  # the bulk path refuses the whole run: nothing to do here
            for ops, ts in run:
                commits.append(await store.commit(ops, ts_ns=ts))
        return commits, await read(store), await store.scan()


async def in_runs(data: str, runs: list[Run]) -> tuple[list[Commit], dict[bytes, object], list[object]]:
    clock = FakeClock()
    commits: list[Commit] = []
    async with Store(data, StoreOptions(wal_file_size=4096), clock=clock) as store:
        in_flight: list[QueuedCommits] = []
        for run, advance, overlap, refused in runs:
            clock.advance(advance * SECOND)
            if not overlap:
                for queued in in_flight:
                    await queued.wait()
                    commits.extend(queued.commits)
                in_flight = []
            if refused is not None:
                bad = [*run[:refused], ([Op(PUT, b"a", b"x", None)], 0), *run[refused:]]
                before = store.last_lsn, store.last_ts
                with pytest.raises(InvalidArgument, match="not after the last commit"):
                    store.queue_commits(bad)
                assert (store.last_lsn, store.last_ts) == before, "a refused run left a trace"
                continue
            if advance % 2 == 0:  # as `pitr import` hands runs over: bare (kind, key, value, expires) tuples
                run = [(tuple(tuple(op) for op in ops), ts) for ops, ts in run]  # type: ignore[misc]
            in_flight.append(store.queue_commits(run))
        for queued in in_flight:
            await queued.wait()
            commits.extend(queued.commits)
        return commits, await read(store), await store.scan()


async def read(store: Store) -> dict[bytes, object]:
    await store.flush()
    return {key: await store.get_with_expiry(key) for key in KEYS}


async def reopened(data: str) -> list[object]:
    async with Store(data, clock=FakeClock(START_NS + 1000 * SECOND)) as store:
        return [*await store.scan(), store.last_lsn, store.last_ts]


@given(st.lists(run_strategy, min_size=1, max_size=8))
def test_a_run_queued_whole_is_the_same_commits_as_one_by_one(runs: list[Run]) -> None:
    runs = timed(runs)
    with tempfile.TemporaryDirectory() as tmp:
        single, bulk = os.path.join(tmp, "single"), os.path.join(tmp, "bulk")
        expected = trio.run(one_by_one, single, runs)
        got = trio.run(in_runs, bulk, runs)
        assert got[0] == expected[0], "the same LSNs and times, acknowledged in order"
        assert got[1:] == expected[1:], "the same state, live"
        assert raw_records(bulk) == raw_records(single), "the same WAL records, byte for byte"
        assert [r.lsn for r in wal_records(bulk)] == [c.lsn for c in got[0]]
        assert trio.run(reopened, bulk) == trio.run(reopened, single), "the same state in LMDB"


def test_an_empty_run_is_refused() -> None:
    async def main(data: str) -> None:
        async with Store(data) as store:
            with pytest.raises(InvalidArgument, match="at least one commit"):
                store.queue_commits([])
            with pytest.raises(InvalidArgument, match="at least one operation"):
                store.queue_commits([([Op(PUT, b"k", b"v", None)], None), ([], None)])
            assert store.last_lsn == 0
            assert await store.commit_many([([Op(PUT, b"k", b"v", None)], None)]) == \
                [Commit(1, store.last_ts)]

    with tempfile.TemporaryDirectory() as tmp:
        trio.run(main, os.path.join(tmp, "data"))


def test_a_queued_run_is_seen_by_compare_and_set_before_it_is_durable() -> None:
    async def main(data: str) -> None:
        async with Store(data) as store:
            queued = store.queue_commits([(((PUT, b"k", b"one", None),), None),  # type: ignore[list-item]
                                          (((PUT, b"k", b"two", None),), None)])  # type: ignore[list-item]
            assert await store.compare_and_set(b"k", b"one", b"x") is None, "the run's last put decides"
            commit = await store.compare_and_set(b"k", b"two", b"three")
            await queued.wait()
            assert commit is not None
            assert commit.lsn == 3
            assert await store.get(b"k") == b"three"

    with tempfile.TemporaryDirectory() as tmp:
        trio.run(main, os.path.join(tmp, "data"))
