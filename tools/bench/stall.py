#!/usr/bin/env python3
"""Event-loop stall and commit latency while the in-process archiver catches up a backlog.

    .venv/bin/python tools/bench/stall.py [--dir DIR] [--commits N] [--writers N] [--tail S]
                                          [--max-seconds S] [--rounds N] [--seal-in-thread]
                                          [--gc-freeze] [--attribute] [--json]

One machine, `--rounds` rounds (default 3):

1. build, once, a store whose WAL holds a backlog of `--commits` (default
   1,000,000) single-put commits that were never archived (`require_archive`
   keeps them); each round starts from a fresh copy of it;
2. WITH the in-process archiver (`pitr.archiving.archiving(store, repo)`, the
   library's default options unless `--seal-in-thread` is given):
   `--writers` (default 64) tasks commit single puts as fast as they can from
   the moment the archiver starts until it has shipped the backlog, plus
   `--tail` seconds; a heartbeat task sleeps 1 ms at a time and records how
   late it wakes (the event loop's stall);
3. WITHOUT an archiver: the same writers and heartbeat for the same duration.

It prints, per round, the longest stall (max, p99 of the heartbeat's
overshoot) and the writers' commit latency (p50 / p99 / max) for both, and the
targets over all rounds: no stall over 50 ms while archiving (the worst of
every round; the stall without the archiver is printed beside it, the store's
own), and p99 with archiving at most 1.2x p99 without (the median of the
rounds' ratios: one round's p99 moves by +-15 % on a quiet machine). `--json` prints the
figures as one JSON document instead. Exit status is 0 even when a target is
missed: this is a measurement, not a test.

What a user gets by default is measured unless told otherwise: the library's
`ArchiveOptions()` and Python's cyclic GC as the process leaves it. The opt-in
variants are labelled in the output and the JSON ("configuration"):
`--seal-in-thread` (`ArchiveOptions(seal_in_process=False)`: chunks sealed
in a worker thread of the writers' process, the default until 2026-12-02),
`--gc-freeze` (`pitr.gcpause.freeze_startup()` once the
backlog is built, what an application that opts in calls after its start-up).
`--attribute` traces each window (`tools/bench/stall_trace.py`: garbage
collections, worker calls, WAL syncs, the loop's busy time) and prints what
overlapped every stall over 15 ms; a traced run's figures are perturbed by the
tracing and are labelled so.

CPU seconds (user + system) of this process and of its sealing worker
processes are printed beside each window's wall time: the machine may be shared.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass

# Run as a script, this directory comes first on sys.path and tools/bench/segments.py would hide
# the segments package: drop it until the packages are imported, then add it back for _common.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]

import trio  # noqa: E402

from pitr.archiver import ArchiveOptions  # noqa: E402
from pitr.archiving import archiving  # noqa: E402
from pitr.gcpause import freeze_long_lived  # noqa: E402
from pitr.repo.repository import open_repository  # noqa: E402
from pitr.store import Store, StoreOptions  # noqa: E402

sys.path.append(_HERE)
from _common import cpu_ticks, stolen_since, work_dir  # noqa: E402
from stall_trace import StallTrace, TimedWalOps, explain, run_queue_clock  # noqa: E402

VALUE = b"v" * 100
HEARTBEAT = 0.001
STALL_LIMIT_MS = 50.0
P99_RATIO_LIMIT = 1.2
NOTED_STALL = 0.015  # wake-ups at least this late are kept (with their time) and counted


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its live child processes (the sealing workers)."""
    times = os.times()
    total = times.user + times.system + times.children_user + times.children_system
    me = str(os.getpid())
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return total
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # ppid; utime and stime follow
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def key(writer: int, seq: int) -> bytes:
    return b"user:%03d:%09d" % (writer, seq)


def pct(samples: list[float], q: float) -> float:
    """The q-quantile of sorted `samples` (nan when empty)."""
    if not samples:
        return float("nan")
    return samples[min(len(samples) - 1, int(q * len(samples)))]


