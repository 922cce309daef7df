"""pitr repair: replace a repository's damaged or missing files with verified copies from a healthy one."""

from __future__ import annotations

import argparse
import os

from pitr.cli._object_lock import add_object_lock, check_object_lock, object_lock_of
from pitr.cli.common import (
    Progress,
    add_json,
    add_limits,
    print_json,
    print_windows,
    transfer_limits,
    window_json,
)
from pitr.errors import InvalidArgument
from pitr.repo.repository import open_repository
from pitr.transfer import RepairReport, refuse_same_repository, repair_repository

HELP = "replace a repository's damaged or missing files with verified copies from a healthy copy"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("repair", help=HELP)
    p.add_argument("repo", nargs="?", default=os.environ.get("PITR_REPO"), metavar="REPO",
                   help="the repository to repair (default: $PITR_REPO)")
    p.add_argument("--from", dest="healthy", required=True, metavar="URL",
                   help="a healthy repository of the same history")
    p.add_argument("--s3-endpoint", default=os.environ.get("PITR_S3_ENDPOINT"),
                   help="endpoint URL of an S3-compatible server (both repositories)")
    p.add_argument("--cache-dir", default=os.environ.get("PITR_CACHE_DIR"),
                   help="local cache for a remote repository's catalog and downloads")
    p.add_argument("--key-file", default=os.environ.get("PITR_KEY_FILE") or None,
                   help="key file of an encrypted repository (both: copies of one history share it; "
                        "default: $PITR_KEY_FILE)")
    add_object_lock(p)  # the copies a repair publishes are retained like the rest of a locked bucket
    add_limits(p)
    add_json(p)
    p.set_defaults(run=run)


def report_json(r: RepairReport) -> dict[str, object]:
    return {"repository": r.repository, "from": r.healthy, "ok": r.ok,
            "found": [f.as_dict() for f in r.found],
            "holes_found": [{"first_lsn": h.first_lsn, "last_lsn": h.last_lsn, "reason": h.reason}
                            for h in r.holes_found],
            "replaced": r.replaced, "filled": r.filled,
            "published": [{"for": n, "file": new} for n, new in r.published],
            "unrepaired": [{"file": n, "reason": why} for n, why in r.unrepaired], "kept": r.kept,
            "keys_copied": r.keys_copied,
            "still_damaged": r.still_damaged, "windows": [window_json(w) for w in r.windows],
            "holes": [{"first_lsn": h.first_lsn, "last_lsn": h.last_lsn, "reason": h.reason} for h in r.holes],
            "seconds": round(r.seconds, 3)}


def print_report(r: RepairReport) -> None:
    nothing = not r.found and not r.holes_found
    state = "nothing to repair" if nothing and r.ok else "repaired" if r.ok else "NOT REPAIRED"
    print(f"{r.repository}: {state} from {r.healthy}: {len(r.replaced)} file(s) replaced, "
          f"{len(r.filled)} published into holes, in {r.seconds:.2f}s")
    for name, new in r.published:
        if name in r.replaced:
            print(f"  replaced {name} by {new} (the damaged file stays, read by no one; pitr cleanup deletes it)")
    for name in r.filled:
        print(f"  filled   {name}")
    for name in r.kept:
        print(f"  kept     {name} (the same bytes as the healthy copy)")
    for name in r.keys_copied:
        print(f"  key wrap {name} published (the key it is wrapped under opens this repository too)")
    for what, why in r.unrepaired:
        print(f"  NOT REPAIRED {what}: {why}")
    for name in r.still_damaged:
        print(f"  STILL DAMAGED {name}")
    for h in r.holes:
        print(f"  HOLE LSN {h.first_lsn}..{h.last_lsn}: {h.reason}")
    print_windows(r.windows)


async def run(args: argparse.Namespace) -> int:
    if not args.repo:
        raise InvalidArgument("no repository to repair: pass REPO or set PITR_REPO")
    refuse_same_repository(args.repo, args.healthy, s3_endpoint=args.s3_endpoint)
    limits = transfer_limits(args)
    progress = Progress()
    lock = object_lock_of(args)  # --object-lock-days
    async with open_repository(args.healthy, cache_dir=args.cache_dir, s3_endpoint=args.s3_endpoint,
                               limits=limits) as healthy, \
            open_repository(args.repo, cache_dir=args.cache_dir, s3_endpoint=args.s3_endpoint,
                            limits=limits, object_lock=lock) as repo:
        check_object_lock([repo], lock)
        if args.key_file:
            from pitr.repo.keyring import unlock_existing  # cryptography: only for a key

            await unlock_existing([healthy, repo], args.key_file)
        report = await repair_repository(repo, healthy, progress=progress)
    progress.done()
    if args.json:
        print_json(report_json(report))
    else:
        print_report(report)
    return 0 if report.ok else 1
