"""A run of commits sequenced and encoded in one pass: the inner loop of `Store.queue_commits`.

`sequence_run` checks each commit's operations (`check_ops`), gives it its time by the store's
rules (a commit without one is timed by the clock, and after the last commit and the store's
promised floor; an explicit one must be after them and not too far ahead of the clock), and
encodes the run's records. The compiled twin in `pitr.store._run_encode` (built at install, as
`segments._block_replay` is) takes a run of single puts and deletes without expiry in C and
returns None for any other run, or for one with a commit it would refuse: the reference below
then sequences it and words the refusal. `make_visible` (a durable group's changes into the
store's overlay) has its twin there too. tests/store/test_run_encode.py holds each pair equal (the same records, byte for
byte, the same times, the same overlay) on random runs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence

from pitr.datadir.keys import check_ops
from pitr.errors import InvalidArgument
from segments import record as rec
from segments.compiled import compiled_module
from segments.fold import Change
from segments.record import PUT, Op

# (ops of each commit, its time, the run's records in pieces)
Sequenced = tuple[list[tuple[Op, ...]], list[int], list[bytes]]
PlainOp = tuple[int, bytes, bytes, "int | None"]  # an Op's fields (an Op is one): what a queued commit holds
Refuse = Callable[[int, int, "int | None"], None]  # (commits sequenced before it, last time, its ts): raises
SequenceRun = Callable[[Sequence[tuple[Sequence[Op], "int | None"]], int, int, int, Callable[[], int], float],
                       "Sequenced | None"]


def sequence_run_reference(commits: Iterable[tuple[Sequence[Op], int | None]], first_lsn: int, last_ts: int,
                           promised: int, clock: Callable[[], int], max_skew: float,
                           refuse: Refuse) -> Sequenced:
    """Each (ops, ts_ns) of the run as its own commit, LSN first_lsn, first_lsn + 1, ...: its ops
    checked, its time stamped, its record encoded. A commit the rules refuse is handed to `refuse`
    (which raises, worded as for a single commit); a record over a limit raises InvalidArgument."""
    queued: list[tuple[Op, ...]] = []
    times: list[int] = []
    for ops, ts_ns in commits:
        if type(ops) is not tuple:
            ops = tuple(ops)
        if not ops:
            raise InvalidArgument("a commit needs at least one operation")
        check_ops(ops)
        floor = last_ts if last_ts > promised else promised
        if ts_ns is None:
            now = clock()
            ts = now if now > floor else floor + 1
        elif ts_ns > floor and ts_ns - clock() <= max_skew:
            ts = ts_ns
        else:
            refuse(len(times), last_ts, ts_ns)
            raise AssertionError("unreachable: the refusal did not raise")
        queued.append(ops)
        times.append(ts)
        last_ts = ts
    try:
        pieces = rec.encode_run(first_lsn, times, queued)
    except ValueError as exc:
        raise InvalidArgument(f"a commit in the run from LSN {first_lsn}: {exc}") from exc
    return queued, times, pieces


def make_visible_reference(unacked: deque[tuple[PlainOp, ...]], count: int, pending: dict[bytes, Change]) -> None:
    """Take the ops of the `count` oldest commits of `unacked` (now durable) into `pending`, in order:
    each key's latest change, its value (with its expiry, if any) or None for a delete."""
    popleft = unacked.popleft
    for _ in range(count):
        for kind, key, value, expires in popleft():
            pending[key] = (value if expires is None else (value, expires)) if kind == PUT else None


def _no_compiled(commits: Sequence[tuple[Sequence[Op], int | None]], first_lsn: int, last_ts: int,
                 promised: int, clock: Callable[[], int], max_skew: float) -> Sequenced | None:
    return None


MakeVisible = Callable[["deque[tuple[PlainOp, ...]]", int, "dict[bytes, Change]"], None]


def _load() -> tuple[SequenceRun, MakeVisible, bool]:
    compiled = compiled_module("pitr.store._run_encode", 'runs of commits are encoded in pure Python')
    if compiled is None:
        return _no_compiled, make_visible_reference, False
    return compiled.sequence_run, compiled.make_visible, True


sequence_run, make_visible, COMPILED = _load()