@dataclass(slots=True)
class Phase:
    """What one measured window saw."""

    archiving: bool
    seconds: float
    commits: int
    stall_max_ms: float
    stall_p99_ms: float
    commit_p50_ms: float
    commit_p99_ms: float
    commit_max_ms: float
    stalls_over_15ms: int = 0
    catch_up_seconds: float | None = None  # with the archiver: until the backlog was shipped
    # the longest stall less the time the loop thread waited in the kernel's run queue meanwhile
    # (another process had the core): the part that was this process's own (nan: no stall over 15 ms)
    stall_max_less_run_queue_ms: float = float("nan")
    gc_collections: list[int] | None = None  # per generation, during the window
    gc_full_cpu_max_ms: float = 0.0  # the longest full collection, CPU of the collecting thread
    gc_cpu_ms: float = 0.0  # every collection's CPU, in all
    stolen_pct: float = float("nan")  # CPU time the hypervisor gave to other guests (/proc/stat steal)
    cpu_seconds: float = float("nan")  # user + system of this process and its sealing workers

    @property
    def rate(self) -> float:
        return self.commits / self.seconds if self.seconds else 0.0


async def build_backlog(store: Store, commits: int, writers: int) -> None:
    """`commits` single-put commits, made by `writers` concurrent tasks as fast as they go."""
    per_writer, extra = divmod(commits, writers)

    async def writer(w: int) -> None:
        put = store.put
        for seq in range(per_writer + (1 if w < extra else 0)):
            await put(key(w, seq), VALUE)

    async with trio.open_nursery() as nursery:
        for w in range(writers):
            nursery.start_soon(writer, w)


class Load:
    """`writers` tasks committing single puts until stopped, and a 1 ms heartbeat, both recorded."""

    def __init__(self, store: Store, writers: int, first_seq: int) -> None:
        self.store = store
        self.writers = writers
        self.first_seq = first_seq
        self.running = True
        self.latencies: list[float] = []
        self.overshoots: list[float] = []
        # (woke at, late by, CPU seconds the process used meanwhile, seconds the loop thread waited for
        # a CPU meanwhile or nan) for each wake-up NOTED_STALL late
        self.stalls: list[tuple[float, float, float, float]] = []
        self.gc = GcTally()

    async def writer(self, w: int) -> None:
        put = self.store.put
        clock = time.perf_counter
        record = self.latencies.append
        seq = self.first_seq
        while self.running:
            started = clock()
            await put(key(w, seq), VALUE)
            record(clock() - started)
            seq += 1

    async def heartbeat(self) -> None:
        clock, cpu = time.perf_counter, time.process_time
        queued = run_queue_clock()  # opened here: it reads the loop thread's own counters
        record = self.overshoots.append
        while self.running:
            started, used, waited = clock(), cpu(), queued()
            await trio.sleep(HEARTBEAT)
            woke = clock()
            late = woke - started - HEARTBEAT
            record(late)
            if late >= NOTED_STALL:
                self.stalls.append((woke, late, cpu() - used, queued() - waited))

    def phase(self, archiving: bool, seconds: float, catch_up: float | None) -> Phase:
        self.gc.stop()
        lat = sorted(self.latencies)
        over = sorted(self.overshoots)
        own = max((late - queued for _woke, late, _cpu, queued in self.stalls), default=float("nan")) * 1e3
        return Phase(archiving, seconds, len(lat), pct(over, 1.0) * 1e3, pct(over, 0.99) * 1e3,
                     pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3, pct(lat, 1.0) * 1e3, len(self.stalls), catch_up,
                     stall_max_less_run_queue_ms=own, gc_collections=list(self.gc.count),
                     gc_full_cpu_max_ms=self.gc.full_cpu_max * 1e3, gc_cpu_ms=self.gc.cpu * 1e3)


