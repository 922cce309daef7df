#!/usr/bin/env python3
"""Prefix restore against the full restore of the same history, in the same run.

    .venv/bin/python tools/bench/prefix_restore.py [--dir DIR] [--commits N] [--keys N]
                                                   [--snapshot-at F] [--share F] [--trials N] [--keep]

The history is the one tools/bench/restore.py generates straight into a repository
(keys `user:%08d:profile`, pseudo-random updates, one in 20 a delete, a snapshot at
`--snapshot-at` of the history). The prefix selects `--share` of the keys (default 0.1 %:
`user:000010` over 100,000 keys). Each figure is the median of `--trials` restores to the
last commit, wall and CPU seconds (this process's user + system time), the prefix restore
checked against the full restore filtered to the prefix. The issue's target is >= 50x at
10,000,000 commits; the ratio depends on how much log follows the base snapshot, which a
prefix restore reads whole (docs/decisions.md, "undo: prefix restore"), so run it at
several `--snapshot-at`.

Exit status is 0 even when a figure looks poor: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]

import trio  # noqa: E402

from pitr.datadir.state import StateDB  # noqa: E402
from pitr.repo.repository import open_repository  # noqa: E402
from pitr.restore import KeySelection, RestoreOptions, RestoreResult, RestoreTarget, restore  # noqa: E402

sys.path.append(_HERE)
import restore as history_bench  # noqa: E402  (tools/bench/restore.py: the history generator)
from _common import Figure, summary, work_dir  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def prefix_for(keys: int, share: float) -> bytes:
    """A prefix of `key_of` selecting about `share` of `keys` keys (a power of ten of them)."""
    wanted = max(1, int(keys * share))
    digits = 8
    while digits > 0 and 10 ** (8 - digits + 1) <= wanted:
        digits -= 1
    start = history_bench.key_of(10 ** (8 - digits))  # a block of keys past the first ones
    return start[: len(b"user:") + digits]


async def one_restore(repo_dir: str, dest: str, target_ts: int, selection: KeySelection | None) -> tuple[float, float, RestoreResult]:
    shutil.rmtree(dest, ignore_errors=True)
    wall, cpu = time.perf_counter(), cpu_seconds()
    async with open_repository(repo_dir) as repo:
        result = await restore(repo, RestoreOptions(target=RestoreTarget(time_ns=target_ts), dest=dest,
                                                    pause_gc=True, selection=selection))
    assert isinstance(result, RestoreResult)
    return time.perf_counter() - wall, cpu_seconds() - cpu, result


def rows(dest: str, prefix: bytes) -> dict[bytes, bytes]:
    state = StateDB(os.path.join(dest, "state"), readonly=True)
    try:
        return {bytes(k): bytes(v) for k, v, _e in state.iter_range(prefix, None) if bytes(k).startswith(prefix)}
    finally:
        state.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=None, help="work directory (default: the system temp dir)")
    parser.add_argument("--commits", type=int, default=1_000_000, help="commits in the history")
    parser.add_argument("--keys", type=int, default=100_000, help="distinct keys")
    parser.add_argument("--snapshot-at", type=float, default=0.9,
                        help="where the snapshot sits, as a fraction of the history (default 0.9)")
    parser.add_argument("--segment-commits", type=int, default=250_000, help="commits per segment")
    parser.add_argument("--share", type=float, default=0.001, help="share of the keys under the prefix")
    parser.add_argument("--trials", type=int, default=3, help="restores of each kind (the figure is the median)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    started = time.perf_counter()
    with work_dir(args.dir, "pitr-bench-prefix-", keep=args.keep) as work:
        repo_dir = os.path.join(work, "repo")
        built = trio.run(history_bench.build_repository, repo_dir, args)
        history = history_bench.load_history(repo_dir)
        prefix = prefix_for(args.keys, args.share)
        print(f"history: {args.commits:,} commits over {args.keys:,} keys ({built['live_keys']:,.0f} live), "
              f"snapshot at LSN {history['snapshot_lsn']:,}; prefix {prefix.decode()!r}", flush=True)
        selection = KeySelection(prefixes=(prefix,))
        full, part = [], []
        for _ in range(args.trials):
            full.append(trio.run(one_restore, repo_dir, os.path.join(work, "full"), history["target_ts"], None))
            part.append(trio.run(one_restore, repo_dir, os.path.join(work, "part"), history["target_ts"],
                                 selection))
        expected = rows(os.path.join(work, "full"), prefix)
        assert rows(os.path.join(work, "part"), prefix) == expected, "the prefix restore differs from the full one"
        wall_full, cpu_full = statistics.median(t[0] for t in full), statistics.median(t[1] for t in full)
        wall_part, cpu_part = statistics.median(t[0] for t in part), statistics.median(t[1] for t in part)
        print(f"full restore: {full[0][2].keys:,} keys, {wall_full:.2f} s wall, {cpu_full:.2f} s CPU; "
              f"prefix restore: {len(expected):,} keys, {wall_part:.3f} s wall, {cpu_part:.3f} s CPU", flush=True)
        figures = [Figure("prefix restore, per second (wall)", "restores/s", 1 / wall_part,
                          "full restore", 1 / wall_full, 50.0),
                   Figure("prefix restore, per CPU second", "restores/s", 1 / max(cpu_part, 1e-6),
                          "full restore", 1 / max(cpu_full, 1e-6), 50.0)]
        for figure in figures:
            print(figure.line())
    return summary(figures, started)


if __name__ == "__main__":
    sys.exit(main())
