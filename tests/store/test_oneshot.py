"""`commit_once` (one commit, no event loop: `pitr put`) against `Store`: the same records, LSNs,
times, state rows and checkpoint, commit after commit, whatever the clock does."""

from __future__ import annotations

import os
import tempfile

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pitr.datadir.keys import ttl_ns
from pitr.datadir.state import StateDB
from pitr.errors import InvalidArgument
from pitr.store import Store
from pitr.store.oneshot import commit_once
from segments.record import DELETE, PUT, Op
from tests.store.support import SECOND, FakeClock
from tests.store.test_hot_path import raw_records

# (kind, key, value, ttl seconds or None); a commit is 1-3 of them, then how far the clock moves
ops = st.tuples(st.sampled_from([PUT, DELETE]), st.sampled_from([b"a", b"b", b"key:1", b"\x00"]),
                st.binary(max_size=40), st.none() | st.sampled_from([0.5, 3.0, 1e6]))
commits = st.lists(st.tuples(st.lists(ops, min_size=1, max_size=3),
                             st.sampled_from([SECOND, 1, 0, -SECOND])), min_size=1, max_size=6)
Spec = list[tuple[list[tuple[int, bytes, bytes, float | None]], int]]


def as_commit(spec: list[tuple[int, bytes, bytes, float | None]]) -> tuple[tuple[Op, ...], dict[int, int]]:
    ops_ = tuple(Op(PUT, key, value, None) if kind == PUT else Op(DELETE, key) for kind, key, value, _ttl in spec)
    ttls = {i: ttl_ns(ttl, key) for i, (kind, key, _v, ttl) in enumerate(spec) if kind == PUT and ttl is not None}
    return ops_, ttls


async def with_store(data: str, history: Spec) -> list[tuple[int, int]]:
    clock, done = FakeClock(), []
    for spec, step in history:
        clock.advance(step)
        async with Store(data, clock=clock) as store:  # a whole `pitr put` each: open, commit, close
            async with store.batch() as batch:
                for kind, key, value, ttl in spec:
                    if kind == PUT:
                        batch.put(key, value, ttl=ttl)
                    else:
                        batch.delete(key)
            assert batch.commit is not None
            done.append((batch.commit.lsn, batch.commit.ts_ns))
    return done


def with_oneshot(data: str, history: Spec) -> list[tuple[int, int]]:
    clock, done = FakeClock(), []
    for spec, step in history:
        clock.advance(step)
        ops_, ttls = as_commit(spec)
        done.append(commit_once(data, ops_, ttls=ttls, clock=clock))
    return done


def state_of(data: str) -> tuple[object, list[tuple[bytes, bytes, int | None]]]:
    state = StateDB(os.path.join(data, "state"), readonly=True)
    try:
        return state.stored_checkpoint(), list(state.iter_range(b"", None))
    finally:
        state.close()


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commits)
def test_one_commit_without_an_event_loop_is_the_stores_commit(history: Spec) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # the same directory name: the store's default name is its directory's
        by_store, by_oneshot = os.path.join(tmp, "a", "data"), os.path.join(tmp, "b", "data")
        assert trio.run(with_store, by_store, history) == with_oneshot(by_oneshot, history)
        assert raw_records(by_oneshot) == raw_records(by_store)
        assert state_of(by_oneshot) == state_of(by_store)


def test_a_refused_commit_writes_nothing(tmp_path: object) -> None:
    data = os.path.join(str(tmp_path), "data")
    clock = FakeClock()
    assert commit_once(data, (Op(PUT, b"k", b"v", None),), clock=clock) == (1, clock.now)
    before = raw_records(data), state_of(data)
    with pytest.raises(InvalidArgument, match="at least one operation"):
        commit_once(data, (), clock=clock)
    with pytest.raises(InvalidArgument):
        commit_once(data, (Op(PUT, b"k" * 70_000, b"v", None),), clock=clock)
    assert (raw_records(data), state_of(data)) == before
