#!/usr/bin/env python3
"""Whole-process `pitr copy` between two directories beside `cp -r` of the same files, same run.

    .venv/bin/python tools/bench/repo_copy.py [--commits N] [--trials T] [--dir DIR] [--keep]

The history: N single-put commits of 100-byte values (the workload of restore_cold.py: sealed
segments of 65,536 commits, a snapshot at the middle commit), written straight into a
repository and indexed. Each trial, in this order: `cp -r` of the repository's segments and
snapshots (the floor: reading and writing the bytes, no check), `pitr copy --from A --to B`
into a new directory (every file fully verified, then published with fsync), and the same
command again (a resumed copy: every file at the target compared byte for byte, nothing
written). Figures are MB/s of repository bytes, medians over the trials.

Exit status is 0 even when a figure looks poor: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]

import trio  # noqa: E402

sys.path.append(_HERE)
from _common import Absolute, Figure, summary, work_dir  # noqa: E402
from restore_cold import build_repository  # noqa: E402

PITR = os.path.join(os.path.dirname(sys.executable), "pitr")


def repository_bytes(root: str) -> int:
    return sum(os.path.getsize(os.path.join(root, sub, name)) for sub in ("segments", "snapshots")
               for name in os.listdir(os.path.join(root, sub)))


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=400_000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to build (default: the system temp directory)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    with work_dir(args.dir, "pitr-bench-copy-", args.keep) as root:
        source = os.path.join(root, "source")
        trio.run(build_repository, source, args.commits, 1, args.commits // 2)
        size = repository_bytes(source)
        print(f"{args.commits:,} commits, {size / 1e6:.1f} MB in {len(os.listdir(os.path.join(source, 'segments')))} "
              f"segments and 1 snapshot", flush=True)
        plain, fresh, resumed = [], [], []
        for trial in range(args.trials):
            floor = os.path.join(root, f"cp-{trial}")
            os.makedirs(floor)
            plain.append(timed(["cp", "-r", os.path.join(source, "segments"), os.path.join(source, "snapshots"),
                                floor]))
            target = os.path.join(root, f"copy-{trial}")
            fresh.append(timed([PITR, "copy", "--from", source, "--to", target]))
            resumed.append(timed([PITR, "copy", "--from", source, "--to", target]))
            shutil.rmtree(floor)
            shutil.rmtree(target)
            print(f"trial {trial + 1}: cp -r {plain[-1]:.2f}s, copy {fresh[-1]:.2f}s, again {resumed[-1]:.2f}s",
                  flush=True)
        mb = size / 1e6
        figures: list[Figure | Absolute] = [
            Figure("pitr copy into a new directory", "MB/s", mb / statistics.median(fresh), "cp -r (no check)",
                   mb / statistics.median(plain)),
            Absolute("pitr copy again (all present, compared)", mb / statistics.median(resumed), "MB/s"),
        ]
        for figure in figures:
            print(figure.line(), flush=True)
        return summary(figures, started)


if __name__ == "__main__":
    sys.exit(main())
