"""pitr backups list: the repository's snapshots with their metadata."""

from __future__ import annotations

import argparse

from pitr.catalog.entries import SnapshotEntry
from pitr.cli.common import add_json, add_repo, human_bytes, print_json, repositories
from pitr.jsontypes import JSONObject
from pitr.timefmt import format_time


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("backups", help="list backups (snapshots)")
    actions = p.add_subparsers(dest="action", required=True)
    lp = actions.add_parser("list", help="list snapshots with their metadata")
    add_repo(lp, many=True)
    add_json(lp)
    lp.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    found: list[tuple[str, SnapshotEntry]] = []
    async with repositories(args) as repos:
        for repo in repos:
            await repo.sync()
            found += [(repo.url, s) for s in repo.catalog.snapshots()]
    if args.json:
        rows: list[JSONObject] = [
            {"repository": url, "name": s.name, "lsn": s.lsn, "time": format_time(s.ts_ns),
             "ts_ns": s.ts_ns, "size_bytes": s.size, "entry_count": s.entry_count,
             "logical_bytes": s.logical_bytes, "created": format_time(s.created_ns),
             "chain_digest": s.chain_digest.hex(), "state_digest": s.state_digest.hex(),
             "metadata": s.metadata} for url, s in found]
        print_json(rows)
        return 0
    if not found:
        print("no backups")
        return 0
    print(f"{'LSN':>12}  {'time (UTC)':<31}  {'keys':>10}  {'data':>10}  {'file':>10}  name")
    for url, s in found:
        print(f"{s.lsn:>12}  {format_time(s.ts_ns):<31}  {s.entry_count:>10,}  "
              f"{human_bytes(s.logical_bytes):>10}  {human_bytes(s.size):>10}  "
              f"{s.name}" + (f"  [{url}]" if len(args.repo or []) > 1 else ""))
    return 0