class GcTally:
    """Collections per generation and their CPU time (the collecting thread's: it does not depend on
    the host's load) while a window runs; a `gc.callbacks` entry, cheap (it runs per collection)."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.cpu = 0.0
        self.full_cpu_max = 0.0
        self._started: dict[int, float] = {}
        gc.callbacks.append(self._seen)

    def _seen(self, phase: str, info: dict[str, int]) -> None:
        me = threading.get_ident()
        if phase == "start":
            self._started[me] = time.thread_time()
            return
        took = time.thread_time() - self._started.pop(me, time.thread_time())
        generation = info["generation"]
        self.count[generation] += 1
        self.cpu += took
        if generation == 2:
            self.full_cpu_max = max(self.full_cpu_max, took)

    def stop(self) -> None:
        if self._seen in gc.callbacks:
            gc.callbacks.remove(self._seen)


@dataclass(frozen=True, slots=True)
class Config:
    """What the run measures: the library's defaults unless an opt-in is named."""

    seal_in_thread: bool = False  # ArchiveOptions(seal_in_process=False): sealing in a worker thread
    gc_freeze: bool = False  # pitr.gcpause.freeze_long_lived() once the backlog is built
    attribute: bool = False  # trace each window and explain its stalls (perturbs the figures)

    def label(self) -> str:
        opted = [name for name, on in (("seal_in_process=False", self.seal_in_thread),
                                       ("freeze_long_lived() after start-up", self.gc_freeze),
                                       ("TRACED (--attribute): figures perturbed", self.attribute)) if on]
        return "library defaults" + ("" if not opted else " + " + ", ".join(opted))


def traced(config: Config) -> StallTrace | None:
    if not config.attribute:
        return None
    trace = StallTrace()
    trace.install()
    return trace


def explained(trace: StallTrace | None, load: Load, title: str) -> list[str]:
    if trace is None:
        return []
    trace.remove()
    lines = [f"{title}: {len(load.stalls)} stalls over {NOTED_STALL * 1e3:g} ms", *trace.gc_summary()]
    return lines + explain(trace, load.stalls, trace.origin)


async def with_archiver(store: Store, repo_path: str, writers: int, backlog_lsn: int, tail: float,
                        max_seconds: float, first_seq: int, config: Config) -> tuple[Phase, list[str]]:
    """The load while the in-process archiver ships the backlog, then `tail` seconds more."""
    load = Load(store, writers, first_seq)
    options = ArchiveOptions(seal_in_process=False) if config.seal_in_thread else ArchiveOptions()
    async with open_repository(repo_path, create=True) as repo:
        trace = traced(config)
        started = time.perf_counter()
        catch_up: float | None = None
        async with archiving(store, repo, options=options) as archiver, trio.open_nursery() as nursery:
            nursery.start_soon(load.heartbeat)
            for w in range(writers):
                nursery.start_soon(load.writer, w)
            deadline = started + max_seconds
            while time.perf_counter() < deadline:
                if catch_up is None and archiver.progress and archiver.progress[0].last_lsn >= backlog_lsn:
                    catch_up = time.perf_counter() - started
                    deadline = min(deadline, time.perf_counter() + tail)
                await trio.sleep(0.05)
            load.running = False
        seconds = time.perf_counter() - started
        notes = explained(trace, load, "with the archiver")
    return load.phase(True, seconds, catch_up), notes


async def without_archiver(store: Store, writers: int, seconds: float, first_seq: int,
                           config: Config) -> tuple[Phase, list[str]]:
    """The same load for `seconds`, nothing archiving."""
    load = Load(store, writers, first_seq)
    trace = traced(config)
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(load.heartbeat)
        for w in range(writers):
            nursery.start_soon(load.writer, w)
        await trio.sleep(seconds)
        load.running = False
    elapsed = time.perf_counter() - started
    return load.phase(False, elapsed, None), explained(trace, load, "without the archiver")


async def build(directory: str, commits: int, quiet: bool) -> tuple[int, float]:
    """The backlog in DIRECTORY/pristine: (its last LSN, seconds it took)."""
    say = (lambda *_a: None) if quiet else (lambda *a: print(*a, flush=True))
    async with Store(os.path.join(directory, "pristine"), StoreOptions(require_archive=True)) as store:
        started = time.perf_counter()
        await build_backlog(store, commits, 256)
        await store.flush()
        backlog_lsn = store.last_lsn
        build_s = time.perf_counter() - started
        say(f"backlog: {backlog_lsn:,} commits in {build_s:.1f} s, "
            f"{len(store.wal_directory.files())} WAL files, none archived")
    return backlog_lsn, build_s


