"""pitr timeline: the recoverable windows, snapshots and gaps of each repository."""

from __future__ import annotations

import argparse

from pitr.cli.common import add_json, add_repo, print_json, repositories, window_json, window_text
from pitr.timefmt import format_time
from pitr.timeline import build_timeline


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("timeline", help="show the recoverable windows")
    add_repo(p, many=True)
    add_json(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    rows = []
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
                         "last_lsn": segs[-1].last_lsn if segs else None, "_tl": tl})
    if args.json:
        print_json([{k: v for k, v in r.items() if k != "_tl"} for r in rows])
        return 0
    for r in rows:
        tl = r["_tl"]
        print(f"{r['repository']}  store {r['name']} ({r['store_id']})")
        if not tl.windows:  # type: ignore[attr-defined]
            print("  no recoverable window")
        for w in tl.windows:  # type: ignore[attr-defined]
            print(f"  recoverable  {window_text(w)}")
        for gap in r["gaps"]:  # type: ignore[attr-defined]
            print(f"  gap          LSN {gap['first_lsn']}..{gap['last_lsn']} missing")
        for b in r["bases"]:  # type: ignore[attr-defined]
            print(f"  base         LSN {b['lsn']} at {b['time']}  {b['snapshot'] or '(start of history)'}")
        for name in r["unbound_snapshots"]:  # type: ignore[attr-defined]
            print(f"  unusable     {name} (does not match the log)")
    return 0
