"""What ran while the event loop stalled: the attribution `tools/bench/stall.py --attribute` prints.

A `StallTrace` records, with `time.perf_counter` timestamps:

- every cyclic-GC collection (`gc.callbacks`): generation, duration, objects
  collected, the thread that ran it and the worker call that thread was in;
- every worker-thread call (`anyio.to_thread.run_sync`, wrapped for the run):
  its function, start and end in the thread that ran it;
- the WAL's fsyncs (a `WalFileOps` that times them);
- how busy the event loop's thread was, per 5 ms bucket (a trio instrument
  summing task steps; the longest steps are kept with their task's name).

`attribute(stall)` then names, for one late wake-up of the heartbeat, what
overlapped it. This perturbs what it measures (a Python call per task step and
per collection): the figures of a traced run are labelled and never the verdict.
"""

from __future__ import annotations

import functools
import gc
import os
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import trio

from segments.wal import WalFileOps

BUCKET = 0.005  # loop busy time is summed per 5 ms
LONG_STEP = 0.002  # task steps at least this long are kept by name
LIFELONG = {"GroupCommitter.run"}  # the WAL thread's one call: named as what a thread does, not an interval
KEPT_GC = 0.001  # collections at least this long (or of generation 1 and 2) are kept one by one


@dataclass(slots=True)
class Interval:
    start: float
    end: float
    what: str

    @property
    def ms(self) -> float:
        return (self.end - self.start) * 1e3

    def overlap(self, start: float, end: float) -> float:
        return max(0.0, min(end, self.end) - max(start, self.start))


class _LoopBusy(trio.abc.Instrument):
    """Sums the loop thread's task-step time per bucket; keeps the long steps by task name."""

    def __init__(self, trace: StallTrace) -> None:
        self.trace = trace
        self._started = 0.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        now = time.perf_counter()
        took = now - self._started
        trace = self.trace
        index = int((self._started - trace.origin) / BUCKET)
        if index < 0:  # the step that installed the instrument
            return
        busy = trace.busy
        if index >= len(busy):
            busy.extend(array("d", bytes(8 * (index + 1 - len(busy) + 1024))))
        busy[index] += took
        if took >= LONG_STEP:
            trace.steps.append(Interval(self._started, now, f"loop step of task {task.name}"))


_installed: list[StallTrace] = []  # the trace recording now, if any


class TimedWalOps(WalFileOps):
    """The WAL writer's system calls, its syncs timed into the trace installed."""

    def fdatasync(self, fd: int) -> None:
        started = time.perf_counter()
        try:
            os.fdatasync(fd)
        finally:
            if _installed:
                _installed[0].syncs.append(Interval(started, time.perf_counter(), "WAL fdatasync"))

    def fsync(self, fd: int) -> None:
        started = time.perf_counter()
        try:
            os.fsync(fd)
        finally:
            if _installed:
                _installed[0].syncs.append(Interval(started, time.perf_counter(), "WAL fsync"))


def _call_name(fn: Callable[..., object]) -> str:
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return name.replace(".<locals>", "")


