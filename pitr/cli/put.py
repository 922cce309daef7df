"""pitr put KEY VALUE [--ttl S]: one durable commit."""

from __future__ import annotations

import argparse

from pitr.cli.common import add_data, add_json, decode_arg, need_data, print_json
from pitr.timefmt import format_time


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("put", help="set a key (one durable commit)")
    p.add_argument("key")
    p.add_argument("value")
    p.add_argument("--ttl", type=float, help="expire the key this many seconds after the commit")
    p.add_argument("--b64", action="store_true", help="KEY and VALUE are base64 (binary data)")
    add_data(p)
    add_json(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    from pitr.store import Store  # the event loop's libraries and LMDB: only when the command runs

    key = decode_arg(args.key, args.b64, "key")
    value = decode_arg(args.value, args.b64, "value")
    async with Store(need_data(args)) as store:
        commit = await store.put(key, value, ttl=args.ttl)
    if args.json:
        print_json({"lsn": commit.lsn, "ts_ns": commit.ts_ns, "ts": format_time(commit.ts_ns)})
    else:
        print(f"committed LSN {commit.lsn} at {format_time(commit.ts_ns)}")
    return 0
