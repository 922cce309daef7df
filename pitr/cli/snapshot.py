"""pitr snapshot: archive the log through the current state and publish a snapshot of it."""

from __future__ import annotations

import argparse

from pitr.archiver import ArchiveOptions
from pitr.cli._archive_session import archiver_session
from pitr.cli._object_lock import add_object_lock
from pitr.cli.common import add_data, add_json, add_repo, human_bytes, print_json, progress_for
from pitr.snapshots.take import take_snapshot
from pitr.timefmt import format_time


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("snapshot", help="take a snapshot of the store into the repositories")
    add_data(p)
    add_repo(p, many=True)
    p.add_argument("--no-compress", action="store_true", help="store snapshot blocks uncompressed")
    add_object_lock(p)
    add_json(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    progress = progress_for(args, unit="items")
    async with archiver_session(args, ArchiveOptions(), sidecar=False) as (archiver, prepare):
        await archiver.cycle()
        entry = await take_snapshot(archiver, prepare=prepare, compress=not args.no_compress,
                                    progress=progress)
    progress.done()
    if args.json:
        print_json({"name": entry.name, "lsn": entry.lsn, "ts": format_time(entry.ts_ns),
                    "entries": entry.entry_count, "logical_bytes": entry.logical_bytes, "size": entry.size,
                    "repositories": [p.repo.url for p in archiver.progress]})
    else:
        print(f"snapshot {entry.name}: LSN {entry.lsn} at {format_time(entry.ts_ns)}, "
              f"{entry.entry_count:,} keys, {human_bytes(entry.logical_bytes)} of data in "
              f"{human_bytes(entry.size)}")
    return 0
