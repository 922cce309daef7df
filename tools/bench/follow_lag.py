#!/usr/bin/env python3
"""How far a warm standby lags its source: a writer at a fixed rate, `pitr archive --follow` and
`pitr restore --latest --follow`, each at its default interval.

    .venv/bin/python tools/bench/follow_lag.py [--dir DIR] [--rate N] [--seconds S] [--warmup S]
                                               [--writers N] [--archive-interval S] [--follow-interval S]
                                               [--json] [--trace FILE]

One run, one machine: a store in this process commits single puts at `--rate` (default 10,000
commits/s) from `--writers` tasks; `pitr archive --follow` ships its log into a local repository
and `pitr restore --latest --follow --json` keeps a standby, both in their own processes. Every
50 ms, after `--warmup` seconds, the benchmark samples the standby's last applied LSN (from its
JSON lines) against the writer's last acknowledged LSN: the lag in commits, and in milliseconds
the age of the oldest commit the standby does not have yet (0 when it has them all). Prints p50,
p99 and max of both, the writer's achieved rate, and the CPU seconds (user + system) of the
archiver and follower processes beside the wall time. Target: p99 <= 2,000 ms. Exit status is 0
even when the target is missed: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from array import array

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]

import trio  # noqa: E402

from pitr.store import Store, StoreOptions  # noqa: E402

sys.path.append(_HERE)
from _common import cpu_ticks, stolen_since, work_dir  # noqa: E402

VALUE = b"v" * 100
SAMPLE_SECONDS = 0.05
TARGET_P99_MS = 2000.0


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Standby:
    """The follower process, and the last LSN its JSON lines reported applied."""

    def __init__(self, argv: list[str], log: str) -> None:
        self.applied = 0
        self.lines = 0
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._log)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                doc = json.loads(raw)
            except ValueError:
                continue
            self.applied = max(self.applied, int(doc.get("applied_lsn", 0)))
            self.lines += 1

    def stop(self) -> float:
        """Stop it; returns its CPU seconds (user + system)."""
        return stop_process(self.proc, self._log)


def stop_process(proc: subprocess.Popen[bytes], log: object) -> float:
    proc.send_signal(2)
    try:
        _pid, _status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:
        return float("nan")
    proc.returncode = 0
    if hasattr(log, "close"):
        log.close()
    return usage.ru_utime + usage.ru_stime


def start_archiver(argv: list[str], log_path: str) -> tuple[object, subprocess.Popen[bytes]]:
    log = open(log_path, "wb")  # noqa: SIM115 - closed by stop_process
    return log, subprocess.Popen(argv, stdout=log, stderr=log)


def archived_lsn(repo: str) -> int:
    """The last LSN of the newest segment in the repository (its name says it)."""
    names = [n for n in os.listdir(os.path.join(repo, "segments")) if n.endswith(".seg")]
    return max((int(n.split("-")[1].split(".")[0]) for n in names), default=0)


def age_ms(commit_ts: array, applied: int, head: int) -> float:
    """How old the oldest commit after `applied` is (0 when there is none up to `head`)."""
    oldest = applied + 1
    if oldest <= head and oldest < len(commit_ts) and commit_ts[oldest]:
        return max(0.0, (time.time_ns() - commit_ts[oldest]) / 1e6)
    return 0.0


def wait_for_segment(repo: str) -> None:
    segments = os.path.join(repo, "segments")
    while not os.path.isdir(segments) or not os.listdir(segments):
        time.sleep(0.05)


async def run(args: argparse.Namespace, root: str) -> dict[str, object]:
    data, repo, standby_dir = (os.path.join(root, n) for n in ("data", "repo", "standby"))
    pitr = [sys.executable, "-m", "pitr"]
    commit_ts = array("q", [0])  # commit time by LSN (index)
    last = 0
    async with Store(data, StoreOptions()) as store:
        async def writer(w: int, per_tick: int, stop_at: float) -> None:
            nonlocal last
            seq = 0
            tick = args.writers / args.rate * per_tick
            next_at = time.monotonic()
            while time.monotonic() < stop_at:
                for _ in range(per_tick):
                    commit = await store.put(f"w{w}-{seq % 10_000}".encode(), VALUE)
                    seq += 1
                    while len(commit_ts) <= commit.lsn:
                        commit_ts.append(0)
                    commit_ts[commit.lsn] = commit.ts_ns
                    last = max(last, commit.lsn)
                next_at += tick
                await trio.sleep(max(0.0, next_at - time.monotonic()))

        await store.put(b"seed", VALUE)
        archive_cmd = [*pitr, "archive", "--follow", "--data", data, "--repo", repo]
        if args.archive_interval is not None:
            archive_cmd += ["--interval", str(args.archive_interval)]
        archive_log, archiver = start_archiver(archive_cmd, os.path.join(root, "archive.log"))
        await trio.to_thread.run_sync(wait_for_segment, repo)
        follow_cmd = [*pitr, "restore", "--latest", "--follow", "--dest", standby_dir, "--repo", repo, "--json"]
        if args.follow_interval is not None:
            follow_cmd += ["--interval", f"{args.follow_interval}s"]
        if args.trace:
            os.environ["PITR_FOLLOW_TRACE"] = args.trace  # made absolute in main()
        standby = await trio.to_thread.run_sync(Standby, follow_cmd, os.path.join(root, "follow.log"))
        started = time.monotonic()
        stop_at = started + args.warmup + args.seconds
        lag_commits: list[float] = []
        lag_ms: list[float] = []
        archive_ms: list[float] = []  # the same for the repository alone: the archiver's share of the lag
        ticks = cpu_ticks()
        first_lsn = last
        async with trio.open_nursery() as nursery:
            per_tick = max(1, args.rate // (args.writers * 100))  # about 100 ticks a second per writer
            for w in range(args.writers):
                nursery.start_soon(writer, w, per_tick, stop_at)
            while time.monotonic() < stop_at:
                await trio.sleep(SAMPLE_SECONDS)
                if time.monotonic() - started < args.warmup:
                    first_lsn = last
                    continue
                applied, head = standby.applied, last
                lag_commits.append(max(0, head - applied))
                lag_ms.append(age_ms(commit_ts, applied, head))
                archive_ms.append(age_ms(commit_ts, archived_lsn(repo), head))
        measured = time.monotonic() - started - args.warmup
        stolen = stolen_since(ticks)
        archiver_cpu = stop_process(archiver, archive_log)
        follower_cpu = standby.stop()
    return {"rate_target": args.rate, "rate": (last - first_lsn) / measured if measured > 0 else 0,
            "seconds": measured, "samples": len(lag_ms), "follower_lines": standby.lines,
            "lag_commits_p50": pct(lag_commits, 0.5), "lag_commits_p99": pct(lag_commits, 0.99),
            "lag_commits_max": pct(lag_commits, 1.0), "lag_ms_p50": pct(lag_ms, 0.5),
            "lag_ms_p99": pct(lag_ms, 0.99), "lag_ms_max": pct(lag_ms, 1.0),
            "archive_lag_ms_p50": pct(archive_ms, 0.5), "archive_lag_ms_p99": pct(archive_ms, 0.99),
            "archiver_cpu_seconds": archiver_cpu, "follower_cpu_seconds": follower_cpu,
            "bench_cpu_seconds": sum(os.times()[:2]), "stolen_percent": stolen,
            "load": os.getloadavg(), "target_p99_ms": TARGET_P99_MS,
            "archive_interval": args.archive_interval or "default", "follow_interval": args.follow_interval or "default"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None)
    parser.add_argument("--rate", type=int, default=10_000, help="commits per second the writer aims at")
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--archive-interval", type=float, default=None, help="default: pitr archive's own")
    parser.add_argument("--follow-interval", type=float, default=None, help="default: the follower's own")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--trace", default=None, metavar="FILE",
                        help="the follower's trace (PITR_FOLLOW_TRACE): a JSON line per look at the repository")
    args = parser.parse_args()
    if args.trace:
        args.trace = os.path.abspath(args.trace)
    with work_dir(args.dir, "pitr-bench-follow-") as root:
        result = trio.run(run, args, root)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    p99 = float(result["lag_ms_p99"])  # type: ignore[arg-type]
    print(f"follow lag: writer {result['rate']:,.0f} commits/s (target {args.rate:,}) for {result['seconds']:.1f} s; "
          f"archive interval {result['archive_interval']}, follow interval {result['follow_interval']}")
    print(f"  lag commits  p50 {result['lag_commits_p50']:,.0f}  p99 {result['lag_commits_p99']:,.0f}  "
          f"max {result['lag_commits_max']:,.0f}")
    print(f"  lag ms       p50 {result['lag_ms_p50']:,.0f}  p99 {p99:,.0f}  max {result['lag_ms_max']:,.0f}   "
          f"target p99 <= {TARGET_P99_MS:,.0f} ms  {'ok' if p99 <= TARGET_P99_MS else 'MISSED'}")
    print(f"  of which the repository alone (archiver): p50 {result['archive_lag_ms_p50']:,.0f}  "
          f"p99 {result['archive_lag_ms_p99']:,.0f} ms")
    print(f"  CPU s: archiver {result['archiver_cpu_seconds']:.1f}, follower {result['follower_cpu_seconds']:.1f}, "
          f"writer+bench {result['bench_cpu_seconds']:.1f}; steal {result['stolen_percent']:.1f}%; "
          f"load {' '.join(f'{x:.2f}' for x in result['load'])}")  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