def open_store(data: str, trace_syncs: bool) -> Store:
    """The measured store; with `trace_syncs` its WAL syncs are timed into the trace installed."""
    return Store(data, StoreOptions(require_archive=True), wal_ops=TimedWalOps() if trace_syncs else None)


async def measure_round(directory: str, backlog_lsn: int, writers: int, tail: float, max_seconds: float,
                        number: int, quiet: bool, config: Config) -> tuple[dict[str, object], list[str]]:
    """One round on a fresh copy of the pristine backlog: with the archiver, then without for as long."""
    say = (lambda *_a: None) if quiet else (lambda *a: print(*a, flush=True))
    data = os.path.join(directory, f"round-{number}")
    shutil.copytree(os.path.join(directory, "pristine"), data)
    os.sync()
    # The store is reopened for each window, so both start from a store that just opened.
    async with open_store(data, config.attribute) as store:
        ticks, cpu = cpu_ticks(), cpu_seconds()
        archived, notes_with = await with_archiver(store, os.path.join(directory, f"repo-{number}"), writers,
                                                   backlog_lsn, tail, max_seconds, 1 << 20, config)
        archived.stolen_pct, archived.cpu_seconds = stolen_since(ticks), cpu_seconds() - cpu
    say(f"round {number}: with the archiver {archived.seconds:.1f} s, backlog shipped after "
        f"{archived.catch_up_seconds if archived.catch_up_seconds is not None else float('nan'):.1f} s")
    os.sync()
    async with open_store(data, config.attribute) as store:
        ticks, cpu = cpu_ticks(), cpu_seconds()
        plain, notes_without = await without_archiver(store, writers, archived.seconds, 2 << 20, config)
        plain.stolen_pct, plain.cpu_seconds = stolen_since(ticks), cpu_seconds() - cpu
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(os.path.join(directory, f"repo-{number}"), ignore_errors=True)
    notes = [f"round {number}", *notes_with, *notes_without] if config.attribute else []
    return {"without": asdict(plain) | {"rate": plain.rate}, "with": asdict(archived) | {"rate": archived.rate}}, notes


async def measure(directory: str, commits: int, writers: int, tail: float, max_seconds: float,
                  rounds: int, quiet: bool, config: Config) -> dict[str, object]:
    backlog_lsn, build_s = await build(directory, commits, quiet)
    if config.gc_freeze:
        freeze_long_lived()
    results, notes = [], []
    for number in range(1, rounds + 1):
        result, lines = await measure_round(directory, backlog_lsn, writers, tail, max_seconds, number, quiet, config)
        results.append(result)
        notes.extend(lines)
    return {"commits": commits, "writers": writers, "backlog_build_seconds": build_s,
            "configuration": config.label(), "gc_freeze": config.gc_freeze,
            "seal_in_process": not config.seal_in_thread, "traced": config.attribute,
            "rounds": results, "attribution": notes}


def verdicts(result: dict[str, object]) -> tuple[float, float, bool]:
    """(longest stall while archiving over all rounds, median of the rounds' p99 ratios, every backlog shipped)."""
    rounds = result["rounds"]
    assert isinstance(rounds, list)
    stall = max(r["with"]["stall_max_ms"] for r in rounds)
    ratio = statistics.median(r["with"]["commit_p99_ms"] / r["without"]["commit_p99_ms"] for r in rounds)
    shipped = all(r["with"]["catch_up_seconds"] is not None for r in rounds)
    return stall, ratio, shipped


