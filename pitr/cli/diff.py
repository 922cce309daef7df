"""pitr diff T1 T2: keys added, removed and changed between two moments."""

from __future__ import annotations

import argparse

from pitr.audit import diff
from pitr.cli._gaps import synced_holes
from pitr.cli.common import add_json, add_repo, encode_bytes, print_json, repositories, show_bytes
from pitr.cli.moments import MOMENT_HELP, Moments, accept_relative_moments, resolve_moment
from pitr.jsontypes import JSONObject


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("diff", help="keys added, removed and changed between two moments")
    accept_relative_moments(p)
    p.add_argument("t1", help=f"first moment ({MOMENT_HELP})")
    p.add_argument("t2", help="second moment")
    p.add_argument("--prefix", help="only keys starting with this text")
    add_repo(p)
    add_json(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    moments = Moments()
    m1, m2 = moments.parse(args.t1, "T1"), moments.parse(args.t2, "T2")
    prefix = args.prefix.encode() if args.prefix is not None else None
    count = 0
    async with repositories(args) as repos:
        repo = repos[0]
        holes = await synced_holes(repo)
        t1, t2 = await resolve_moment(repo, m1, "T1"), await resolve_moment(repo, m2, "T2")
        async for d in diff(repo, t1.ts_ns, t2.ts_ns, prefix=prefix, holes=holes):
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
        print(f"{count} keys differ between {t1.describe()} and {t2.describe()}")
    return 0
