"""pitr reindex: rebuild the catalog from the repository's files alone, whatever state the old one is in."""

from __future__ import annotations

import argparse
import time

from pitr.cli.common import Progress, add_json, add_repo, print_json, repositories


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("reindex", help="rebuild the catalog from the repository's files")
    add_repo(p, many=True)
    add_json(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    rows = []
    progress = Progress()
    async with repositories(args) as repos:
        for repo in repos:
            started = time.monotonic()
            report = await repo.reindex(progress)
            progress.done()
            rows.append({"repository": repo.url, "catalog": repo.catalog.path, "indexed": len(report.indexed),
                         "unindexed": [{"file": c.name, "kind": c.kind, "first_lsn": c.first_lsn,
                                        "last_lsn": c.last_lsn, "reason": c.detail} for c in report.unindexed],
                         "segments": len(repo.catalog.segments()), "snapshots": len(repo.catalog.snapshots()),
                         "key_versions": repo.catalog.keys_count(),
                         "seconds": round(time.monotonic() - started, 3)})
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            print(f"{row['repository']}: indexed {row['indexed']} files ({row['segments']} segments, "
                  f"{row['snapshots']} snapshots, {row['key_versions']:,} key versions) in {row['seconds']}s")
            for c in row["unindexed"]:  # type: ignore[attr-defined]
                print(f"  cannot index {c['file']} (LSN {c['first_lsn']}..{c['last_lsn']}): {c['reason']}")
    return 1 if any(r["unindexed"] for r in rows) else 0
