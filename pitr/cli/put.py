"""pitr put KEY VALUE [--ttl S]: one durable commit; VALUE `-` reads the value from standard input."""

from __future__ import annotations

import argparse
import sys
from typing import BinaryIO

from pitr.cli.common import add_data, add_json, add_wait, decode_arg, need_data, print_json
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


def run(args: argparse.Namespace) -> int:
    """One commit with no event loop (`pitr.store.oneshot`): what start-up costs is the command."""
    from pitr.datadir.keys import check_put, ttl_ns
    from pitr.store.oneshot import commit_once  # LMDB and the WAL: only when the command runs
    from pitr.store.options import StoreOptions
    from pitr.timefmt import parse_duration
    from segments.record import PUT, Op

    key = decode_arg(args.key, args.b64, "key")
    # read before the store is opened: the lock is not held while stdin is slow
    value = read_value(sys.stdin.buffer) if args.value == STDIN_VALUE else decode_arg(args.value, args.b64, "value")
    check_put(key, value)
    ttls = None if args.ttl is None else {0: ttl_ns(args.ttl, key)}
    # the writer lock is waited for in this thread: Ctrl-C ends the wait at once
    options = StoreOptions(lock_wait=parse_duration(args.wait, what="--wait") / 1e9)
    lsn, ts = commit_once(need_data(args), (Op(PUT, key, value, None),), options, ttls=ttls)
    if args.json:
        print_json({"lsn": lsn, "ts_ns": ts, "ts": format_time(ts), "value_bytes": len(value)})
    else:
        print(f"committed LSN {lsn} at {format_time(ts)}")
    return 0
