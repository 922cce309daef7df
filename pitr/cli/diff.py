"""pitr diff T1 T2: keys added, removed and changed between two moments."""

from __future__ import annotations

import argparse

from pitr.audit import diff
from pitr.cli._gaps import synced_holes
from pitr.cli.common import add_json, add_repo, encode_bytes, print_json, repositories, show_bytes
from pitr.jsontypes import JSONObject
from pitr.timefmt import parse_time


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("diff", help="keys added, removed and changed between two moments")
    p.add_argument("t1", help="first moment (RFC 3339 with offset, or Unix seconds)")
    p.add_argument("t2", help="second moment")
    p.add_argument("--prefix", help="only keys starting with this text")
    add_repo(p)
    add_json(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    t1 = parse_time(args.t1, what="T1")
    t2 = parse_time(args.t2, what="T2")
    prefix = args.prefix.encode() if args.prefix is not None else None
    count = 0
    async with repositories(args) as repos:
        repo = repos[0]
        holes = await synced_holes(repo)
        async for d in diff(repo, t1, t2, prefix=prefix, holes=holes):
            count += 1
            before = d.before.value if d.before is not None else None
            after = d.after.value if d.after is not None else None
            if args.json:
                row: JSONObject = {"key": encode_bytes(d.key), "change": d.kind,
                                       "before": None if before is None else encode_bytes(before),
                                       "after": None if after is None else encode_bytes(after)}
                print_json(row)
            else:
                sign = {"added": "+", "removed": "-", "changed": "~"}[d.kind]
                text = {"added": f"{show_bytes(after or b'')}",
                        "removed": f"was {show_bytes(before or b'')}",
                        "changed": f"{show_bytes(before or b'')} -> {show_bytes(after or b'')}"}[d.kind]
                print(f"{sign} {show_bytes(d.key)}  {text}")
    if not args.json:
        print(f"{count} keys differ")
    return 0
