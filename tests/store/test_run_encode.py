"""The compiled sequencing of a run of commits against its pure-Python reference: the same times, the
same records byte for byte, and every run the reference refuses left to it (so refused the same)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from pitr.errors import InvalidArgument
from pitr.store import run_encode
from segments.record import DELETE, PUT, Op

pytestmark = pytest.mark.skipif(not run_encode.COMPILED, reason="pitr.store._run_encode is not built")

NOW = 1_795_961_387_000_000_000
keys = st.one_of(st.binary(min_size=1, max_size=12), st.sampled_from([b"", b"k" * 511, b"k" * 512]))
values = st.one_of(st.binary(max_size=40), st.just(b""))
times = st.one_of(st.none(), st.none(), st.integers(NOW - 10**6, NOW + 10**6), st.integers(-(1 << 63), (1 << 63) - 1),
                  st.sampled_from([NOW + 300 * 10**9, NOW + 300 * 10**9 + 1, (1 << 63) - 1, 1 << 63, -(1 << 63) - 1]))
simple_ops = st.one_of(st.tuples(st.just(PUT), keys, values, st.none()),
                       st.tuples(st.just(DELETE), keys, st.just(b""), st.none()))
other_ops = st.one_of(st.tuples(st.just(PUT), keys, values, st.integers(0, NOW)),  # an expiry
                      st.tuples(st.just(3), keys, values, st.none()),  # no such kind
                      st.tuples(st.just(PUT), st.text(max_size=3), values, st.none()),  # a str key
                      st.builds(Op, st.just(PUT), keys, values))
commits = st.tuples(st.one_of(st.tuples(simple_ops), st.tuples(simple_ops), st.tuples(simple_ops, simple_ops),
                              st.tuples(other_ops), st.just(())), times)


@st.composite
def simple_runs(draw: st.DrawFn) -> list[tuple[tuple[Op, ...], int | None]]:
    """Single puts and deletes, each timed by the clock or at an explicit time that mostly increases."""
    run: list[tuple[tuple[Op, ...], int | None]] = []
    ts = NOW + 2 * 10**7
    valid_keys = st.one_of(st.binary(min_size=1, max_size=12), st.just(b"k" * 511))
    valid_ops = st.one_of(st.tuples(st.just(PUT), valid_keys, values, st.none()),
                          st.tuples(st.just(DELETE), valid_keys, st.just(b""), st.none()))
    for op in draw(st.lists(valid_ops, max_size=20)):
        if draw(st.booleans()):
            run.append(((op,), None))
        else:
            ts += draw(st.integers(-10, 10**6)) if draw(st.integers(0, 9)) else -ts // 2
            run.append(((op,), ts))
    return run


runs = st.one_of(st.lists(commits, max_size=20), simple_runs())


def sequenced(fn: Callable[[], object]) -> tuple[str, object]:
    try:
        queued, times_, pieces = fn()  # type: ignore[misc]
    except InvalidArgument as exc:
        return "refused", str(exc)
    return "sequenced", (queued, times_, b"".join(pieces))


class Clock:
    """A clock that moves on `step` ns at each read (0: stands still)."""

    def __init__(self, step: int) -> None:
        self.now, self.step = NOW, step

    def __call__(self) -> int:
        self.now += self.step
        return self.now


def refuse(sequenced: int, last_ts: int, ts_ns: int | None) -> None:
    raise InvalidArgument(f"refused after {sequenced} commits (last {last_ts}): {ts_ns}")


@given(runs, st.integers(0, 1 << 40), st.integers(NOW - 10**7, NOW + 10**7),
       st.sampled_from([0, NOW, NOW + 10**6]), st.sampled_from([0, 1, 1000]),
       st.sampled_from([0, 300 * 10**9, float("inf")]))
def test_a_run_is_sequenced_as_the_reference_sequences_it(
        run: list[tuple[tuple[Op, ...], int | None]], first_lsn: int, last_ts: int, promised: int, step: int,
        max_skew: float) -> None:
    compiled = run_encode.sequence_run(run, first_lsn, last_ts, promised, Clock(step), max_skew)
    expected = sequenced(lambda: run_encode.sequence_run_reference(run, first_lsn, last_ts, promised, Clock(step),
                                                                    max_skew, refuse))
    simple = all(len(ops) == 1 and type(ops[0]) is tuple and ops[0][0] in (PUT, DELETE) and ops[0][3] is None
                 for ops, _ts in run)
    event("taken" if compiled is not None else "left")
    if compiled is None:
        # left to the reference: a run it does not take, or one the reference refuses
        assert not run or not simple or expected[0] == "refused", "a run the compiled loop should take"
    else:
        assert expected == sequenced(lambda: compiled)


def test_a_run_of_a_million_bytes_of_records_is_one_buffer() -> None:
    run = [(((PUT, f"key:{i:08d}".encode(), b"v" * 100, None),), None) for i in range(10_000)]
    compiled = run_encode.sequence_run(run, 1, 0, 0, Clock(1), float("inf"))
    assert compiled is not None
    queued, times_, pieces = compiled
    assert len(pieces) == 1
    assert len(pieces[0]) == 10_000 * (44 + 12 + 100)
    assert (queued, times_, pieces[0]) == sequenced(
        lambda: run_encode.sequence_run_reference(run, 1, 0, 0, Clock(1), float("inf"), refuse))[1]


@pytest.mark.parametrize(("ahead", "taken"), [(300 * 10**9, True), (300 * 10**9 + 1, False)])
def test_a_time_at_the_skew_limit_is_taken_and_one_past_it_is_left_to_the_refusal(ahead: int, taken: bool) -> None:
    run = [(((PUT, b"k", b"v", None),), NOW + ahead)]
    compiled = run_encode.sequence_run(run, 1, 0, 0, Clock(0), 300 * 10**9)
    expected = sequenced(lambda: run_encode.sequence_run_reference(run, 1, 0, 0, Clock(0), 300 * 10**9, refuse))
    assert (compiled is not None) == taken
    assert expected[0] == ("sequenced" if taken else "refused")
    if compiled is not None:
        assert sequenced(lambda: compiled) == expected


any_ops = st.one_of(simple_ops, st.tuples(st.just(PUT), keys, values, st.integers(0, NOW)),
                    st.builds(Op, st.just(DELETE), st.sampled_from([b"a", b"b", b"c"])),
                    st.builds(Op, st.just(PUT), st.sampled_from([b"a", b"b", b"c"]), values,
                              st.one_of(st.none(), st.integers(0, NOW))))


@given(st.lists(st.lists(any_ops, min_size=1, max_size=3).map(tuple), max_size=20), st.integers(0, 20),
       st.dictionaries(st.sampled_from([b"a", b"b", b"z"]), st.one_of(st.none(), values), max_size=3))
def test_a_durable_group_is_made_visible_as_the_reference_makes_it(
        commits: list[tuple[Op, ...]], count: int, pending: dict[bytes, object]) -> None:
    count = min(count, len(commits))
    unacked, expected_unacked = deque(commits), deque(commits)
    got, expected = dict(pending), dict(pending)
    run_encode.make_visible(unacked, count, got)  # type: ignore[arg-type]
    run_encode.make_visible_reference(expected_unacked, count, expected)  # type: ignore[arg-type]
    assert list(got.items()) == list(expected.items())
    assert unacked == expected_unacked
