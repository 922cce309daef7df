"""pitr copy: copy a repository's history (or a window of it) into another, verifying every file first."""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from pitr.cli._object_lock import add_object_lock, check_object_lock, object_lock_of
from pitr.cli.common import (
    Progress,
    add_json,
    add_limits,
    human_bytes,
    print_json,
    print_windows,
    transfer_limits,
    window_json,
)
from pitr.repo.repository import Repository, open_repository
from pitr.timefmt import parse_time
from pitr.transfer import CopyOptions, CopyReport, copy_history, refuse_same_repository

HELP = "copy a repository's history (or a window of it) into another, verifying every file"


def add_endpoints(p: argparse.ArgumentParser) -> None:
    """The flags a command opening two repositories by URL shares with `pitr copy` (endpoint, cache)."""
    p.add_argument("--s3-endpoint", default=os.environ.get("PITR_S3_ENDPOINT"),
                   help="endpoint URL of an S3-compatible server (both repositories)")
    p.add_argument("--cache-dir", default=os.environ.get("PITR_CACHE_DIR"),
                   help="local cache for a remote repository's catalog and downloads")
    add_limits(p)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("copy", help=HELP)
    p.add_argument("--from", dest="source", required=True, metavar="URL", help="the repository to copy")
    p.add_argument("--to", dest="target", required=True, metavar="URL",
                   help="the repository to copy into: new and empty, or holding part of the same history")
    since = p.add_mutually_exclusive_group()
    since.add_argument("--since", metavar="TIME", help="the earliest moment the copy must restore (RFC 3339)")
    since.add_argument("--since-lsn", type=int, metavar="LSN", help="the earliest LSN the copy must restore")
    until = p.add_mutually_exclusive_group()
    until.add_argument("--until", metavar="TIME", help="the latest moment the copy must restore (RFC 3339)")
    until.add_argument("--until-lsn", type=int, metavar="LSN", help="the latest LSN the copy must restore")
    add_endpoints(p)
    add_object_lock(p)
    p.add_argument("--key-file", default=os.environ.get("PITR_KEY_FILE") or None,
                   help="key file of an encrypted repository (both: a copy has the same key; default: $PITR_KEY_FILE)")
    add_json(p)
    p.set_defaults(run=run)


@asynccontextmanager
async def two_repositories(args: argparse.Namespace, source: str, target: str, *,
                           create_target: bool) -> AsyncIterator[tuple[Repository, Repository]]:
    """Open both repositories (sharing one pair of bandwidth caps); refuse one place given twice."""
    refuse_same_repository(source, target, s3_endpoint=args.s3_endpoint)
    limits = transfer_limits(args)
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(open_repository(
            source, cache_dir=args.cache_dir, s3_endpoint=args.s3_endpoint, limits=limits))
        lock = object_lock_of(args)  # --object-lock-days: the copy's objects are retained at the target
        b = await stack.enter_async_context(open_repository(
            target, cache_dir=args.cache_dir, s3_endpoint=args.s3_endpoint, create=create_target, limits=limits,
            object_lock=lock))
        check_object_lock([b], lock)
        if getattr(args, "key_file", None):
            from pitr.repo.keyring import unlock_existing  # cryptography: only for a key

            await unlock_existing([a, b], args.key_file)
        yield a, b



def report_json(r: CopyReport) -> dict[str, object]:
    return {"from": r.source, "to": r.target, "ok": r.ok, "copied": r.copied, "present": r.present,
            "differing": r.differing, "damaged": [{"file": n, "reason": why} for n, why in r.damaged],
            "source_holes": [{"first_lsn": h.first_lsn, "last_lsn": h.last_lsn, "reason": h.reason}
                             for h in r.source_holes],
            "bytes_copied": r.bytes_copied, "watermark": r.watermark,
            "windows": [window_json(w) for w in r.windows],
            "holes": [{"first_lsn": h.first_lsn, "last_lsn": h.last_lsn, "reason": h.reason} for h in r.holes],
            "seconds": round(r.seconds, 3)}


def print_report(r: CopyReport) -> None:
    print(f"{r.source} -> {r.target}: {'OK' if r.ok else 'NOT COMPLETE'}: copied {len(r.copied)} files "
          f"({human_bytes(r.bytes_copied)}), {len(r.present)} already there (verified the same), "
          f"in {r.seconds:.2f}s")
    for name in r.differing:
        print(f"  DIFFERS  {name}: the target's file is not the source's verified copy; left as it is "
              "(run pitr verify on the target)")
    for name, why in r.damaged:
        print(f"  DAMAGED  {name} at the source, not copied: {why}")
    for h in r.source_holes:
        print(f"  HOLE     LSN {h.first_lsn}..{h.last_lsn} at the source: {h.reason}")
    for h in r.holes:
        print(f"  target hole LSN {h.first_lsn}..{h.last_lsn}: {h.reason}")
    print_windows(r.windows, " at the target")
    if r.damaged or r.source_holes:
        print(f"  hint: repair the source from another copy (pitr repair --from OTHER {r.source}), then copy again")


async def run(args: argparse.Namespace) -> int:
    options = CopyOptions(
        since_lsn=args.since_lsn, until_lsn=args.until_lsn,
        since_ns=parse_time(args.since, what="--since") if args.since else None,
        until_ns=parse_time(args.until, what="--until") if args.until else None)
    progress = Progress()
    async with two_repositories(args, args.source, args.target, create_target=True) as (source, target):
        report = await copy_history(source, target, options, progress=progress)
    progress.done()
    if args.json:
        print_json(report_json(report))
    else:
        print_report(report)
    return 0 if report.ok else 1
