"""Progress in bytes: how much of what a long operation planned to read it has read.

Restore and verify report `(phase, bytes done, bytes planned)`: commits or
files are a poor measure (a restore's snapshot is one item that takes most of
its time), bytes read track the work. `CountingSource` wraps the byte sources
an operation reads, so every read is counted wherever it happens (in the
read-ahead threads too), and `ByteCounter` adds them up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from segments.source import RangeSource

Report = Callable[[str, int, int], None]  # (phase, done, planned): bytes for restore and verify


class ByteCounter:
    """The bytes read so far of `planned`, reported after every read (from any thread)."""

    def __init__(self, phase: str, planned: int, report: Report | None) -> None:
        self.phase = phase
        self.planned = planned
        self.done = 0
        self._report = report
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        """Count `n` more bytes read (never past the plan: a file's index may be read twice)."""
        with self._lock:
            self.done = min(self.done + n, self.planned)
            done = self.done
        if self._report is not None:
            self._report(self.phase, done, self.planned)

    def reach(self, done: int) -> None:
        """At least `done` bytes are done (a file finished, however much of it was read)."""
        with self._lock:
            self.done = max(self.done, min(done, self.planned))
            done = self.done
        if self._report is not None:
            self._report(self.phase, done, self.planned)

    def finish(self) -> None:
        """Everything planned is done (the bytes a reader skipped are no work left)."""
        self.add(self.planned)

    def counting(self, source: RangeSource) -> CountingSource:
        return CountingSource(source, self)


class CountingSource:
    """A byte source that counts what is read from it into a `ByteCounter`."""

    def __init__(self, inner: RangeSource, counter: ByteCounter) -> None:
        self.inner = inner
        self.name = inner.name
        self.size = inner.size
        self._counter = counter

    def read(self, offset: int, length: int) -> bytes:
        data = self.inner.read(offset, length)
        self._counter.add(len(data))
        return data

    def close(self) -> None:
        self.inner.close()


def fraction(done: int, planned: int) -> float:
    """The share of the work done: bytes done over bytes planned (1.0 when nothing was planned)."""
    return 1.0 if planned <= 0 else min(done, planned) / planned


def seconds_left(done: int, planned: int, elapsed: float) -> float | None:
    """The time left at the rate so far (bytes done / elapsed), None before anything was done."""
    if done <= 0 or elapsed <= 0:
        return None
    return max(planned - done, 0) / (done / elapsed)
