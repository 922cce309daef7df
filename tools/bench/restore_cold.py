#!/usr/bin/env python3
"""Whole-process cold `pitr restore --latest` beside Redis's AOF reload of the same commits, same run.

    .venv/bin/python tools/bench/restore_cold.py [--commits N] [--trials T] [--dir DIR] [--keep]

The history: N single-put commits of 100-byte values, each to one of N keys chosen at random
(seeded, printed), the Redis workload `redis-benchmark -t set -n N -r N -d 100`. It is written
straight into two repositories (sealed segments of 65,536 commits, as `pitr archive` seals them),
one without a snapshot and one with a snapshot at the middle commit, and indexed by
`Repository.sync`. Redis (appendonly yes, appendfsync always, no AOF rewrite) is loaded with the
same number of SETs by redis-benchmark -P 16 and stopped.

Each trial, in this order, every run cold (os.sync(), then the page cache dropped when root):
Redis started until it answers PING (the AOF loaded), then `pitr restore --latest --dest D` as a
subprocess on each repository, with verification (the default) and with --no-verify. The figure
is Redis's reload time over pitr's (target >= 1.5), per trial and the median.

Exit status is 0 even when a figure looks poor: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]

import trio  # noqa: E402

from pitr.repo.identity import RepoIdentity, Watermark  # noqa: E402
from pitr.repo.repository import open_repository  # noqa: E402
from segments import SnapshotHeader, SnapshotWriter, chain, seal_segment  # noqa: E402
from segments import record as rec  # noqa: E402
from segments.naming import segment_name, snapshot_name  # noqa: E402

sys.path.append(_HERE)
from _common import Figure, work_dir  # noqa: E402

TS0 = 1_795_961_387_000_000_000
SEGMENT_COMMITS = 65_536
PITR = os.path.join(os.path.dirname(sys.executable), "pitr")


def value_of(lsn: int) -> bytes:
    return (b"%016x" % ((lsn * 0x9E3779B97F4A7C15) % (1 << 64)) * 7)[:100]


def write_history(root: str, store_id: uuid.UUID, commits: int, seed: int, snapshot_lsn: int) -> None:
    for sub in ("segments", "snapshots"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    rng = random.Random(seed)
    digest = chain.genesis(store_id)
    state: dict[bytes, bytes] = {}
    buf, spans = bytearray(), []
    for lsn in range(1, commits + 1):
        key = b"key:%012d" % rng.randrange(commits)
        ts = TS0 + lsn * 1_000
        data = rec.encode_single(lsn, ts, rec.PUT, key, value_of(lsn))
        start = len(buf)
        buf += data
        spans.append(rec.Span(lsn, ts, start, len(buf)))
        state[key] = value_of(lsn)
        if len(spans) == SEGMENT_COMMITS or lsn == snapshot_lsn or lsn == commits:
            with open(os.path.join(root, "segments", segment_name(spans[0].lsn, lsn)), "wb") as fh:
                digest = seal_segment(fh, store_id, digest, bytes(buf), spans, ts).chain_digest
            buf, spans = bytearray(), []
        if lsn == snapshot_lsn:
            header = SnapshotHeader(store_id, lsn, ts, digest, 0, 0, TS0, {"store_name": "bench", "first_lsn": 1})
            with open(os.path.join(root, "snapshots", snapshot_name(lsn, ts)), "w+b") as fh:
                writer = SnapshotWriter(fh, header)
                for k in sorted(state):
                    writer.add(k, state[k])
                writer.finish()


async def build_repository(root: str, commits: int, seed: int, snapshot_lsn: int) -> None:
    store_id = uuid.uuid4()
    async with open_repository(root, create=True) as repo:
        await repo.claim(RepoIdentity(store_id, "bench", TS0, 1, chain.genesis(store_id)))
    write_history(root, store_id, commits, seed, snapshot_lsn)
    async with open_repository(root) as repo:
        report = await repo.sync()
        assert not report.broken, report.broken
        await repo.write_watermark(Watermark(store_id, commits, TS0 + commits * 1_000 + 1_000_000_000))


def cold() -> None:
    """Everything written is on disk, and (as root) nothing is left in the page cache."""
    os.sync()
    if os.geteuid() == 0:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_answers(port: int) -> bool:
    """Whether Redis answers PING with PONG (while it loads its AOF it answers -LOADING)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class Redis:
    """redis-server on 127.0.0.1 with its own directory: appendonly, appendfsync always, no rewrite."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        os.makedirs(directory, exist_ok=True)

    def start(self) -> float:
        """Start it; returns the seconds until it answers PING (its AOF loaded)."""
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", "always", "--auto-aof-rewrite-percentage", "0",
             "--aof-use-rdb-preamble", "no", "--save", "", "--logfile", os.path.join(self.dir, "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not redis_answers(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.dir}/log")
            time.sleep(0.002)
        return time.perf_counter() - started

    def stop(self) -> None:
        if self.proc is not None:
            subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True)
            self.proc.wait(timeout=60)
            self.proc = None


def pitr_restore(repo: str, dest: str, *extra: str) -> float:
    shutil.rmtree(dest, ignore_errors=True)
    cold()
    started = time.perf_counter()
    subprocess.run([PITR, "restore", "--latest", "--repo", repo, "--dest", dest, *extra], check=True,
                   stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    shutil.rmtree(dest)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=1_000_000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--dir", default=None, help="work directory (default: the system temp dir)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if shutil.which("redis-server") is None or shutil.which("redis-benchmark") is None:
        print("redis-server and redis-benchmark are needed (Debian: apt-get install redis-server redis-tools)")
        return 1
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    n = args.commits
    print(f"{n:,} single-put commits of 100-byte values over {n:,} random keys (seed {seed})", flush=True)
    started = time.perf_counter()
    with work_dir(args.dir, "pitr-bench-restore-cold-", keep=args.keep) as work:
        plain, snap = os.path.join(work, "repo"), os.path.join(work, "repo-snapshot")
        trio.run(build_repository, plain, n, seed, 0)
        trio.run(build_repository, snap, n, seed, n // 2)
        redis = Redis(os.path.join(work, "redis"))
        try:
            redis.start()
            subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(redis.port), "-t", "set", "-n", str(n),
                            "-r", str(n), "-d", "100", "-P", "16", "-q"], check=True, capture_output=True)
        finally:
            redis.stop()
        aof = sum(os.path.getsize(os.path.join(d, f)) for d, _s, fs in os.walk(redis.dir) for f in fs
                  if ".aof" in f)
        print(f"histories and AOF written (AOF {aof / n:.0f} B/SET)", flush=True)
        dest = os.path.join(work, "restored")
        names = ["no snapshot, verified", "snapshot at N/2, verified", "no snapshot, --no-verify"]
        trials: list[tuple[float, list[float]]] = []
        for trial in range(args.trials):
            cold()
            try:
                reload = redis.start()
            finally:
                redis.stop()
            ours = [pitr_restore(plain, dest), pitr_restore(snap, dest), pitr_restore(plain, dest, "--no-verify")]
            trials.append((reload, ours))
            print(f"trial {trial + 1}: Redis AOF reload {reload:.2f} s; pitr "
                  + ", ".join(f"{name} {s:.2f} s (ratio {reload / s:.2f})" for name, s in zip(names, ours,
                                                                                             strict=True)),
                  flush=True)
    figures = []
    for k, name in enumerate(names):
        ratios = [reload / ours[k] for reload, ours in trials]
        median = statistics.median(ratios)
        reload = statistics.median(r for r, _o in trials)
        figures.append(Figure(f"restore --latest, {name}", "commits/s", n / reload * median,
                              "Redis AOF reload of the same SETs", n / reload, target=1.5 if k < 2 else None))
    for figure in figures:
        print(figure.line())
    print(f"total {time.perf_counter() - started:.1f} s (ratios are per trial, the median shown)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
