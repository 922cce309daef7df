#!/usr/bin/env python3
"""The cost of choosing the live files of a listing (`pitr.repo.live`), which every sync, verify, cleanup and
follower look pays once per listing.

    .venv/bin/python tools/bench/live_listing.py [--names 100000] [--repaired 1000] [--rounds 5] [--json]

Builds a listing of N consecutive segment names plus a merged segment over every 32 of them, with
`--repaired` of them present at two repair generations too, and times `live_segments` on it, and
`live_snapshots` on N snapshot names: CPU seconds (user+sys of the process) and wall seconds per call.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]

from pitr.repo.live import live_segments, live_snapshots  # noqa: E402
from segments.naming import segment_name, snapshot_name  # noqa: E402


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--repaired", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = [segment_name(i * 10 + 1, i * 10 + 10) for i in range(args.names)]
    names += [segment_name(i * 10 + 1, (i + 32) * 10) for i in range(0, args.names - 31, 32)]
    names += [segment_name(i * 10 + 1, i * 10 + 10, g) for i in range(args.repaired) for g in (1, 2)]
    snaps = [snapshot_name(i * 100, 1_795_961_387_250_000_000 + i) for i in range(args.names)]
    out: dict[str, object] = {"names": len(names), "load": os.getloadavg()[0]}
    for label, func, listing in (("live_segments", live_segments, names), ("live_snapshots", live_snapshots, snaps)):
        cpu, wall = _cpu(), time.perf_counter()
        for _ in range(args.rounds):
            func(listing)
        out[label] = {"cpu_s": round((_cpu() - cpu) / args.rounds, 4),
                      "wall_s": round((time.perf_counter() - wall) / args.rounds, 4)}
    print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
