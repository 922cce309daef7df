"""`Store`: the embedded key-value store whose every commit is logged before it is acknowledged.

Commit path: a writer encodes its commit as one WAL record and adds it to the
open group; the WAL thread (`_group_commit.py`) writes every queued record and
fsyncs once for all of them, then hands the group back to the event loop, which
makes it visible and wakes the writers. The
apply task later writes the durable changes into LMDB in large, key-sorted
transactions; reads look at the not-yet-applied changes first, then LMDB.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType

import anyio
import anyio.abc

from pitr.datadir.keys import check_key, check_ops, check_put, check_value, ttl_ns
from pitr.datadir.overlay import merge, prefix_end, visible
from pitr.datadir.state import StateDB, StoreIdentity
from pitr.datadir.wal import WalDirectory
from pitr.errors import FileError, InvalidArgument, PitrError, StoreClosed
from pitr.jsontypes import JSONObject
from pitr.store._group_commit import Group, GroupCommitter, loop_hooks
from pitr.store.batch import Batch
from pitr.store.conditional import Expected, Mismatch, mismatches
from pitr.store.log import StoreLog
from pitr.store.options import StoreOptions
from pitr.store.queued import Commit, QueuedCommits
from pitr.store.run_encode import PlainOp, make_visible, sequence_run, sequence_run_reference
from pitr.timefmt import format_ns
from segments import record as rec
from segments.fold import Change
from segments.record import DELETE, PUT, Op
from segments.wal import TornTail, WalFileOps

Clock = Callable[[], int]
_new_tuple = tuple.__new__  # builds a NamedTuple in one C call (the hot paths build one per commit)
log = logging.getLogger("pitr.store")


class Store:
    """An embedded, durable key-value store with a write-ahead log for point-in-time recovery.

    Open it with ``async with Store(path) as store``. Keys and values are bytes.
    Every commit (a put, a delete or a batch) gets a dense LSN and a strictly
    increasing commit time, and is acknowledged only once it is fsynced.
    """

    def __init__(self, path: str, options: StoreOptions | None = None, *, clock: Clock | None = None,
                 wal_ops: WalFileOps | None = None) -> None:
        """`clock` (ns since the epoch) times commits and judges TTLs; `wal_ops` carries the WAL
        writer's system calls (tests trace or fault them)."""
        self.path = os.path.abspath(path)
        self.options = options = options or StoreOptions()
        self._clock: Clock = clock or time.time_ns
        self._apply_interval = options.apply_interval
        self._apply_threshold = options.apply_threshold
        self._max_skew_ns = options.max_skew_ns
        self._wal_ops = wal_ops or WalFileOps()
        self._log: StoreLog | None = None
        self._state: StateDB | None = None
        self._wal_dir: WalDirectory | None = None
        self.identity: StoreIdentity | None = None
        self._torn_tails: list[TornTail] = []  # what recovery repaired (see StoreLog)
        # sequencing (event-loop thread only)
        self._last_lsn = 0
        self._last_ts = 0
        self._ts_floor = 0  # no commit may be timed at or before this (raised by promise_complete)
        # the ops of commits sequenced, not yet durable (an `Op`, or a plain tuple of its four fields)
        self._unacked: deque[tuple[PlainOp, ...]] = deque()  # Ops, or their fields in plain tuples (the GC
        # can untrack those)
        self._committer: GroupCommitter | None = None
        # durable, visible, not yet in LMDB
        self._durable_lsn = 0
        self._durable_ts = 0
        self._pending: dict[bytes, Change] = {}
        self._applying: dict[bytes, Change] = {}
        self._applied_lsn = 0
        self._apply_wake = anyio.Event()
        self._apply_lock = anyio.Lock()
        self._failure: BaseException | None = None
        self._apply_failure: PitrError | None = None  # raised when the block ends: the body never saw it
        self._closing = False
        self._tg: anyio.abc.TaskGroup | None = None

    # lifecycle -----------------------------------------------------------------
    async def __aenter__(self) -> Store:
        await anyio.to_thread.run_sync(self._open_sync)
        assert self._log is not None
        self._committer = GroupCommitter(self._log.write_group, loop_hooks(), self._group_durable,
                                         self._group_failed)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._wal_thread)
        self._tg.start_soon(self._apply_task)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._closing = True
        assert self._committer is not None
        self._committer.close()
        self._apply_wake.set()
        assert self._tg is not None
        try:
            # The body's own exception is not handed to the task group (it would come back wrapped
            # in an ExceptionGroup); only cancellation is, so the group's scopes unwind correctly.
            if exc is not None and isinstance(exc, anyio.get_cancelled_exc_class()):
                await self._tg.__aexit__(exc_type, exc, tb)
            else:
                await self._tg.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._close_sync)
        if exc is None and self._apply_failure is not None:
            raise self._apply_failure

    def _open_sync(self) -> None:
        self._log = log_ = StoreLog(self.path, self.options, self._clock, self._wal_ops)
        self._state, self._wal_dir, self.identity = log_.state, log_.wal_dir, log_.identity
        self._torn_tails = log_.torn
        self._last_lsn = self._durable_lsn = self._applied_lsn = log_.last_lsn
        self._last_ts = self._durable_ts = log_.last_ts
        self._ts_floor = log_.promised_ns

    def _close_sync(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
            self._state = None

    # background tasks --------------------------------------------------------
    async def _wal_thread(self) -> None:
        """Run the WAL thread for the store's lifetime (it returns once closed and drained)."""
        assert self._committer is not None
        await anyio.to_thread.run_sync(self._committer.run, limiter=anyio.CapacityLimiter(1))
        self._apply_wake.set()

    def _group_durable(self, group: Group) -> None:
        """(event loop) A group is fsynced: make it visible to reads, then wake its writers."""
        pending = self._pending
        make_visible(self._unacked, group.count, pending)
        self._durable_lsn, self._durable_ts = group.last_lsn, group.last_ts
        group.done.set()
        if len(pending) >= self._apply_threshold:
            self._apply_wake.set()

    def _group_failed(self, group: Group, exc: BaseException) -> None:
        """(event loop) A group could not be made durable: the store stops acknowledging writes."""
        assert self._log is not None
        exc = self._log.translate_error(exc)
        if self._failure is None:
            self._failure = exc
        for _ in range(group.count):
            self._unacked.popleft()  # never durable: no longer a sequenced commit that CAS must see
        group.error = exc
        group.done.set()
        self._apply_wake.set()

    async def _apply_task(self) -> None:
        while True:
            with anyio.move_on_after(self._apply_interval):
                await self._apply_wake.wait()
            self._apply_wake = anyio.Event()
            stopping = self._closing and self._durable_lsn == self._last_lsn
            if self._pending and self._failure is None:
                try:
                    await self._apply_pending()
                except PitrError:
                    return  # recorded as the store's failure; raised when the block ends
            if stopping or self._failure is not None:
                return

    async def _apply_pending(self) -> None:
        assert self._state is not None
        async with self._apply_lock:
            if not self._pending:
                return
            self._applying, self._pending = self._pending, {}
            lsn, ts = self._durable_lsn, self._durable_ts
            try:
                assert self._log is not None
                position = self._log.wal_position(lsn)  # where readers start folding the WAL after it
                await anyio.to_thread.run_sync(self._state.apply, self._applying, lsn, ts, position)
            except PitrError as exc:
                self._pending, self._applying = {**self._applying, **self._pending}, {}
                self._fail_apply(exc, lsn)
                raise
            self._applying = {}
            self._applied_lsn = lsn
        await anyio.to_thread.run_sync(self._remove_old_wal_sync)

    def _fail_apply(self, exc: PitrError, lsn: int) -> None:
        """Applying to LMDB failed: stop acknowledging, and say that the WAL holds the commits."""
        exc.args = (f"{exc}; every commit through LSN {lsn} is durable in the WAL and is applied when "
                    f"the store is next opened",)
        if self._failure is None:
            self._failure = exc
        self._apply_failure = exc
        if self._committer is not None:
            self._committer.close()

    def _remove_old_wal_sync(self) -> None:
        assert self._log is not None
        self._log.remove_archived(self._applied_lsn)

    # commits -------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._failure is not None:
            failure = self._failure
            if isinstance(failure, FileError):
                raise type(failure)(f"{self.path}: the store stopped acknowledging writes: {failure}; "
                                    f"reopen it to recover", path=failure.path, operation=failure.operation,
                                    errno=failure.errno, hint=failure.hint) from failure
            raise StoreClosed(f"{self.path}: the store stopped acknowledging writes after a failure "
                              f"({failure}); reopen it to recover") from failure
        if self._closing or self._tg is None:
            raise StoreClosed(f"{self.path}: the store is closed")


    async def commit(self, ops: Sequence[Op], *, ts_ns: int | None = None,
                     source_rev: int | None = None, gap: bool = False) -> Commit:
        """Commit `ops` atomically as one record; returns once durable.

        `ts_ns` forces the commit time (imports); it must exceed the last one.
        `source_rev` records the source's own position (an etcd revision).
        `gap` marks a commit after which no earlier base can be restored
        (the source lost history: the next snapshot starts a new window).
        """
        ops = tuple(ops)
        check_ops(ops)
        return await self._commit(ops, ts_ns, source_rev, gap)

    async def _commit(self, ops: tuple[Op, ...], ts_ns: int | None = None,
                      source_rev: int | None = None, gap: bool = False,
                      ttls: dict[int, int] | None = None) -> Commit:
        group, lsn, ts = self._sequence(ops, ts_ns, source_rev, gap, ttls)
        await group.done.wait()
        return self._acknowledged(group, lsn, ts)

    def _sequence(self, ops: tuple[Op, ...], ts_ns: int | None = None, source_rev: int | None = None,
                  gap: bool = False, ttls: dict[int, int] | None = None) -> tuple[Group, int, int]:
        """Give the commit its LSN and time, encode it and queue it; returns (group, lsn, ts)."""
        self._check_open()
        if not ops:
            raise InvalidArgument("a commit needs at least one operation")
        lsn, ts = self._stamp(ts_ns)
        if ttls:
            ops = tuple(Op(PUT, op.key, op.value, ts + ttls[i]) if i in ttls else op
                        for i, op in enumerate(ops))
        try:
            if len(ops) == 1 and ops[0].expires_at_ns is None and source_rev is None and not gap:
                data = rec.encode_single(lsn, ts, ops[0].kind, ops[0].key, ops[0].value)
            else:
                data = rec.encode_record(lsn, ts, ops, source_rev, gap=gap)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from exc
        return self._enqueue(lsn, ts, ops, data), lsn, ts

    def queue_commits(self, commits: Iterable[tuple[Sequence[Op], int | None]]) -> QueuedCommits:
        """Sequence a run of commits now, in order; await the result's `wait()` for their durability.

        Each (ops, ts_ns) becomes its own commit, exactly as `commit(ops, ts_ns=ts_ns)` one after
        the other would make it (the same record, LSN and time), but the run is encoded in one
        pass and queued as one piece of the open group, so it shares one write and one fsync
        (imports). If any commit is refused (no ops, a time not after the previous one, a
        record over a limit), none of the run is queued and the store is as before.
        """
        self._check_open()
        start_lsn, start_ts = self._last_lsn, self._last_ts
        if type(commits) is not list:
            commits = list(commits)
        sequenced = sequence_run(commits, start_lsn + 1, start_ts, self._ts_floor, self._clock, self._max_skew_ns)
        if sequenced is None:  # not a run the compiled loop takes, or one with a commit to refuse
            def refuse(sequenced: int, last_ts: int, ts_ns: int | None) -> None:
                self._last_lsn, self._last_ts = start_lsn + sequenced, last_ts
                try:
                    self._stamp(ts_ns)  # raises the refusal, worded as for a single commit
                finally:
                    self._last_lsn, self._last_ts = start_lsn, start_ts  # nothing of the run was queued

            sequenced = sequence_run_reference(commits, start_lsn + 1, start_ts, self._ts_floor, self._clock,
                                               self._max_skew_ns, refuse)
        queued, times, pieces = sequenced
        last_ts = times[-1] if times else start_ts
        if not times:
            raise InvalidArgument("a run needs at least one commit")
        self._last_lsn, self._last_ts = start_lsn + len(times), last_ts
        self._unacked.extend(queued)
        assert self._committer is not None
        group = self._committer.add_many(pieces, len(times), self._last_lsn, self._last_ts)
        return QueuedCommits(group, start_lsn + 1, times, self._acknowledged)

    async def commit_many(self, commits: Iterable[tuple[Sequence[Op], int | None]]) -> list[Commit]:
        """Commit each (ops, ts_ns) as its own commit, in order, sharing fsyncs; returns once all are
        durable (see `queue_commits`)."""
        queued = self.queue_commits(commits)
        await queued.wait()
        return queued.commits

    def _stamp(self, ts_ns: int | None) -> tuple[int, int]:
        """The next LSN and a commit time after the last one (and after any completeness promise)."""
        floor = self._last_ts if self._last_ts > self._ts_floor else self._ts_floor
        if ts_ns is None:
            now = self._clock()
            return self._last_lsn + 1, (now if now > floor else floor + 1)
        if ts_ns <= floor:
            raise InvalidArgument(f"commit time {format_ns(ts_ns)} is not after the last commit's (or the "
                                  f"time the archive was declared complete through) {format_ns(floor)}")
        now = self._clock()
        if ts_ns - now > self._max_skew_ns:
            raise InvalidArgument(
                f"commit time {format_ns(ts_ns)} is {(ts_ns - now) / 1e9:.3f} s ahead of the store's clock "
                f"({format_ns(now)}); the limit is {self._max_skew_ns / 1e9:g} s (max_clock_skew; "
                f"`pitr import --max-clock-skew`), so that one bad time cannot date every later commit "
                f"in the future")
        return self._last_lsn + 1, ts_ns

    def _enqueue(self, lsn: int, ts: int, ops: tuple[Op, ...] | tuple[PlainOp, ...], data: bytes) -> Group:
        self._last_lsn, self._last_ts = lsn, ts
        self._unacked.append(ops)
        assert self._committer is not None
        return self._committer.add(data, lsn, ts)

    def _acknowledged(self, group: Group, lsn: int, ts: int) -> Commit:
        if group.error is not None:
            error = group.error
            if isinstance(error, FileError):
                raise type(error)(f"commit at LSN {lsn} was not acknowledged: {error}", path=error.path,
                                  operation=error.operation, errno=error.errno, hint=error.hint) from error
            raise StoreClosed(f"{self.path}: commit at LSN {lsn} was not acknowledged: "
                              f"{error}") from error
        return _new_tuple(Commit, (lsn, ts))  # Commit(lsn, ts) without its Python-level __new__

    async def put(self, key: bytes, value: bytes, ttl: float | None = None) -> Commit:
        """Set `key` to `value`; with `ttl` seconds the key expires at commit time + ttl."""
        check_put(key, value)
        if ttl is not None:
            group, lsn, ts = self._sequence((Op(PUT, key, value, None),), ttls={0: ttl_ns(ttl, key)})
        else:
            group, lsn, ts = self._sequence_put(key, value)
        await group.done.wait()
        return self._acknowledged(group, lsn, ts)

    def _sequence_put(self, key: bytes, value: bytes) -> tuple[Group, int, int]:
        """The hot path of `_sequence` for one put without expiry, straight to its record: the same
        LSN, time, record bytes and queued op as `_sequence((Op(PUT, key, value, None),))`
        (tests/store/test_hot_path.py holds the two equal)."""
        self._check_open()
        lsn, ts = self._stamp(None)
        try:
            data = rec.encode_single(lsn, ts, PUT, key, value)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from exc
        # A plain tuple, not an `Op`: the collector untracks a tuple of bytes at its first young
        # collection, and a NamedTuple never, so each commit in flight would otherwise add two
        # objects to what every full collection walks (docs/decisions.md, "The cyclic GC and the
        # event loop's stalls"). Readers of `_unacked` take bare tuples (imports queue them too).
        return self._enqueue(lsn, ts, ((PUT, key, value, None),), data), lsn, ts

    async def delete(self, key: bytes) -> Commit:
        """Remove `key` (a commit even when the key is absent)."""
        return await self._commit((Op(DELETE, check_key(key)),))

    async def compare_and_set(self, key: bytes, expected: bytes | None, new: bytes | None,
                              ttl: float | None = None) -> Commit | None:
        """Put `new` (or delete when None) only if the current value equals `expected`.

        `expected=None` means the key must be absent. Returns the commit, or
        None (nothing written) when the current value differs.
        """
        check_key(key)
        ttls = None
        if new is None:
            op = Op(DELETE, key)
        else:
            op = Op(PUT, key, check_value(new, key), None)
            ttls = None if ttl is None else {0: ttl_ns(ttl, key)}
        self._check_open()
        current = self._current(key, sequenced=True)
        if (current[0] if current is not None else None) != expected:
            return None
        return await self._commit((op,), ttls=ttls)

    async def commit_if(self, ops: Sequence[Op],
                        expected: Mapping[bytes, Expected]) -> Commit | list[Mismatch]:
        """Commit `ops` atomically only if each key of `expected` holds that (value, expiry) now
        (None: absent); otherwise commit nothing and return the keys that differ.

        The check and the commit's sequencing happen in one step, with no await between them
        (`pitr.store.conditional`).
        """
        self._check_open()
        failed = mismatches(lambda key: self._current(key, sequenced=True), expected)
        if failed:
            return failed
        return await self._commit(tuple(ops))

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[Batch]:
        """Collect operations and commit them atomically when the block ends without error."""
        b = Batch()
        yield b
        if b.ops:
            b.commit = await self._commit(tuple(b.ops), ttls=b.ttls)

    # reads ---------------------------------------------------------------------
    def _current(self, key: bytes, *, sequenced: bool = False) -> tuple[bytes, int | None] | None:
        now = self._clock()
        if sequenced:
            # Commits sequenced but not yet durable: the newest one touching the key decides.
            for ops in reversed(self._unacked):
                for kind, op_key, value, expires in reversed(ops):  # bare tuples from imports too
                    if op_key == key:
                        return visible((value if expires is None else (value, expires)) if kind == PUT else None,
                                       now)
        for layer in (self._pending, self._applying):
            if key in layer:
                return visible(layer[key], now)
        assert self._state is not None
        return self._state.get(key, now)

    async def get(self, key: bytes) -> bytes | None:
        """The value of `key`, or None when absent or expired."""
        self._check_open()
        found = self._current(check_key(key))
        return None if found is None else found[0]

    async def get_with_expiry(self, key: bytes) -> tuple[bytes, int | None] | None:
        """The value of `key` and its absolute expiry (ns), or None."""
        self._check_open()
        return self._current(check_key(key))

    async def scan(self, prefix: bytes = b"", *, start: bytes | None = None, end: bytes | None = None,
                   limit: int | None = None) -> list[tuple[bytes, bytes]]:
        """Live (key, value) pairs in key order: keys with `prefix`, start <= key < end."""
        self._check_open()
        assert self._state is not None
        lo = max(prefix, start) if start is not None else prefix
        hi = end
        if prefix:
            stop = prefix_end(prefix)
            hi = stop if hi is None or (stop is not None and stop < hi) else hi
        now = self._clock()
        overlay = {**self._applying, **self._pending}
        pending = sorted((k, c) for k, c in overlay.items() if k >= lo and (hi is None or k < hi))
        out: list[tuple[bytes, bytes]] = []
        merged = merge(self._state.iter_range(lo, hi), pending)
        for key, value, expires in merged:
            if expires is not None and expires <= now:
                continue
            out.append((key, value))
            if limit is not None and len(out) >= limit:
                break
        return out

    # for archivers and tests ---------------------------------------------------
    def now(self) -> int:
        """The store's clock (ns since the epoch): what TTLs are judged against."""
        return self._clock()

    @property
    def last_lsn(self) -> int:
        return self._last_lsn

    @property
    def last_ts(self) -> int:
        """Commit time of the last commit (0 before the first)."""
        return self._last_ts

    @property
    def durable_lsn(self) -> int:
        return self._durable_lsn

    @property
    def unapplied_keys(self) -> int:
        """Keys whose acknowledged changes are held in memory, not yet in LMDB (a bulk writer
        that outruns the apply task awaits `flush()` to keep this bounded)."""
        return len(self._pending) + len(self._applying)

    def promise_complete(self) -> tuple[int, int]:
        """(durable LSN, time through which the log is complete), and a promise: no later commit
        is timed at or before that time (the store raises its floor to keep it, even if the clock
        steps back). An archiver publishes it as the repository's watermark."""
        if self._last_lsn == self._durable_lsn:
            through = max(self._durable_ts, self._clock() - 1)
            self._ts_floor = max(self._ts_floor, through)  # keep the promise if the clock steps back
            return self._durable_lsn, through
        return self._durable_lsn, self._durable_ts

    async def flush(self) -> None:
        """Apply every acknowledged commit to LMDB now (used before snapshots and in tests)."""
        self._check_open()
        try:
            await self._apply_pending()  # waits for an apply already running, then applies the rest
        except PitrError:
            self._apply_failure = None  # raised here: the caller has seen it
            raise

    @property
    def state(self) -> StateDB:
        assert self._state is not None
        return self._state

    @property
    def wal_directory(self) -> WalDirectory:
        assert self._wal_dir is not None
        return self._wal_dir

    @property
    def torn_tails(self) -> list[TornTail]:
        return self._torn_tails

    def info(self) -> JSONObject:
        assert self.identity is not None
        return {"path": self.path, "store_id": str(self.identity.store_id), "name": self.identity.name,
                "last_lsn": self._last_lsn, "applied_lsn": self._applied_lsn}

