"""pitr backups list: the repository's snapshots with their metadata."""

from __future__ import annotations

import argparse
from typing import Any

from pitr.cli.common import add_json, add_repo, human_bytes, print_json, repositories
from pitr.timefmt import format_time


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("backups", help="list backups (snapshots)")
    actions = p.add_subparsers(dest="action", required=True)
    lp = actions.add_parser("list", help="list snapshots with their metadata")
    add_repo(lp, many=True)
    add_json(lp)
    lp.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    async with repositories(args) as repos:
        for repo in repos:
            await repo.sync()
            for s in repo.catalog.snapshots():
                rows.append({"repository": repo.url, "name": s.name, "lsn": s.lsn, "time": format_time(s.ts_ns),
                             "ts_ns": s.ts_ns, "size_bytes": s.size, "entry_count": s.entry_count,
                             "logical_bytes": s.logical_bytes, "created": format_time(s.created_ns),
                             "chain_digest": s.chain_digest.hex(), "state_digest": s.state_digest.hex(),
                             "metadata": s.metadata})
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no backups")
        return 0
    print(f"{'LSN':>12}  {'time (UTC)':<31}  {'keys':>10}  {'data':>10}  {'file':>10}  name")
    for r in rows:
        print(f"{r['lsn']:>12}  {r['time']:<31}  {r['entry_count']:>10,}  "
              f"{human_bytes(int(r['logical_bytes'])):>10}  {human_bytes(int(r['size_bytes'])):>10}  "
              f"{r['name']}" + (f"  [{r['repository']}]" if len(args.repo or []) > 1 else ""))
    return 0
