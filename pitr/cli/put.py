"""pitr put KEY VALUE [--ttl S]: one durable commit; VALUE `-` reads the value from standard input."""

from __future__ import annotations

import argparse
import sys
from typing import BinaryIO

from pitr.cli.common import add_data, add_json, add_wait, decode_arg, need_data, print_json, writer_wait
from pitr.errors import InvalidArgument
from pitr.timefmt import format_time
from segments.record import MAX_VALUE

STDIN_VALUE = "-"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("put", help="set a key (one durable commit)")
    p.add_argument("key")
    p.add_argument("value", help="the value; - reads it from standard input, every byte as it is")
    p.add_argument("--ttl", type=float, help="expire the key this many seconds after the commit")
    p.add_argument("--b64", action="store_true",
                   help="KEY and VALUE are base64 (binary data); a value read from standard input is never decoded")
    add_data(p)
    add_wait(p)
    add_json(p)
    p.set_defaults(run=run)


def read_value(stream: BinaryIO) -> bytes:
    """Every byte of `stream` up to EOF, newlines included; refused past MAX_VALUE (the limit of one
    value) without reading on."""
    limit = MAX_VALUE
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise InvalidArgument(f"the value on standard input is larger than {limit:,} bytes, the limit for one "
                              "value; store large data elsewhere and put a reference to it")
    return data


async def run(args: argparse.Namespace) -> int:
    import anyio

    from pitr.store import (  # the event loop's libraries and LMDB: only when the command runs
        Store,
        StoreOptions,
    )

    key = decode_arg(args.key, args.b64, "key")
    if args.value == STDIN_VALUE:  # read before the store is opened: the lock is not held while stdin is slow
        value = await anyio.to_thread.run_sync(read_value, sys.stdin.buffer)
    else:
        value = decode_arg(args.value, args.b64, "value")
    async with Store(need_data(args), StoreOptions(lock_wait=await writer_wait(args))) as store:
        commit = await store.put(key, value, ttl=args.ttl)
    if args.json:
        print_json({"lsn": commit.lsn, "ts_ns": commit.ts_ns, "ts": format_time(commit.ts_ns),
                    "value_bytes": len(value)})
    else:
        print(f"committed LSN {commit.lsn} at {format_time(commit.ts_ns)}")
    return 0
