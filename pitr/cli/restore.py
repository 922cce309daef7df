"""pitr restore: build the state at a moment into a new store directory (or into etcd)."""

from __future__ import annotations

import argparse
import sys

from pitr.cli.common import Progress, add_json, add_repo, print_json, repositories
from pitr.cli.render import show_plan, skipped_json
from pitr.errors import InvalidArgument
from pitr.restore import RestoreOptions, RestorePlan, RestoreTarget, restore
from pitr.restore.restore import absolute
from pitr.timefmt import format_time, parse_time


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("restore", help="restore the state at a moment into a new store directory or etcd")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", help="moment: RFC 3339 with offset (2026-11-24T14:03:07Z) or Unix seconds")
    target.add_argument("--lsn", type=int, help="restore through this LSN (inclusive)")
    target.add_argument("--latest", action="store_true", help="the newest restorable point")
    p.add_argument("--dest", required=True,
                   help="directory of the new store, or etcd://HOST:PORT[,HOST:PORT...][/PREFIX] to write "
                        "the state into etcd (default prefix: the archived one)")
    p.add_argument("--exclusive", action="store_true", help="with --to: only commits strictly before it")
    p.add_argument("--dry-run", action="store_true", help="print the plan; restore nothing")
    p.add_argument("--force", action="store_true",
                   help="replace a non-empty destination that is a pitr store (or an etcd prefix); never a "
                        "store whose writer is running")
    p.add_argument("--replace-foreign", metavar="DIR",
                   help="with --force: also replace DIR (the --dest directory, named again) when it is not a "
                        "pitr store; everything in it is deleted")
    p.add_argument("--base", metavar="SNAPSHOT",
                   help="start from this snapshot (a name from `pitr backups list`) instead of the newest "
                        "valid one at or before the target")
    p.add_argument("--no-verify", action="store_true", help="skip checking the files before reading them")
    add_repo(p, many=True)
    add_json(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    if args.exclusive and args.to is None:
        raise InvalidArgument("--exclusive applies only to --to")
    target = RestoreTarget(time_ns=parse_time(args.to, what="--to") if args.to is not None else None,
                           lsn=args.lsn, latest=args.latest, exclusive=args.exclusive)
    if args.dest.startswith(("etcd://", "etcds://")):
        from pitr.cli._etcd import run_restore

        return await run_restore(args, target)
    replace_foreign = False
    if args.replace_foreign is not None:
        if not args.force:
            raise InvalidArgument("--replace-foreign needs --force")
        if absolute(args.replace_foreign) != absolute(args.dest):
            raise InvalidArgument(f"--replace-foreign {args.replace_foreign} does not name the destination "
                                  f"{args.dest}; name the directory to be replaced")
        replace_foreign = True
    options = RestoreOptions(target=target, dest=args.dest, force=args.force, replace_foreign=replace_foreign,
                             verify=not args.no_verify, dry_run=args.dry_run, base=args.base,
                             pause_gc=True)  # the command owns its process
    progress = Progress()
    async with repositories(args) as repos:
        result = await restore(repos, options, progress=progress,
                               say=lambda text: print(text, file=sys.stderr))
    progress.done()
    if isinstance(result, RestorePlan):
        show_plan(result, args.json)
        return 0
    summary = {"dest": result.dest, "target": target.describe(), "lsn": result.target_lsn,
               "commit_time": format_time(result.target_ts_ns), "base_lsn": result.base_lsn,
               "commits_replayed": result.commits_replayed, "keys": result.keys,
               "expired_dropped": result.expired_dropped, "seconds": round(result.seconds, 3),
               "peak_rss_bytes": result.peak_rss_bytes, "store_id": str(result.store_id),
               "base": result.base_snapshot, "skipped_bases": skipped_json(result.skipped),
               "replaced": None if result.replaced is None else result.replaced.as_dict(),
               "notes": list(result.notes),
               "state_digest": None if result.state_digest is None else result.state_digest.hex()}
    if args.json:
        print_json(summary)
        return 0
    for skipped in result.skipped:
        print(f"skipped base {skipped.snapshot} (LSN {skipped.lsn}): {skipped.reason}")
    if result.replaced is not None:
        print(f"replaced {result.replaced.describe()}")
    for note in result.notes:
        print(f"note: {note}")
    rate = result.commits_replayed / result.seconds if result.seconds > 0 else 0
    base = f"snapshot {result.base_snapshot}" if result.base_snapshot else "the start of the history"
    print(f"restored {target.describe()} into {result.dest}: LSN {result.target_lsn} "
          f"(commit at {format_time(result.target_ts_ns)}), {result.keys:,} keys, "
          f"{result.commits_replayed:,} commits replayed from LSN {result.base_lsn} ({base}) in "
          f"{result.seconds:.2f}s ({rate:,.0f}/s); new store id {result.store_id}")
    if result.state_digest is not None:
        print(f"state digest {result.state_digest.hex()} (the receipt: the built state matches its prediction)")
    return 0
