"""pitr timeline: the recoverable windows, snapshots and gaps of each repository."""

from __future__ import annotations

import argparse
from typing import Any

from pitr.cli.common import add_json, add_repo, print_json, repositories, window_json, window_text
from pitr.timefmt import format_time
from pitr.timeline import build_timeline


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("timeline", help="show the recoverable windows")
    add_repo(p, many=True)
    add_json(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    timelines = []
    async with repositories(args) as repos:
        for repo in repos:
            ident = await repo.require_identity()
            await repo.sync()
            tl = build_timeline(repo.catalog, ident)
            segs = repo.catalog.segments()
            rows.append({"repository": repo.url, "store_id": str(ident.store_id), "name": ident.name,
                         "windows": [window_json(w) for w in tl.windows],
                         "gaps": [{"first_lsn": a, "last_lsn": b} for a, b in tl.gaps],
                         "bases": [{"lsn": b.lsn, "time": format_time(b.ts_ns), "snapshot": b.snapshot}
                                   for b in tl.bases],
                         "unbound_snapshots": tl.unbound_snapshots, "segments": len(segs),
                         "last_lsn": segs[-1].last_lsn if segs else None})
            timelines.append(tl)
    if args.json:
        print_json(rows)
        return 0
    for r, tl in zip(rows, timelines, strict=True):
        print(f"{r['repository']}  store {r['name']} ({r['store_id']})")
        if not tl.windows:
            print("  no recoverable window")
        for w in tl.windows:
            print(f"  recoverable  {window_text(w)}")
        for gap in r["gaps"]:
            print(f"  gap          LSN {gap['first_lsn']}..{gap['last_lsn']} missing")
        for b in r["bases"]:
            print(f"  base         LSN {b['lsn']} at {b['time']}  {b['snapshot'] or '(start of history)'}")
        for name in r["unbound_snapshots"]:
            print(f"  unusable     {name} (does not match the log)")
    return 0
