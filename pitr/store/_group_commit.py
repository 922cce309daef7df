"""Group commit: one long-lived WAL thread writes and fsyncs whatever commits are queued.

Writers on the event loop append their encoded records to the open group and
wait for it. The WAL thread takes the whole open group as soon as the previous
fsync returns, writes it and fsyncs once, and hands the group back to the
event loop with a thread-safe callback. So the next group is already being
written while the loop wakes the writers of the last one: fsync and Python
work overlap, and no per-group worker-thread round trip sits on the commit
path.

Groups are written and handed back strictly in order; a group is handed back
only after its fsync returned, so acknowledging it acknowledges durable data.
After a write or fsync failure the thread stops: that group and every group
opened after it fail, and nothing more is written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import sniffio

CallSoon = Callable[..., object]
YIELD_EVERY = 16  # commits queued between GIL hand-overs to a WAL thread that is waiting to start


class LoopEvent(Protocol):
    """trio's or asyncio's Event: set on the event loop, waited for by the writers."""

    def set(self) -> None: ...
    async def wait(self) -> object: ...


class Group:
    """Commits that share one write and one fsync; `done` is set on the event loop when settled.

    `count` is the number of records queued in it (one per commit): what its WAL frame says it holds.
    """

    __slots__ = ("done", "error", "count", "last_lsn", "last_ts")

    def __init__(self, done: LoopEvent) -> None:
        self.done = done  # the event loop's own Event: a group is waited for by every writer in it
        self.error: BaseException | None = None
        self.count = 0
        self.last_lsn = 0
        self.last_ts = 0


class LoopHooks(NamedTuple):
    """What the WAL thread needs from the running event loop."""

    call_soon: CallSoon  # thread-safe: run fn(*args) on the loop soon, in order
    new_event: Callable[[], Any]  # an Event of the loop's library (created in any thread, set on the loop)


def loop_hooks() -> LoopHooks:
    """The hooks of the running event loop (trio or asyncio).

    Native events rather than anyio's wrapper: every commit waits on one, and the
    wrapper's extra await layer costs measurably at tens of thousands of commits/s.
    """
    if sniffio.current_async_library() == "trio":
        import trio

        return LoopHooks(trio.lowlevel.current_trio_token().run_sync_soon, trio.Event)
    import asyncio

    return LoopHooks(asyncio.get_running_loop().call_soon_threadsafe, asyncio.Event)


class GroupCommitter:
    """The open group and the WAL thread's loop (`run`, in a thread for the store's lifetime).

    `write(data, count, last_lsn)` appends the `count` records in `data` and fsyncs (and may roll
    the WAL file);
    `durable(group)` and `failed(group, exc)` run on the event loop, in order.
    """

    def __init__(self, write: Callable[[bytes, int, int], None], hooks: LoopHooks,
                 durable: Callable[[Group], None], failed: Callable[[Group, BaseException], None]) -> None:
        self._write = write
        self._call_soon = hooks.call_soon
        self._new_event = hooks.new_event
        self._durable = durable
        self._failed = failed
        self._cond = threading.Condition(threading.Lock())
        self._data: list[bytes] = []
        self._group = Group(self._new_event())
        self._closing = False
        self._waiting = False  # the WAL thread waits for work, or was woken and wants the GIL back

    def add(self, data: bytes, lsn: int, ts: int) -> Group:
        """Queue one encoded commit (event-loop thread); returns the group to wait for."""
        with self._cond:
            group = self._group
            self._data.append(data)
            group.count += 1
            group.last_lsn, group.last_ts = lsn, ts
            if group.count == 1:
                self._cond.notify()
            waiting = self._waiting
        if waiting and group.count % YIELD_EVERY == 0:
            # The WAL thread was woken for this group but needs the GIL, which this busy loop
            # would otherwise keep for a whole switch interval (5 ms): hand it over now, so the
            # group's fsync overlaps the loop sequencing the commits after it.
            time.sleep(0)
        return group

    def add_many(self, pieces: list[bytes], count: int, last_lsn: int, last_ts: int) -> Group:
        """Queue a run of `count` encoded commits, one record each, in order, given as pieces whose
        concatenation is the records (event-loop thread); they all join the open group, so they
        reach the WAL in one write and share its fsync."""
        with self._cond:
            group = self._group
            self._data.extend(pieces)
            was_empty = not group.count
            group.count += count
            group.last_lsn, group.last_ts = last_lsn, last_ts
            if was_empty:
                self._cond.notify()
            waiting = self._waiting
        if waiting:
            time.sleep(0)  # hand the GIL to the woken WAL thread now, not after a switch interval
        return group

    def close(self) -> None:
        """Let `run` return once every queued commit is written."""
        with self._cond:
            self._closing = True
            self._cond.notify()

    def run(self) -> None:
        """The WAL thread: write and fsync groups until closed (or a failure)."""
        while True:
            with self._cond:
                while not self._data and not self._closing:
                    self._waiting = True
                    self._cond.wait()
                self._waiting = False
                if not self._data:
                    return
                data, group = self._data, self._group
                self._data, self._group = [], Group(self._new_event())
            try:
                self._write(b"".join(data), group.count, group.last_lsn)
            except BaseException as exc:  # noqa: BLE001 - every failure poisons the store
                self._notify(self._fail_all, group, exc)
                return
            self._notify(self._durable, group)

    def _fail_all(self, group: Group, exc: BaseException) -> None:
        """(event loop) Fail the group that could not be written and the one opened since."""
        self._failed(group, exc)
        with self._cond:
            later, self._data, self._group = self._group, [], Group(self._new_event())
        if later.count:
            self._failed(later, exc)

    def _notify(self, fn: Callable[..., None], *args: object) -> None:
        try:
            self._call_soon(fn, *args)
        except RuntimeError:
            pass  # the event loop is gone: nobody is waiting any more
