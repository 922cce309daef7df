"""Shared pieces of the pitr benchmarks: figures printed beside a baseline, timing, memory."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pitr.memory import peak_rss_bytes


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure beside its baseline from the same run.

    `ratio` is ours / baseline for rates (higher is better); `target` is the least
    acceptable ratio, or None when the baseline is only context.
    """

    name: str
    unit: str
    ours: float
    baseline_name: str
    baseline: float
    target: float | None = None

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("inf")

    @property
    def missed(self) -> bool:
        return self.target is not None and self.ratio < self.target

    def line(self) -> str:
        verdict = ""
        if self.target is not None:
            verdict = f"  target >= {self.target:.2f}x  {'MISSED' if self.missed else 'ok'}"
        return (f"{self.name:<44} {self.ours:>13,.0f} {self.unit:<10} | {self.baseline_name:<34} "
                f"{self.baseline:>13,.0f} {self.unit:<10} ratio {self.ratio:6.2f}{verdict}")


@dataclass(frozen=True, slots=True)
class Absolute:
    """A figure with an absolute target (such as archive lag), printed with its context."""

    name: str
    value: float
    unit: str
    limit: float | None = None  # the value must stay below this
    note: str = ""

    @property
    def missed(self) -> bool:
        return self.limit is not None and self.value >= self.limit

    def line(self) -> str:
        verdict = ""
        if self.limit is not None:
            verdict = f"  target < {self.limit:g} {self.unit}  {'MISSED' if self.missed else 'ok'}"
        return f"{self.name:<44} {self.value:>13,.1f} {self.unit:<10}{verdict}  {self.note}"


def rate_for(seconds: float, fn: Callable[[], int]) -> float:
    """Run `fn` (which returns how many operations it did) and return operations per second."""
    start = time.perf_counter()
    count = fn()
    return count / (time.perf_counter() - start)


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB."""
    return peak_rss_bytes() / 2**20


@contextmanager
def work_dir(parent: str | None, prefix: str, keep: bool = False) -> Iterator[str]:
    """A fresh directory under `parent` (default: the system temp dir), removed afterwards."""
    if parent is not None:
        os.makedirs(parent, exist_ok=True)
    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def summary(figures: list[Figure | Absolute], started: float) -> int:
    missed = [f.name for f in figures if f.missed]
    print(f"total {time.perf_counter() - started:.1f} s; "
          + (f"targets missed: {', '.join(missed)}" if missed else "all targets met"), flush=True)
    return 0
