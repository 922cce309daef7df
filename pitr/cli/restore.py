"""pitr restore: build the state at a moment into a new store directory (or into etcd)."""

from __future__ import annotations

import argparse
import sys

from pitr.cli._checkpoints import add_restore_flag as add_witness_flag
from pitr.cli.common import add_json, add_repo, print_json, progress_for, repositories
from pitr.cli.moments import MOMENT_HELP, Moments, accept_relative_moments
from pitr.cli.render import show_plan, skipped_json
from pitr.errors import InvalidArgument
from pitr.restore import KeySelection, RestoreOptions, RestorePlan, RestoreTarget, restore
from pitr.restore.restore import absolute
from pitr.timefmt import format_time


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("restore", help="restore the state at a moment into a new store directory or etcd")
    accept_relative_moments(p)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", help=f"moment: {MOMENT_HELP} (2026-11-24T14:03:07Z, now-15m, @1234)")
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
    add_witness_flag(p)
    p.add_argument("--no-verify", action="store_true", help="skip checking the files before reading them")
    p.add_argument("--prefix", action="append", default=[], metavar="P",
                   help="restore only the keys starting with P (repeatable; with --key too)")
    p.add_argument("--key", action="append", default=[], metavar="K", help="restore only key K (repeatable)")
    p.add_argument("--strip-prefix", default="", metavar="S",
                   help="with --prefix/--key: remove S from the start of each restored key")
    p.add_argument("--add-prefix", default="", metavar="A",
                   help="with --prefix/--key: put A in front of each restored key (after --strip-prefix)")
    p.add_argument("--follow", action="store_true",
                   help="with --latest: keep DEST a read-only standby that applies every segment the "
                        "repository publishes (pitr get/export read it; pitr promote DEST makes it writable); "
                        "rerun to resume")
    p.add_argument("--interval", default=None, metavar="DURATION",
                   help="with --follow: how often to look for new segments (default: 100ms for a local "
                        "repository, 1s for S3)")
    p.add_argument("--catch-up", action="store_true",
                   help="with --follow: stop once the standby holds everything the repository holds")
    add_repo(p, many=True)
    add_json(p)
    p.set_defaults(run=run)


def _selection(args: argparse.Namespace) -> KeySelection | None:
    """The keys --prefix/--key select (None: all of them)."""
    if not args.prefix and not args.key:
        if args.strip_prefix or args.add_prefix:
            raise InvalidArgument("--strip-prefix and --add-prefix apply only with --prefix or --key")
        return None
    return KeySelection(prefixes=tuple(p.encode() for p in args.prefix), keys=tuple(k.encode() for k in args.key),
                        strip_prefix=args.strip_prefix.encode(), add_prefix=args.add_prefix.encode())


async def run(args: argparse.Namespace) -> int:
    if args.exclusive and args.to is None:
        raise InvalidArgument("--exclusive applies only to --to")
    if args.follow or args.interval is not None or args.catch_up:
        from pitr.cli._follow import run_follow

        return await run_follow(args)
    target = restore_target(args)
    selection = _selection(args)
    if args.dest.startswith(("etcd://", "etcds://")):
        from pitr.cli._etcd import run_restore

        return await run_restore(args, target, selection)
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
                             pause_gc=True, selection=selection,  # the command owns its process
                             witness=args.witness, witness_s3_endpoint=args.s3_endpoint)
    progress = progress_for(args)
    async with repositories(args) as repos:  # --witness: the library refuses a rolled-back repository first
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


def restore_target(args: argparse.Namespace) -> RestoreTarget:
    """The target the flags name; `--to @N` is LSN N itself (with --exclusive, the state before it: N - 1)."""
    to = Moments().optional(args.to, "--to")
    if to is not None and to.lsn is not None:
        if args.exclusive and to.lsn == 0:
            raise InvalidArgument("--to @0 --exclusive: there is no state before LSN 0")
        return RestoreTarget(lsn=to.lsn - 1 if args.exclusive else to.lsn)
    return RestoreTarget(time_ns=None if to is None else to.ts_ns, lsn=args.lsn, latest=args.latest,
                         exclusive=args.exclusive)
