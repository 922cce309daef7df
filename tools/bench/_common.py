"""Shared pieces of the pitr benchmarks: figures printed beside a baseline, timing, memory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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


def cpu_ticks() -> tuple[int, int]:
    """(steal, total) CPU ticks of this machine so far (Linux /proc/stat; zeros elsewhere).

    A shared virtual machine whose host is oversubscribed loses CPU to other
    guests ("steal"); figures measured while much of it is stolen are not the
    code's alone, so the benchmarks show the share beside them."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def stolen_since(start: tuple[int, int]) -> float:
    """The share (percent) of the machine's CPU stolen by the hypervisor since `start` (nan if unknown)."""
    steal, total = cpu_ticks()
    return 100.0 * (steal - start[0]) / (total - start[1]) if total > start[1] else float("nan")


def make_cold() -> bool:
    """`os.sync()`, then drop the page cache when root (True if it was dropped)."""
    os.sync()
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
    except OSError:
        return False
    return True


class CommandFailed(RuntimeError):
    """A benchmarked command exited non-zero; the message holds its command line and stderr."""


@dataclass(frozen=True, slots=True)
class ProcessRun:
    """One whole-process run: wall-clock seconds, the peak RSS of its processes, what it printed, its CPU time.

    CPU time (user + system) is shown beside start-up figures: on an oversubscribed host a process waits for a
    core, and its wall clock says more about the host than about the program."""

    seconds: float
    peak_rss_mb: float
    stdout: bytes
    cpu_seconds: float = 0.0


# A small process that spawns the measured command, waits for it and writes "seconds peak-RSS-KiB cpu-seconds"
# to a file.
# The peak RSS Linux reports for a child counts the memory of the process it was forked from (the benchmark,
# with its figures and buffers), so the command is spawned from this launcher, whose own memory is a few MiB;
# and the launcher's clock starts at that spawn, so its own start-up is not in the figure.
LAUNCHER = """\
import os, sys, time
started = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_pid, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - started
with open(sys.argv[1], "w") as fh:
    fh.write(f"{seconds!r} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime!r}")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def _launched(argv: Sequence[str], result: str) -> list[str]:
    return [sys.executable, "-I", "-S", "-c", LAUNCHER, result, *argv]


def _measured(result: str) -> tuple[float, float, float]:
    """(seconds, peak RSS MiB, CPU seconds) the launcher wrote."""
    with open(result) as fh:
        seconds, rss_kib, cpu = fh.read().split()
    return float(seconds), int(rss_kib) / 1024, float(cpu)


def run_timed(argv: Sequence[str], *, env: Mapping[str, str] | None = None, scratch: str,
              then: Sequence[str] | None = None) -> ProcessRun:
    """Run `argv` (piped into `then`, when given) as whole processes; refuse a non-zero exit.

    The time is wall clock from the spawn of the command until it exits (for a
    pipeline: from the first spawn until both have exited); the peak RSS is the
    largest of the processes'. stdout (of the last process) and stderr go to
    files under `scratch`, so nothing blocks on a full pipe.
    """
    out_path, err_path = os.path.join(scratch, "stdout"), os.path.join(scratch, "stderr")
    results = [os.path.join(scratch, "first.rusage"), os.path.join(scratch, "then.rusage")]
    for path in results:
        if os.path.exists(path):
            os.unlink(path)
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        first = subprocess.Popen(_launched(argv, results[0]), stdin=subprocess.DEVNULL, env=env, stderr=err,
                                 stdout=out if then is None else subprocess.PIPE)
        procs = [first]
        if then is not None:
            assert first.stdout is not None
            procs.append(subprocess.Popen(_launched(then, results[1]), stdin=first.stdout, stdout=out, stderr=err,
                                          env=env))
            first.stdout.close()  # the reader holds the only copy: a dying reader stops the writer
        for proc in procs:
            proc.wait()
        wall = time.perf_counter() - started
    with open(out_path, "rb") as fh:
        stdout = fh.read()
    failed = [proc for proc in procs if proc.returncode != 0]
    if failed:
        with open(err_path, "rb") as fh:
            stderr = fh.read().decode(errors="replace")
        shown = " | ".join(" ".join(command) for command in ([argv] if then is None else [argv, then]))
        codes = ", ".join(str(proc.returncode) for proc in procs)
        raise CommandFailed(f"`{shown}` exited with status {codes}:\n{stderr.strip()}")
    measured = [_measured(results[i]) for i in range(len(procs))]
    seconds = measured[0][0] if then is None else wall
    return ProcessRun(seconds, max(rss for _seconds, rss, _cpu in measured), stdout,
                      sum(cpu for _seconds, _rss, cpu in measured))


def raw_segment_check_seconds(paths: Sequence[str]) -> tuple[int, float]:
    """Raw codec baseline of verification: zstd decompression plus CRC-32C of every block of the segments.

    Returns (file bytes, seconds); the blocks are read into memory before the clock starts.
    """
    import zstandard
    from crc32c import crc32c

    from segments.segment_reader import SegmentReader
    from segments.source import FileSource

    blocks: list[tuple[bytes, int]] = []
    size = 0
    for path in paths:
        size += os.path.getsize(path)
        with SegmentReader(FileSource(path)) as reader:
            blocks += [(reader.source.read(e.offset, e.compressed_size), e.raw_size) for e in reader.meta.index]
    dctx = zstandard.ZstdDecompressor()
    started = time.perf_counter()
    for block, raw_size in blocks:
        crc32c(block)
        crc32c(dctx.decompress(block, max_output_size=raw_size))
    return size, time.perf_counter() - started


def raw_snapshot_compress_seconds(path: str) -> tuple[int, float]:
    """Raw codec baseline of snapshot writing: zstd level 3 over the snapshot's own blocks, decompressed.

    Returns (logical bytes, seconds); the blocks are decompressed before the clock starts.
    """
    import zstandard

    from segments.snapshot import SnapshotReader
    from segments.source import FileSource

    dctx = zstandard.ZstdDecompressor()
    with SnapshotReader(FileSource(path)) as snap:
        raw = [dctx.decompress(snap.source.read(b.offset, b.compressed_size), max_output_size=b.raw_size)
               for b in snap.blocks]
    cctx = zstandard.ZstdCompressor(level=3, write_content_size=True)
    started = time.perf_counter()
    for block in raw:
        cctx.compress(block)
    return sum(len(block) for block in raw), time.perf_counter() - started
