#!/usr/bin/env python3
"""`pitr snapshot` and `pitr restore --latest` from that snapshot, whole processes, cold, in CPU and wall seconds.

    .venv/bin/python tools/bench/snapshot.py --data DATA --repo REPO [--runs 3] [--dir WORK]

DATA is a store and REPO its repository with the log archived (`tools/bench/commands.py
--commits 1000000 --keep --dir D` leaves D/a and D/repo; so does any store). Each run copies both
into WORK (the originals are never written), `os.sync()`s and, as root, drops the page cache,
then times `pitr snapshot --data COPY --repo COPY` as a whole process; then `pitr restore
--latest` of the copy (the new snapshot plus whatever log follows it: none) into a new directory.
The baseline is the raw codec: zstd level 3 over the snapshot's own blocks, in process, warm
(`_common.raw_snapshot_compress_seconds`). It prints the median of the runs: wall and CPU
(user + system) seconds, the load average and the CPU stolen by other guests beside them, since
on a shared host wall clock says more about the host than about the program.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]
import segments  # noqa: E402, F401  (the package, before tools/bench/segments.py can shadow it)

sys.path.append(_HERE)
from _common import cpu_ticks, make_cold, raw_snapshot_compress_seconds, run_timed, stolen_since  # noqa: E402

CHILD_ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the store to snapshot (copied, never written)")
    parser.add_argument("--repo", required=True, help="its repository, log archived (copied, never written)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", help="work directory (default: a temporary one, removed)")
    args = parser.parse_args()
    work = args.dir or tempfile.mkdtemp(prefix="pitr-bench-snapshot-")
    pitr = [sys.executable, "-m", "pitr.cli.main"]
    snap_runs, restore_runs = [], []
    logical = raw_s = 0.0
    steal_at = cpu_ticks()
    try:
        for run in range(args.runs):
            data, repo, dest = (os.path.join(work, f"{part}-{run}") for part in ("data", "repo", "dest"))
            shutil.copytree(args.data, data, symlinks=True)
            shutil.copytree(args.repo, repo, symlinks=True)
            make_cold()
            done = run_timed([*pitr, "snapshot", "--data", data, "--repo", repo, "--json"], env=CHILD_ENV,
                             scratch=work)
            name = json.loads(done.stdout)["name"]
            snap_runs.append(done)
            if run == 0:
                logical, raw_s = raw_snapshot_compress_seconds(os.path.join(repo, "snapshots", name))
            make_cold()
            done = run_timed([*pitr, "restore", "--latest", "--repo", repo, "--dest", dest, "--json"],
                             env=CHILD_ENV, scratch=work)
            got = json.loads(done.stdout)
            if got.get("base") != name:
                raise SystemExit(f"the restore did not start from the new snapshot {name}: {got}")
            restore_runs.append(done)
            shutil.rmtree(data)
            shutil.rmtree(dest)
            shutil.rmtree(repo)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    steal = stolen_since(steal_at)
    load = os.getloadavg()[0]
    for label, runs in (("pitr snapshot", snap_runs), ("pitr restore --latest (from it)", restore_runs)):
        wall = statistics.median(r.seconds for r in runs)
        cpu = statistics.median(r.cpu_seconds for r in runs)
        extra = ""
        if label == "pitr snapshot":
            extra = (f"; {logical / 1e6 / wall:,.0f} MB/s of blocks; zstd -3 of the same blocks {raw_s:.3f} s "
                     f"({logical / 1e6 / raw_s:,.0f} MB/s): ratio {raw_s / wall:.3f} wall, {raw_s / cpu:.3f} CPU")
        print(f"{label}: {wall:.2f} s wall, {cpu:.2f} s CPU (median of {len(runs)}; "
              f"peak RSS {max(r.peak_rss_mb for r in runs):,.0f} MiB){extra}")
    print(f"load average {load:.1f}, CPU stolen {steal:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
