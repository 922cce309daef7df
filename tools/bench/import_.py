#!/usr/bin/env python3
"""`pitr import` as a user runs it, whole process and cold, beside Redis SET in the same run (issue 13).

    .venv/bin/python tools/bench/import_.py [--commits N] [--dir DIR] [--seed S] [--keep]

Workload: N (default 1,000,000) single-put lines of 100-byte values over N random
keys, written once (seeded; the seed is printed) in two forms: plain
``{"op": "put", "key", "value"}`` lines, and lines as `pitr log --json` writes them
(with "lsn" and an RFC 3339 "ts" in nanoseconds).

Figures, each a whole `python -m pitr import` process after `os.sync()` and, as
root, a dropped page cache:

- `pitr import FILE` of the plain lines;
- `pitr import -` reading the log-form lines from standard input (what
  `pitr log --json | pitr import -` does on its import side).

Baseline, in the same run, before and after the pitr figures: redis-server on
127.0.0.1 (a free port, its own directory, `appendonly yes`, `appendfsync
always`), `redis-benchmark -t set -n N -r N -d 100 -P 16`; the ratio is against
the mean of the two. Target: >= 1.0x. Exit status is 0 even when it is missed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import time

TS0 = 1_700_000_000_000_000_000  # 2023-11-14: in the past, so no --max-clock-skew is needed


def write_inputs(directory: str, n: int, seed: int) -> tuple[str, str]:
    plain, logged = os.path.join(directory, "plain.jsonl"), os.path.join(directory, "log.jsonl")
    rng = random.Random(seed)
    with open(plain, "w") as fp, open(logged, "w") as fl:
        for i in range(n):
            key, value = f"key:{rng.randrange(n):012d}", f"{rng.getrandbits(64):0100d}"
            fp.write(json.dumps({"op": "put", "key": key, "value": value}) + "\n")
            seconds, nanos = divmod(TS0 + i * 1000, 1_000_000_000)
            ts = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
            fl.write(json.dumps({"lsn": i + 1, "ts": f"{ts}.{nanos:09d}Z", "op": "put", "key": key,
                                 "value": value}) + "\n")
    return plain, logged


def cold() -> None:
    os.sync()
    if os.geteuid() == 0:
        try:
            with open("/proc/sys/vm/drop_caches", "w") as fh:
                fh.write("3\n")
        except OSError:
            pass  # a container may refuse it: the figure is then cold only in the sense of synced


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_set_rate(directory: str, n: int) -> float:
    """SET/s of redis-benchmark -P 16 against a fresh redis-server with appendfsync always."""
    for program in ("redis-server", "redis-benchmark", "redis-cli"):
        if shutil.which(program) is None:
            sys.exit(f"{program} is missing: apt-get install -y redis-server redis-tools")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, mode=0o700)
    port = free_port()
    server = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", directory,
                               "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() != b"PONG":
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("redis-server did not start")
            time.sleep(0.05)
        cold()
        out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "set", "-n", str(n), "-r", str(n),
                              "-d", "100", "-P", "16", "--csv"], capture_output=True, text=True, check=True).stdout
        row = next(line for line in out.splitlines() if line.startswith('"SET"'))
        return float(row.split(",")[1].strip('"'))
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def child_cpu() -> float:
    """CPU seconds (user + sys) of the waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pitr_import(data: str, source: str, stdin: bool, n: int) -> float:
    """Commits/s of one whole `pitr import` process (cold); checks it committed all n lines, and
    prints its wall and CPU seconds (every thread of the process)."""
    shutil.rmtree(data, ignore_errors=True)
    cold()
    args = [sys.executable, "-m", "pitr", "import", "-" if stdin else source, "--data", data, "--json"]
    with open(source, "rb") as fh:
        cpu = child_cpu()
        start = time.perf_counter()
        done = subprocess.run(args, stdin=fh if stdin else subprocess.DEVNULL, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        cpu = child_cpu() - cpu
    print(f"    ({seconds:.2f} s wall, {cpu:.2f} s CPU)", flush=True)
    if done.returncode != 0:
        sys.exit(f"pitr import failed ({done.returncode}): {done.stderr}")
    summary = json.loads(done.stdout)
    if summary != {"commits": n, "first_lsn": 1, "last_lsn": n}:
        sys.exit(f"pitr import committed {summary}, not {n} commits")
    shutil.rmtree(data, ignore_errors=True)
    return n / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=1_000_000)
    parser.add_argument("--dir", default="/tmp/import/bench")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the input files for the next run")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    os.makedirs(args.dir, exist_ok=True)
    print(f"pitr import, {args.commits:,} commits, seed {seed}", flush=True)
    plain, logged = write_inputs(args.dir, args.commits, seed)
    try:
        redis_before = redis_set_rate(os.path.join(args.dir, "redis"), args.commits)
        print(f"  redis SET -P 16, appendfsync always (before): {redis_before:,.0f}/s", flush=True)
        data = os.path.join(args.dir, "data")
        file_rate = pitr_import(data, plain, False, args.commits)
        print(f"  pitr import FILE: {file_rate:,.0f} commits/s", flush=True)
        stdin_rate = pitr_import(data, logged, True, args.commits)
        print(f"  pitr import - (pitr log --json lines): {stdin_rate:,.0f} commits/s", flush=True)
        redis_after = redis_set_rate(os.path.join(args.dir, "redis"), args.commits)
        print(f"  redis SET -P 16, appendfsync always (after): {redis_after:,.0f}/s", flush=True)
    finally:
        if not args.keep:
            os.unlink(plain)
            os.unlink(logged)
    redis = (redis_before + redis_after) / 2
    for name, rate in (("pitr import FILE", file_rate), ("pitr import - (log lines)", stdin_rate)):
        verdict = "ok" if rate >= redis else "MISSED"
        print(f"{name:<28} {rate:>10,.0f} commits/s | redis SET -P 16 {redis:>10,.0f}/s | "
              f"ratio {rate / redis:5.2f}  target >= 1.00x  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