def report(result: dict[str, object]) -> list[str]:
    """A table per round and the verdicts over all rounds."""
    rows = [("duration s", "seconds", "{:,.1f}"), ("commits/s", "rate", "{:,.0f}"),
            ("event-loop stall max ms", "stall_max_ms", "{:,.1f}"),
            ("event-loop stall p99 ms", "stall_p99_ms", "{:,.2f}"),
            ("commit latency p50 ms", "commit_p50_ms", "{:,.2f}"),
            ("commit latency p99 ms", "commit_p99_ms", "{:,.2f}"),
            ("commit latency max ms", "commit_max_ms", "{:,.1f}"),
            ("stalls over 15 ms", "stalls_over_15ms", "{:,}"),
            ("  longest, less run-queue wait ms", "stall_max_less_run_queue_ms", "{:,.1f}"),
            ("GC collections gen 0/1/2", "gc_collections", "{0[0]}/{0[1]}/{0[2]}"),
            ("longest full collection ms CPU", "gc_full_cpu_max_ms", "{:,.1f}"),
            ("GC ms CPU in all", "gc_cpu_ms", "{:,.1f}"),
            ("CPU s (user+sys, with workers)", "cpu_seconds", "{:,.1f}"),
            ("host CPU stolen by other guests %", "stolen_pct", "{:,.1f}")]
    lines: list[str] = []
    rounds = result["rounds"]
    assert isinstance(rounds, list)
    for number, one in enumerate(rounds, 1):
        plain, archived = one["without"], one["with"]
        lines.append(f"{f'round {number}':<34} {'without archiver':>18} {'with archiver':>18}")
        for label, field, fmt in rows:
            lines.append(f"{label:<34} {fmt.format(plain[field]):>18} {fmt.format(archived[field]):>18}")
        catch_up = archived["catch_up_seconds"]
        lines.append(f"{'backlog shipped after s':<34} {'':>18} "
                     + (f"{catch_up:>18.1f}" if catch_up is not None else f"{'NEVER':>18}"))
        lines.append(f"{'commit p99 with / without':<34} {'':>18} "
                     f"{archived['commit_p99_ms'] / plain['commit_p99_ms']:>17.2f}x")
    stall, ratio, shipped = verdicts(result)
    worst_plain = max(r["without"]["stall_max_ms"] for r in rounds)
    own = max(r["with"]["stall_max_less_run_queue_ms"] for r in rounds)
    lines.extend(str(line) for line in result.get("attribution") or [])
    lines.append(f"configuration: {result.get('configuration')}")
    lines.append(f"longest stall while archiving {stall:.1f} ms over {len(rounds)} rounds "
                 f"(without the archiver: {worst_plain:.1f} ms): target <= {STALL_LIMIT_MS:g} ms "
                 + ("ok" if stall <= STALL_LIMIT_MS else "MISSED")
                 + f"; less the loop thread's run-queue waits (the host's load): {own:.1f} ms")
    lines.append(f"commit p99 with / without archiving, median of {len(rounds)} rounds {ratio:.2f}x: "
                 f"target <= {P99_RATIO_LIMIT}x " + ("ok" if ratio <= P99_RATIO_LIMIT and shipped else "MISSED"))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=None, help="where data is written (default: the system temp dir)")
    parser.add_argument("--commits", type=int, default=1_000_000, help="single-put commits in the backlog")
    parser.add_argument("--writers", type=int, default=64, help="concurrent writers during the measurement")
    parser.add_argument("--tail", type=float, default=3.0, help="seconds measured after the backlog is shipped")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="give up waiting for the catch-up")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds, each on a fresh copy of the backlog (the p99 ratio is their median)")
    parser.add_argument("--seal-in-thread", action="store_true",
                        help="opt out to ArchiveOptions(seal_in_process=False): chunks are sealed in a worker thread "
                             "of the writers' process (labelled: not the library's default)")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="call pitr.gcpause.freeze_long_lived() once the backlog is built, as a latency-minded "
                             "application may after its start-up (labelled: not the default)")
    parser.add_argument("--attribute", action="store_true",
                        help="trace every window and print what overlapped each stall over 15 ms "
                             "(garbage collections, worker calls, WAL syncs, loop steps); perturbs the figures")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with work_dir(args.dir, "pitr-bench-stall-") as directory:
        result = trio.run(measure, directory, args.commits, args.writers, args.tail, args.max_seconds,
                          max(1, args.rounds), args.json,
                          Config(seal_in_thread=args.seal_in_thread, gc_freeze=args.gc_freeze,
                                 attribute=args.attribute))
    if args.json:
        print(json.dumps(result))
    else:
        print("\n".join(report(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
