"""pitr reindex: rebuild the catalog from the repository's files alone, whatever state the old one is in."""

from __future__ import annotations

import argparse
import time

from pitr.cli.common import add_json, add_repo, print_json, progress_for, repositories
from pitr.jsontypes import JSONObject


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("reindex", help="rebuild the catalog from the repository's files")
    add_repo(p, many=True)
    add_json(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    rows: list[JSONObject] = []
    lines: list[str] = []
    progress = progress_for(args, unit="items")
    async with repositories(args) as repos:
        for repo in repos:
            started = time.monotonic()
            report = await repo.reindex(progress)
            progress.done()
            seconds = round(time.monotonic() - started, 3)
            segments, snapshots, key_versions = (len(repo.catalog.segments()), len(repo.catalog.snapshots()),
                                                 repo.catalog.keys_count())
            rows.append({"repository": repo.url, "catalog": repo.catalog.path, "indexed": len(report.indexed),
                         "unindexed": [{"file": c.name, "kind": c.kind, "first_lsn": c.first_lsn,
                                        "last_lsn": c.last_lsn, "reason": c.detail} for c in report.unindexed],
                         "segments": segments, "snapshots": snapshots, "key_versions": key_versions,
                         "seconds": seconds})
            lines.append(f"{repo.url}: indexed {len(report.indexed)} files ({segments} segments, "
                         f"{snapshots} snapshots, {key_versions:,} key versions) in {seconds}s")
            lines += [f"  cannot index {c.name} (LSN {c.first_lsn}..{c.last_lsn}): {c.detail}"
                      for c in report.unindexed]
    if args.json:
        print_json(rows)
    else:
        for line in lines:
            print(line)
    return 1 if any(r["unindexed"] for r in rows) else 0