class StallTrace:
    """Collections, worker calls, WAL syncs and loop busy time of one measured window."""

    def __init__(self) -> None:
        self.origin = time.perf_counter()
        self.gcs: list[Interval] = []
        self.gc_totals: Counter[int] = Counter()  # generation -> collections
        self.gc_seconds: Counter[int] = Counter()  # generation -> seconds
        self.gc_cpu: Counter[int] = Counter()  # generation -> CPU seconds of the collecting thread
        self.gc_cpu_max: Counter[int] = Counter()  # generation -> the most CPU one collection took
        self.calls: list[Interval] = []
        self.syncs: list[Interval] = []
        self.steps: list[Interval] = []
        self.busy = array("d")
        self._gc_started: dict[int, tuple[float, float]] = {}
        self._doing: dict[int, str] = {}
        self._loop_thread = threading.get_ident()
        self._instrument = _LoopBusy(self)
        self._original_run_sync: Any = None

    # installing -------------------------------------------------------------------------------
    def install(self) -> None:
        """Start recording (on the event loop's thread, inside `trio.run`)."""
        self.origin = time.perf_counter()
        self._loop_thread = threading.get_ident()
        gc.callbacks.append(self._on_gc)
        _installed[:] = [self]
        trio.lowlevel.add_instrument(self._instrument)
        self._original_run_sync = original = anyio.to_thread.run_sync
        trace = self

        async def run_sync(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            name = _call_name(func)

            def timed(*inner: Any) -> Any:
                me = threading.get_ident()
                before = trace._doing.get(me)
                trace._doing[me] = name
                started = time.perf_counter()
                try:
                    return func(*inner)
                finally:
                    if name not in LIFELONG:
                        trace.calls.append(Interval(started, time.perf_counter(), name))
                    if before is None:
                        trace._doing.pop(me, None)
                    else:
                        trace._doing[me] = before

            return await original(timed, *args, **kwargs)

        anyio.to_thread.run_sync = run_sync

    def remove(self) -> None:
        _installed.clear()
        gc.callbacks.remove(self._on_gc)
        try:
            trio.lowlevel.remove_instrument(self._instrument)
        except KeyError:  # trio disabled it after it raised (and said so on stderr)
            pass
        anyio.to_thread.run_sync = self._original_run_sync

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        me = threading.get_ident()
        if phase == "start":
            self._gc_started[me] = (time.perf_counter(), time.thread_time())
            return
        now, cpu_now = time.perf_counter(), time.thread_time()
        started, cpu_started = self._gc_started.pop(me, (now, cpu_now))
        generation, cpu = info["generation"], cpu_now - cpu_started
        self.gc_totals[generation] += 1
        self.gc_seconds[generation] += now - started
        self.gc_cpu[generation] += cpu
        self.gc_cpu_max[generation] = max(self.gc_cpu_max[generation], cpu)
        if generation >= 1 or now - started >= KEPT_GC:
            thread = "the loop thread" if me == self._loop_thread else f"thread {me % 10_000}"
            doing = self._doing.get(me)
            where = thread + (f" in {doing}" if doing else "")
            self.gcs.append(Interval(started, now, f"gc gen {generation} ({cpu * 1e3:.1f} ms CPU, collected "
                                                   f"{info['collected']}) on {where}"))

    # reading ----------------------------------------------------------------------------------
    def loop_busy(self, start: float, end: float) -> float:
        """Seconds the loop thread spent in task steps between `start` and `end` (bucket resolution)."""
        first, last = int((start - self.origin) / BUCKET), int((end - self.origin) / BUCKET)
        return sum(self.busy[first:last + 1])

    def attribute(self, start: float, end: float) -> list[tuple[float, Interval]]:
        """What overlapped the window [start, end], longest overlap first (at least 1 ms of it)."""
        found: list[tuple[float, Interval]] = []
        for group in (self.gcs, self.steps, self.calls, self.syncs):
            for item in group:
                shared = item.overlap(start, end)
                if shared >= 0.001:
                    found.append((shared, item))
        found.sort(key=lambda pair: -pair[0])
        return found

    def gc_summary(self) -> list[str]:
        """Per generation: collections, wall and CPU time (CPU does not depend on the host's load)."""
        return [f"gc gen {gen}: {self.gc_totals[gen]:,} collections, {self.gc_seconds[gen] * 1e3:,.1f} ms wall, "
                f"{self.gc_cpu[gen] * 1e3:,.1f} ms CPU in all; the longest {self.gc_cpu_max[gen] * 1e3:.1f} ms CPU"
                for gen in (0, 1, 2)]


def run_queue_clock() -> Callable[[], float]:
    """A clock of the seconds the calling thread has waited for a CPU while runnable (Linux
    schedstat, read with one pread; nan elsewhere). Open it in the thread it is to measure."""
    try:
        fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return lambda: float("nan")

    def waited() -> float:
        try:
            return int(os.pread(fd, 128, 0).split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            return float("nan")

    return waited


def explain(trace: StallTrace, stalls: Sequence[tuple[float, float, float, float]], origin: float) -> list[str]:
    """One paragraph per stall: (woke at, late by, CPU the process used meanwhile, time the loop
    thread waited for a CPU meanwhile) from the heartbeat.

    A stall during which the loop thread waited in the run queue was the operating system's: the
    machine's other processes had the cores."""
    lines: list[str] = []
    for woke, late, used, queued in stalls:
        start = woke - late
        busy = trace.loop_busy(start, woke)
        lines.append(f"  stall at {woke - origin:7.3f} s: woke {late * 1e3:.1f} ms late; loop thread waited "
                     f"{queued * 1e3:.1f} ms for a CPU, in task steps ~{busy * 1e3:.1f} ms; the process had "
                     f"{used * 1e3:.1f} ms of CPU (all threads)")
        for shared, item in trace.attribute(start, woke)[:6]:
            lines.append(f"      {shared * 1e3:6.1f} ms of {item.ms:7.1f} ms  {item.what}")
    return lines
