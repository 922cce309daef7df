"""pitr delete KEY: one durable commit removing the key."""

from __future__ import annotations

import argparse

from pitr.cli.common import add_data, add_json, add_wait, decode_arg, need_data, print_json, writer_wait
from pitr.timefmt import format_time


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("delete", help="remove a key (one durable commit)")
    p.add_argument("key")
    p.add_argument("--b64", action="store_true", help="KEY is base64")
    add_data(p)
    add_wait(p)
    add_json(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    from pitr.store import (  # the event loop's libraries and LMDB: only when the command runs
        Store,
        StoreOptions,
    )

    key = decode_arg(args.key, args.b64, "key")
    async with Store(need_data(args), StoreOptions(lock_wait=await writer_wait(args))) as store:
        existed = await store.get(key) is not None
        commit = await store.delete(key)
    if args.json:
        print_json({"lsn": commit.lsn, "ts_ns": commit.ts_ns, "ts": format_time(commit.ts_ns),
                    "existed": existed})
    else:
        print(f"committed LSN {commit.lsn} at {format_time(commit.ts_ns)}"
              + ("" if existed else " (the key was absent)"))
    return 0
