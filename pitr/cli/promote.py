"""pitr promote DIR: a standby stops following and becomes a writable store with a new history."""

from __future__ import annotations

import argparse

from pitr.cli.common import add_json, print_json
from pitr.follow import promote
from pitr.timefmt import format_time


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("promote", help="make a standby (restore --follow) a writable store with a new history")
    p.add_argument("dir", metavar="DIR", help="the standby's directory (the --dest of restore --follow)")
    add_json(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    done = promote(args.dir)
    summary = {"dir": done.path, "store_id": str(done.store_id), "parent_store_id": str(done.parent_store_id),
               "lsn": done.lsn, "commit_time": format_time(done.ts_ns) if done.ts_ns else None,
               "first_lsn": done.lsn + 1, "followed": done.repo}
    if args.json:
        print_json(summary)
        return 0
    print(f"promoted {done.path}: a writable store with new store id {done.store_id}, its history starting at "
          f"LSN {done.lsn + 1:,} after LSN {done.lsn:,} of store {done.parent_store_id} (followed from {done.repo}); "
          f"archive it into a new repository")
    return 0
