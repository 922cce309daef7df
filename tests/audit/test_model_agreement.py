"""Property: history, value_at, commit_log and diff agree with a model of the commits written.

Random histories (puts, deletes, batches touching a key twice, TTLs that end
exactly on commit times, adjacent timestamps, snapshots, long keys) go through
a real Store and archiver that seals many small segments and merges them; then
every answer is compared with the plain list of commits, with and without the
log before the first snapshot (retention by hand).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence

import pytest
import trio
from hypothesis import event, given
from hypothesis import strategies as st

from pitr.audit import commit_log, diff, history, open_value_reader, value_at
from pitr.audit.window import locate
from pitr.errors import OutsideWindow
from pitr.repo.repository import Repository, open_repository
from pitr.timeline import build_timeline
from segments import record as rec
from tests.audit.model import (
    LONG_A,
    LONG_B,
    Commit,
    Step,
    Written,
    check_value,
    drop_segments_before,
    keys_of,
    last_change,
    net_ops,
    state_at,
    visible,
    write_history,
)
from tests.audit.test_key_table_model import weak_index

KEYS = [b"a/1", b"a/2", b"b/1", b"b", LONG_A, LONG_B]
PREFIXES = [b"a/", b"b", b"long/", b"zzz", b""]

keys = st.sampled_from(KEYS)
values = st.binary(max_size=6)
ttls = st.none() | st.integers(1, 12)  # nanoseconds: expiries land on and between commit times
puts = st.tuples(st.just("put"), keys, values, ttls)
deletes = st.tuples(st.just("delete"), keys)
batches = st.tuples(st.just("batch"), st.lists(puts | deletes, min_size=2, max_size=4))
writes = st.one_of(puts, puts, deletes, batches,
                   st.tuples(st.just("tick"), st.sampled_from([0, 0, 1, 2, 3, 7, 1000])))
# a round: some writes, then an archive cycle (a segment, merged with its neighbours when small),
# sometimes a snapshot
rounds = st.tuples(st.lists(writes, min_size=1, max_size=6), st.booleans(), st.sampled_from([False] * 3 + [True]))


@st.composite
def histories(draw: st.DrawFn) -> list[Step]:
    steps: list[Step] = [draw(puts)]
    for round_writes, cycle, snapshot in draw(st.lists(rounds, min_size=1, max_size=8)):
        steps.extend(round_writes)
        if cycle:
            steps.append(("cycle",))
        if snapshot:
            steps.append(("snapshot",))
    return steps


def interesting_times(written: Written) -> list[int]:
    times = {written.created_ns - 1, written.created_ns, written.final_ns, written.final_ns + 1}
    for commit in written.commits:
        times.update((commit.ts_ns - 1, commit.ts_ns, commit.ts_ns + 1))
        for op in commit.ops:
            if op.expires_at_ns is not None:
                times.update((op.expires_at_ns - 1, op.expires_at_ns))
    for _lsn, ts in written.snapshots:
        times.update((ts - 1, ts, ts + 1))
    return sorted(times)


def archived(repo: Repository, commits: list[Commit]) -> list[Commit]:
    ranges = [(s.first_lsn, s.last_lsn) for s in repo.catalog.segments()]
    return [c for c in commits if any(a <= c.lsn <= b for a, b in ranges)]


async def check_all(repo: Repository, written: Written, data: st.DataObject, retained: bool) -> None:
    commits = written.commits
    ident = await repo.require_identity()
    timeline = build_timeline(repo.catalog, ident)
    assert len(timeline.windows) == 1, timeline
    window = timeline.windows[0]
    first_segment = repo.catalog.first_segment()
    from_start = first_segment is not None and first_segment.first_lsn == 1
    if from_start:
        assert window.start_ns == min(written.created_ns, commits[0].ts_ns - 1)
    else:
        assert not retained or window.start_ns == written.snapshots[0][1]
    assert commits[-1].ts_ns <= window.end_ns <= written.final_ns
    all_keys = keys_of(commits)
    kept = archived(repo, commits)
    segments = repo.catalog.segments()
    event(f"segments: {min(len(segments), 4)}{'+' if len(segments) >= 4 else ''}")
    if any(len(s.pieces) > 1 for s in segments):
        event("lookups cross merged segments")
    if retained:
        event("log before the first snapshot deleted")
    from_snapshot = 0

    # value_at, inclusive and exclusive, at and around every commit and expiry
    times = interesting_times(written) + [window.start_ns, window.end_ns, window.end_ns + 1]
    async with open_value_reader(repo, timeline) as reader:
        for ts in sorted(set(times)):
            for exclusive in (False, True):
                inside = (window.start_ns < ts <= window.end_ns + 1) if exclusive else \
                    (window.start_ns <= ts <= window.end_ns)
                if not inside:
                    with pytest.raises(OutsideWindow) as caught:
                        reader.moment(ts, exclusive=exclusive)
                    assert caught.value.windows == [window]
                    continue
                moment = reader.moment(ts, exclusive=exclusive)
                for key in sorted(all_keys):
                    got = await reader.value_at(key, moment)
                    check_value(got, commits, key, ts, exclusive, moment.base.lsn)
                    from_snapshot += got is not None and got.snapshot is not None
    if from_snapshot:
        event("values read from a snapshot")
    inside_times = sorted({t for t in times if window.start_ns <= t <= window.end_ns})
    # the public one-shot function, on a sample
    ts = pick(data, inside_times, "value_at time")
    base_lsn = locate(timeline, ts).base.lsn
    for key in KEYS:
        check_value(await value_at(repo, key, ts), commits, key, ts, False, base_lsn)

    # Retention removed the log before the first snapshot: the history begins at the first kept
    # commit, and each key's value at the snapshot comes first in an unbounded history
    first_kept = min((c.lsn for c in kept), default=len(commits) + 1)
    removed = [c for c in commits if c.lsn < first_kept] if retained else []
    first_kept_ts = next((c.ts_ns for c in kept if c.lsn == first_kept), None)
    floor_snapshot = written.snapshots[0] if removed else None

    def before_floor(since_ns: int | None, since_lsn: int | None = None, until_ns: int | None = None,
                     until_lsn: int | None = None) -> tuple[bool, bool]:
        """(must, may): whether a range with an explicit start must, or may, be refused. It must be
        when a removed commit lies in it; it may be when only the time gap before the first kept
        commit does (the floor's time is then the first kept commit's, less 1 ns)."""
        if not removed or (since_ns is None and since_lsn is None):
            return False, False
        must = any((since_ns is None or c.ts_ns >= since_ns) and (since_lsn is None or c.lsn >= since_lsn)
                   and (until_ns is None or c.ts_ns <= until_ns) and (until_lsn is None or c.lsn <= until_lsn)
                   for c in removed)
        may = (since_lsn is None or since_lsn < first_kept) and \
            (since_ns is None or first_kept_ts is None or since_ns < first_kept_ts)
        return must, may

    def expected_history(key: bytes, since: int | None, until: int | None) -> list[tuple[object, ...]]:
        rows: list[tuple[object, ...]] = []
        for commit in kept:
            op = net_ops(commit).get(key)
            if op is not None and (since is None or commit.ts_ns >= since) and (until is None or commit.ts_ns <= until):
                rows.append((commit.lsn, commit.ts_ns, "put" if op.kind == rec.PUT else "delete",
                             op.value if op.kind == rec.PUT else None, op.expires_at_ns))
        if floor_snapshot is not None and since is None and (until is None or floor_snapshot[1] <= until):
            snap_lsn, snap_ts = floor_snapshot
            held = state_at(commits, {key}, snap_ts).get(key)
            if held is not None and not any(c.lsn <= snap_lsn and key in net_ops(c) for c in kept):
                rows.insert(0, (snap_lsn, snap_ts, "put", held[0], held[1]))
        return rows

    # history: every archived change, net effect per commit
    for key in KEYS:
        listed = [(c.lsn, c.ts_ns, c.op, c.value, c.expires_at_ns) async for c in history(repo, key)]
        assert listed == expected_history(key, None, None), key
    key = data.draw(keys, label="history key")
    since = maybe_pick(data, times, "history since")
    until = maybe_pick(data, times, "history until")
    must, may = before_floor(since, until_ns=until)
    try:
        got = [(c.lsn, c.ts_ns, c.op, c.value, c.expires_at_ns)
               async for c in history(repo, key, since_ns=since, until_ns=until)]
    except OutsideWindow:
        assert must or may, (since, until)
    else:
        assert not must, f"history from {since} answered, but retention removed commits in its range"
        assert got == expected_history(key, since, until)

    # commit_log with random bounds and prefixes
    for _ in range(3):
        since = maybe_pick(data, times, "log since")
        until = maybe_pick(data, times, "log until")
        since_lsn = data.draw(st.none() | st.integers(0, len(commits) + 1), label="log since_lsn")
        until_lsn = data.draw(st.none() | st.integers(0, len(commits) + 1), label="log until_lsn")
        prefix = data.draw(st.none() | st.sampled_from(PREFIXES), label="log prefix")
        expected_log = []
        for c in kept:
            if (since is not None and c.ts_ns < since) or (until is not None and c.ts_ns > until) or \
                    (since_lsn is not None and c.lsn < since_lsn) or (until_lsn is not None and c.lsn > until_lsn):
                continue
            ops = [op for op in c.ops if prefix is None or op.key.startswith(prefix)]
            if ops:
                expected_log.append((c.lsn, c.ts_ns, [(op.key, op.value if op.kind == rec.PUT else None,
                                                       op.expires_at_ns) for op in ops]))
        must, may = before_floor(since, since_lsn, until, until_lsn)
        try:
            got_log = [(c.lsn, c.ts_ns, [(op.key, op.value, op.expires_at_ns) for op in c.ops])
                       async for c in commit_log(repo, since_ns=since, until_ns=until, since_lsn=since_lsn,
                                                 until_lsn=until_lsn, prefix=prefix)]
        except OutsideWindow:
            assert must or may, (since, since_lsn)
            continue
        assert not must, f"the log from {since}/LSN {since_lsn} answered, but retention removed commits in it"
        assert got_log == expected_log

    # diff between two moments of the window
    for _ in range(3):
        t1 = pick(data, inside_times, "diff t1")
        t2 = pick(data, [t for t in inside_times if t >= t1], "diff t2")
        prefix = data.draw(st.none() | st.sampled_from(PREFIXES), label="diff prefix")
        scope = {k for k in all_keys if prefix is None or k.startswith(prefix)}
        before, after = state_at(commits, scope, t1), state_at(commits, scope, t2)
        expected_diff = set()
        for k in scope:
            b, a = before.get(k), after.get(k)
            if b != a:
                kind = "added" if b is None else "removed" if a is None else "changed"
                expected_diff.add((k, kind, b, a))
        found = [d async for d in diff(repo, t1, t2, prefix=prefix, timeline=timeline)]
        assert [d.key for d in found] == sorted(d.key for d in found)
        got_diff = {(d.key, d.kind, None if d.before is None else (d.before.value, d.before.expires_at_ns),
                     None if d.after is None else (d.after.value, d.after.expires_at_ns)) for d in found}
        assert got_diff == expected_diff, (t1 - written.created_ns, t2 - written.created_ns)
        # without the expiry scan, only keys some commit in (t1, t2] touched are reported
        touched = {op.key for c in commits if t1 < c.ts_ns <= t2 for op in c.ops}
        quick = {d.key async for d in diff(repo, t1, t2, prefix=prefix, include_expiry=False)}
        assert quick == {d[0] for d in expected_diff if d[0] in touched}


def pick(data: st.DataObject, items: Sequence[int], label: str) -> int:
    """One of `items`, drawn with constraints that do not depend on them.

    The list depends on the archiver's timing (whether a commit was still in
    flight when completeness was declared moves the window's end), and
    hypothesis requires every replay of an example to draw alike.
    """
    return items[data.draw(st.integers(0, 1 << 16), label=label) % len(items)]


def maybe_pick(data: st.DataObject, items: Sequence[int], label: str) -> int | None:
    """None, or one of `items` (see `pick`)."""
    return None if data.draw(st.booleans(), label=f"{label} given") else pick(data, items, label)


@given(steps=histories(), retain=st.booleans(), data=st.data())
def test_audit_agrees_with_model(steps: list[Step], retain: bool, data: st.DataObject) -> None:
    agree_with_model(steps, retain, data)


@given(steps=histories(), retain=st.booleans(), data=st.data())
def test_audit_agrees_with_model_when_key_digests_collide(steps: list[Step], retain: bool,
                                                          data: st.DataObject) -> None:
    """The same, with a key digest of three values: the index names other keys' commits too."""
    with weak_index():
        agree_with_model(steps, retain, data)


def agree_with_model(steps: list[Step], retain: bool, data: st.DataObject) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as root:
            written = await write_history(root, steps)
            async with open_repository(f"{root}/repo") as repo:
                await repo.sync()
                retained = False
                if retain and written.snapshots:
                    retained = bool(await drop_segments_before(repo, written.snapshots[0][0]))
                await check_all(repo, written, data, retained)

    trio.run(main)


def test_model_helpers_are_consistent() -> None:
    """The model itself: a put expiring at T is absent at T and present just before."""
    put = Commit(1, 10, (rec.Op(rec.PUT, b"k", b"v", 15),))
    assert visible(last_change([put], b"k", 14, False), 14) is not None
    assert visible(last_change([put], b"k", 15, False), 15) is None
    assert last_change([put], b"k", 10, True) is None
