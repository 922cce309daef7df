"""pitr history KEY: every archived change to a key, oldest first, streamed."""

from __future__ import annotations

import argparse
import hashlib
import sys

from pitr.audit import KeyChange, history_entries
from pitr.audit.floor import retention_floor
from pitr.cli._gaps import add_allow_gaps, print_gap, summarize_gaps, synced_holes
from pitr.cli.common import add_json, add_repo, decode_arg, encode_bytes, print_json, repositories, show_bytes
from pitr.cli.moments import MOMENT_HELP, Moments, accept_relative_moments, resolve_moment
from pitr.errors import Gap
from pitr.jsontypes import JSONObject
from pitr.timefmt import format_time


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("history", help="every archived change to a key")
    accept_relative_moments(p)
    p.add_argument("key")
    p.add_argument("--since", help=f"from this moment ({MOMENT_HELP})")
    p.add_argument("--until", help="up to this moment, inclusive")
    p.add_argument("--values", action="store_true", help="print values (default: size and digest)")
    p.add_argument("--b64", action="store_true", help="KEY is base64")
    add_allow_gaps(p)
    add_repo(p)
    add_json(p)
    p.set_defaults(run=run)


def change_json(change: KeyChange, values: bool) -> JSONObject:
    row: JSONObject = {"lsn": change.lsn, "ts": format_time(change.ts_ns), "ts_ns": change.ts_ns,
                       "op": change.op}
    if change.value is not None:
        row["size"] = len(change.value)
        row["blake2b"] = hashlib.blake2b(change.value, digest_size=16).hexdigest()
        if values:
            row["value"] = encode_bytes(change.value)
    if change.expires_at_ns is not None:
        row["expires_at"] = format_time(change.expires_at_ns)
    if change.snapshot is not None:
        row["snapshot"] = change.snapshot  # the value held at that LSN, from the snapshot where the log begins
    return row


async def run(args: argparse.Namespace) -> int:
    key = decode_arg(args.key, args.b64, "key")
    moments = Moments()
    since_moment, until_moment = moments.optional(args.since, "--since"), moments.optional(args.until, "--until")
    count = 0
    gaps: list[Gap] = []
    async with repositories(args) as repos:
        repo = repos[0]
        holes = await synced_holes(repo)
        since = None if since_moment is None else (await resolve_moment(repo, since_moment, "--since")).ts_ns
        until = None if until_moment is None else (await resolve_moment(repo, until_moment, "--until")).ts_ns
        floor = retention_floor(repo.catalog, await repo.require_identity()) if since is None else None
        if floor is not None:  # (an explicit --since before the floor is refused by history_entries)
            print(f"pitr history: {floor.describe()}", file=sys.stderr)
        async for change in history_entries(repo, key, since_ns=since, until_ns=until, holes=holes,
                                            allow_gaps=args.allow_gaps):
            if isinstance(change, Gap):
                gaps.append(change)
                print_gap(change, holes, args.json)
                continue
            count += 1
            row = change_json(change, args.values)
            if args.json:
                print_json(row)
            else:
                what = "" if change.value is None else (
                    show_bytes(change.value) if args.values else f"{row['size']} bytes {str(row['blake2b'])[:12]}")
                ttl = f"  expires {row['expires_at']}" if "expires_at" in row else ""
                held = f"  (held at the snapshot {change.snapshot})" if change.snapshot is not None else ""
                print(f"LSN {change.lsn:>10}  {row['ts']}  {change.op:<6} {what}{ttl}{held}", flush=True)
    summarize_gaps("history", gaps, holes)
    if count == 0 and not args.json:
        print(f"no changes to {show_bytes(key)} in the archive" + (" outside its holes" if gaps else ""))
    return 0 if count else 1
