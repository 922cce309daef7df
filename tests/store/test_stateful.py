"""The store, its archive and restore against a plain dict per moment (DESIGN.md, Semantics).

The machine is synchronous. The store under test runs in its own process
(tests/helpers/store_server.py: a trio loop with the store, a fake clock and an
in-process archiver; forked from a process that imported pitr once, so an
example or a crash costs no interpreter start-up), driven one request at a time, so the crash rule is a real
crash: SIGKILL while the process holds the store, with no final apply, no
final archive cycle and no lock release, then a new process that recovers
from the files. Restores run in the store's process against the live
repository into fresh directories; their raw LMDB contents (values and
expiries) are compared with the model.

The model: `state` maps key -> (value, expires_at_ns or None) with expired
entries kept; what a read at time T sees is the entries whose expiry is after T.
`history[n]` is the state after LSN n, with its commit time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.helpers.server_client import ServerError, StoreServer, pid_exists

Entry = tuple[bytes, int | None]
State = dict[bytes, Entry]

PICK = st.integers(0, 2**32 - 1)  # an index or an offset, reduced modulo what the history offers

START_NS = 1_800_000_000_000_000_000
SECOND = 1_000_000_000
# Keys share prefixes, include 0x00/0xff edges, one key indexed by digest in the catalog (> 480
# bytes) and one at the store's 511-byte limit.
KEYS = [b"a", b"ab", b"b", b"\x00", b"\xff", b"\xff\xff", b"k" * 481, b"z" * 511]
PREFIXES = [b"", b"a", b"\xff", b"k", b"z", b"\x00"]

keys = st.sampled_from(KEYS)
values = st.binary(max_size=6)
ttls = st.sampled_from([0.25, 0.5, 1, 2, 10])
deltas = st.sampled_from([0, 1, 2, 1000, SECOND // 4, SECOND, 3 * SECOND]) | st.integers(0, 5 * SECOND)
put_ops = st.tuples(st.just("put"), keys, values, st.none() | ttls)
delete_ops = st.tuples(st.just("delete"), keys, st.just(b""), st.none())
batch_ops = st.lists(put_ops | delete_ops, min_size=1, max_size=5)


@dataclass(frozen=True)
class Moment:
    lsn: int
    ts_ns: int
    state: State


def visible(state: State, at_ns: int) -> State:
    """What a read at `at_ns` sees: entries without expiry or expiring after it."""
    return {k: e for k, e in state.items() if e[1] is None or e[1] > at_ns}


def hexed(data: bytes | None) -> str | None:
    return None if data is None else data.hex()


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="pitr-stateful-")
        self.data = os.path.join(self.root, "data")
        self.repo = os.path.join(self.root, "repo")
        self.clock = START_NS
        self.server = StoreServer(self.data, self.repo, self.clock)
        self.store_id = self.server.ready["store_id"]
        self.state: State = {}
        # history[0] is the empty store before LSN 1, dated at creation (the clock then).
        self.history = [Moment(0, START_NS, {})]
        self.snapshots: list[int] = []
        self.first_restorable = 0  # retention removed the log before this LSN's snapshot
        self.watermark_ns = 0  # the latest completeness time the archive has published
        self.max_clock = self.clock  # the archive may have declared completeness up to this - 1
        self.restores = 0

    def teardown(self) -> None:
        try:
            self.server.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # helpers -------------------------------------------------------------------------
    @property
    def last(self) -> Moment:
        return self.history[-1]

    def set_clock(self, ns: int) -> None:
        self.clock = ns
        self.max_clock = max(self.max_clock, ns)
        self.server.request("clock", ns=ns)

    @property
    def promised_ns(self) -> int:
        """No commit may get a time at or before this: the archive may have called it complete."""
        return max(self.watermark_ns, self.max_clock - 1)

    def clock_ahead_of_last_commit(self) -> None:
        """TTL counts from the commit time; keep the clock ahead of every earlier time so the
        commit time is the clock's reading (test_store.py covers a stalled clock)."""
        floor = max(self.last.ts_ns, self.promised_ns) + 1
        if self.clock < floor:
            self.set_clock(floor)

    def expiry(self, ts_ns: int, ttl: float | None) -> int | None:
        return None if ttl is None else ts_ns + int(ttl * SECOND)

    def record(self, commit: dict[str, int], ops: list[tuple[str, bytes, bytes, float | None]],
               ts_ns: int | None = None) -> None:
        """Check a returned commit against the semantics and apply its ops to the model."""
        lsn, ts = commit["lsn"], commit["ts"]
        assert lsn == self.last.lsn + 1, f"LSNs must be dense: got {lsn} after {self.last.lsn}"
        last_ts = self.last.ts_ns if self.last.lsn else 0
        least = max(self.clock, last_ts + 1) if ts_ns is None else ts_ns
        if least > self.promised_ns:
            assert ts == least, f"commit time must be max(clock, last + 1) = {least}, got {ts}"
        else:
            assert ts >= least, f"commit time {ts} is before max(clock, last + 1) = {least}"
        assert ts > self.watermark_ns, (
            f"commit at LSN {lsn} got time {ts}, at or before {self.watermark_ns}, through which the "
            "archive already said it was complete: a restore to that time has changed retroactively")
        for kind, key, value, ttl in ops:
            if kind == "put":
                self.state[key] = (value, self.expiry(ts, ttl))
            else:
                self.state.pop(key, None)
        self.history.append(Moment(lsn, ts, dict(self.state)))

    def note_watermark(self, mark: list[int] | None) -> None:
        if mark is not None:
            assert mark[0] <= self.last.lsn
            self.watermark_ns = max(self.watermark_ns, mark[1])

    # writes --------------------------------------------------------------------------
    @rule(key=keys, value=values)
    def put(self, key: bytes, value: bytes) -> None:
        self.record(self.server.request("put", key=key.hex(), value=value.hex()), [("put", key, value, None)])

    @rule(key=keys, value=values, ttl=ttls)
    def put_with_ttl(self, key: bytes, value: bytes, ttl: float) -> None:
        self.clock_ahead_of_last_commit()
        commit = self.server.request("put", key=key.hex(), value=value.hex(), ttl=ttl)
        self.record(commit, [("put", key, value, ttl)])

    @rule(key=keys)
    def delete(self, key: bytes) -> None:
        self.record(self.server.request("delete", key=key.hex()), [("delete", key, b"", None)])

    @rule(ops=batch_ops)
    def batch(self, ops: list[tuple[str, bytes, bytes, float | None]]) -> None:
        self.clock_ahead_of_last_commit()
        commit = self.server.request("batch", ops=[[k, key.hex(), v.hex(), t] for k, key, v, t in ops])
        self.record(commit, ops)

    @rule(ops=batch_ops)
    def abandoned_batch(self, ops: list[tuple[str, bytes, bytes, float | None]]) -> None:
        """A batch whose block raises commits nothing and uses no LSN."""
        self.clock_ahead_of_last_commit()
        reply = self.server.request("batch_abort", ops=[[k, key.hex(), v.hex(), t] for k, key, v, t in ops])
        assert reply == {"last_lsn": self.last.lsn}

    @rule(data=st.data(), key=keys, new=st.none() | values, matching=st.booleans())
    def compare_and_set(self, data: st.DataObject, key: bytes, new: bytes | None, matching: bool) -> None:
        current = visible(self.state, self.clock).get(key)
        actual = None if current is None else current[0]
        if matching:
            expected = actual
        else:
            expected = data.draw(st.none() | values | st.sampled_from([b"", b"\x00"]), label="expected")
        commit = self.server.request("cas", key=key.hex(), expected=hexed(expected), new=hexed(new))
        if expected != actual:
            assert commit is None, f"CAS expecting {expected!r} wrote over {actual!r}"
            return
        assert commit is not None, f"CAS expecting the current {actual!r} wrote nothing"
        self.record(commit, [("put", key, new, None) if new is not None else ("delete", key, b"", None)])

    @rule(ops=batch_ops, gap=st.integers(1, 3 * SECOND))
    def commit_with_time(self, ops: list[tuple[str, bytes, bytes, float | None]], gap: int) -> None:
        """An import-style commit with its own time; TTL counts from that time."""
        ts = max(self.last.ts_ns, self.promised_ns) + gap
        raw = [[k, key.hex(), v.hex(), self.expiry(ts, t) if k == "put" else None] for k, key, v, t in ops]
        self.record(self.server.request("commit", ops=raw, ts_ns=ts), ops, ts_ns=ts)

    # time ----------------------------------------------------------------------------
    @rule(delta=deltas)
    def advance_clock(self, delta: int) -> None:
        self.set_clock(self.clock + delta)

    @precondition(lambda self: any(e[1] is not None and e[1] > self.clock - 2 for e in self.state.values()))
    @rule(data=st.data(), offset=st.sampled_from([-1, 0, 1]))
    def advance_to_an_expiry(self, data: st.DataObject, offset: int) -> None:
        """Land exactly on an expiry (and one ns either side): the key vanishes at its expiry."""
        expiries = sorted({e[1] for e in self.state.values() if e[1] is not None and e[1] > self.clock - 2})
        at = data.draw(st.sampled_from(expiries), label="expiry")
        self.set_clock(max(self.clock, at + offset))

    @rule(ahead=st.integers(0, 3 * SECOND), back=st.integers(1, 2 * SECOND))
    def clock_steps_back(self, ahead: int, back: int) -> None:
        """Wall clocks step backwards (NTP). Commit times must still increase, and must stay
        after the time through which the archive has already declared itself complete."""
        self.set_clock(self.clock + ahead)
        self.note_watermark(self.server.request("archive")["watermark"])
        self.set_clock(self.clock - back)

    # durability ----------------------------------------------------------------------
    @rule()
    def crash_and_reopen(self) -> None:
        crashed = self.server.pid
        self.server.kill()
        assert not pid_exists(crashed), "the crashed server is gone before the next one opens the store"
        self.server = StoreServer(self.data, self.repo, self.clock)
        ready = self.server.ready
        assert ready["pid"] == self.server.pid != crashed
        assert ready["store_id"] == self.store_id
        assert ready["last_lsn"] == self.last.lsn, "recovery lost or invented commits"
        assert ready["torn"] == 0, "no write was in flight, so there is no torn tail to cut"

    @rule()
    def close_and_reopen(self) -> None:
        self.server.close()
        self.server = StoreServer(self.data, self.repo, self.clock)
        assert self.server.ready["last_lsn"] == self.last.lsn

    @rule()
    def flush(self) -> None:
        self.server.request("flush")

    @rule()
    def archive(self) -> None:
        reply = self.server.request("archive")
        self.note_watermark(reply["watermark"])
        segments = reply["segments"]
        if self.last.lsn:
            assert segments[-1][1] == self.last.lsn
            if self.first_restorable:  # retention removed the log the oldest kept snapshot does not need
                assert segments[0][0] <= self.first_restorable
            else:
                assert segments[0][0] == 1
        for (_, last), (first, _) in zip(segments, segments[1:], strict=False):
            assert first == last + 1, f"archive segments are not contiguous: {segments}"

    @rule()
    def snapshot(self) -> None:
        snap = self.server.request("snapshot")
        assert snap["lsn"] == self.last.lsn, "a snapshot after flush holds every acknowledged commit"
        assert snap["ts"] == self.last.ts_ns
        if snap["lsn"] not in self.snapshots:  # a second snapshot at the same LSN is the same file
            self.snapshots.append(snap["lsn"])

    @rule(keep_count=st.integers(1, 2))
    def cleanup(self, keep_count: int) -> None:
        """Retention keeps the newest snapshots (keep_days=0) and the log they need; nothing else."""
        self.server.request("archive")
        reply = self.server.request("cleanup", keep_count=keep_count)
        if not self.snapshots:
            assert reply["deleted_segments"] == [], "with no snapshot the start of history is the only base"
            return
        kept = self.snapshots[-keep_count:]
        assert reply["kept"] == kept
        assert all(last < kept[0] for _first, last in reply["deleted_segments"])
        if reply["segments"]:
            assert reply["segments"][0][1] >= kept[0], "the segment ending at the oldest kept snapshot stays"
        if reply["deleted_segments"] or (self.first_restorable and self.first_restorable not in kept):
            # the log before the oldest kept snapshot is gone, or its base was: a segment that
            # also holds later commits (a merge) stays, but nothing before that snapshot is restorable
            self.first_restorable = kept[0]
        self.snapshots = kept
        assert reply["windows"][0][0] <= max(self.first_restorable, 0)

    def restorable(self, moments: list[Moment], *, before_too: bool = False) -> list[Moment]:
        """The moments a restore can still reach after retention (with the commit before, for exclusive)."""
        least = self.first_restorable + (1 if before_too else 0)
        return [m for m in moments if m.lsn >= least]

    # restore -------------------------------------------------------------------------
    def restore(self, target: dict[str, Any]) -> dict[str, Any]:
        self.restores += 1
        dest = os.path.join(self.root, f"restored-{self.restores}")
        try:
            return dict(self.server.request("restore", target=target, dest=dest))
        finally:
            shutil.rmtree(dest, ignore_errors=True)

    def check_restored(self, got: dict[str, Any], moment: Moment, cutoff_ns: int, what: str) -> None:
        expected = visible(moment.state, cutoff_ns)
        entries = {bytes.fromhex(k): (bytes.fromhex(v), e) for k, v, e in got["entries"]}
        assert got["target_lsn"] == moment.lsn, f"{what}: restored through LSN {got['target_lsn']}"
        assert entries == expected, f"{what}: restored state differs from the model at LSN {moment.lsn}"
        assert got["applied_lsn"] == moment.lsn
        assert got["store_id"] == got["result_store_id"] != self.store_id, "a restore is a new history"
        assert got["first_lsn"] == moment.lsn + 1, "the restored store continues after the target"
        assert (got["parent"]["store_id"], got["parent"]["lsn"]) == (self.store_id, moment.lsn)
        assert got["files"] == ["state", "wal"]
        if self.snapshots and moment.lsn >= self.snapshots[-1]:
            assert got["base_lsn"] == max(s for s in self.snapshots if s <= moment.lsn)

    @precondition(lambda self: self.last.lsn > 0)
    @rule(data=st.data())
    def restore_to_a_commit(self, data: st.DataObject) -> None:
        """At a commit's exact time (inclusive and exclusive) and at its LSN."""
        pick = data.draw(PICK, label="commit")  # drawn first: what the rule draws never depends on the history
        choices = self.restorable(self.history[1:])
        if not choices:
            return
        moment = choices[pick % len(choices)]
        before = self.history[moment.lsn - 1]
        self.check_restored(self.restore({"time_ns": moment.ts_ns}), moment, moment.ts_ns,
                            f"time {moment.ts_ns} inclusive")
        if before.lsn >= self.first_restorable:
            self.check_restored(self.restore({"time_ns": moment.ts_ns, "exclusive": True}), before,
                                moment.ts_ns - 1, f"time {moment.ts_ns} exclusive")
        else:
            with pytest.raises(ServerError, match="OutsideWindow"):
                self.restore({"time_ns": moment.ts_ns, "exclusive": True})
        self.check_restored(self.restore({"lsn": moment.lsn}), moment, moment.ts_ns, f"LSN {moment.lsn}")

    @precondition(lambda self: self.last.lsn > 0)
    @rule(data=st.data())
    def restore_between_commits(self, data: st.DataObject) -> None:
        """A time strictly between two commits restores the earlier one, TTL judged at that time."""
        # Both draws come first: commit times are the server's answers (a killed server's promise
        # floor among them), so a draw made only for some histories makes hypothesis's replay flaky.
        pick, offset = data.draw(PICK, label="commit"), data.draw(PICK, label="time")
        choices = self.restorable(self.history[1:-1] or self.history[1:])
        if not choices:
            return
        moment = choices[pick % len(choices)]
        if moment.lsn == self.last.lsn:
            return
        following = self.history[moment.lsn + 1]
        if following.ts_ns - moment.ts_ns < 2:
            return
        at = moment.ts_ns + 1 + offset % (following.ts_ns - moment.ts_ns - 1)  # strictly between the two
        self.check_restored(self.restore({"time_ns": at}), moment, at, f"time {at}")

    @precondition(lambda self: self.last.lsn > 0)
    @rule(data=st.data())
    def restore_in_the_quiet_interval(self, data: st.DataObject) -> None:
        """After the last commit, up to the watermark, a time target is exact; after it, refused."""
        reply = self.server.request("archive")
        self.note_watermark(reply["watermark"])
        mark = reply["watermark"]
        if mark is None:
            return
        assert mark[0] == self.last.lsn, "the archiver shipped every durable commit"
        if mark[1] > self.last.ts_ns:
            at = data.draw(st.integers(self.last.ts_ns + 1, mark[1]), label="quiet time")
            self.check_restored(self.restore({"time_ns": at}), self.last, at, f"quiet time {at}")
        latest = self.restore({"latest": True})
        self.check_restored(latest, self.last, mark[1], "latest")
        with pytest.raises(ServerError, match="OutsideWindow") as info:
            self.restore({"time_ns": mark[1] + 1})
        window = info.value.doc["windows"][-1]
        assert (window[1], window[3]) == (mark[1], self.last.lsn), "the refusal shows the window"

    @precondition(lambda self: self.last.lsn > 0)
    @rule()
    def restore_outside_the_window(self) -> None:
        for target in ({"lsn": self.last.lsn + 1}, {"time_ns": self.history[0].ts_ns - SECOND}):
            with pytest.raises(ServerError, match="OutsideWindow") as info:
                self.restore(target)
            assert info.value.doc["windows"], "the refusal names the recoverable windows"

    # reads ---------------------------------------------------------------------------
    @rule(prefix=st.sampled_from(PREFIXES), start=st.none() | keys, end=st.none() | keys,
          limit=st.none() | st.integers(1, 4))
    def scan_range(self, prefix: bytes, start: bytes | None, end: bytes | None, limit: int | None) -> None:
        rows = self.server.request("scan", prefix=prefix.hex(), start=hexed(start), end=hexed(end), limit=limit)
        expected = sorted((k, v) for k, (v, _e) in visible(self.state, self.clock).items()
                          if k.startswith(prefix) and (start is None or k >= start)
                          and (end is None or k < end))
        if limit is not None:
            expected = expected[:limit]
        assert [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in rows] == expected

    @invariant()
    def store_matches_model(self) -> None:
        got = self.server.request("state", keys=[k.hex() for k in KEYS])
        live = visible(self.state, self.clock)
        assert got["last_lsn"] == got["durable_lsn"] == self.last.lsn
        scan = [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in got["scan"]]
        assert scan == sorted((k, v) for k, (v, _e) in live.items()), f"scan at {self.clock} differs"
        for key in KEYS:
            found = got["got"][key.hex()]
            entry = None if found is None else (bytes.fromhex(found[0]), found[1])
            assert entry == live.get(key), f"get_with_expiry({key[:8]!r}) at {self.clock}"


# How many examples run is the profile's (tests/conftest.py); the steps per example are this machine's.
StoreMachine.TestCase.settings = settings(
    stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestStoreMachine = StoreMachine.TestCase
