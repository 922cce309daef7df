"""pitr export: the current state as JSON lines sorted by key.

Its output is JSON lines with or without `--json` (a stream: one line per key,
the lines `pitr import` reads); the flag is taken so that every command takes
it, and it makes a failure a JSON object on standard error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import anyio

from pitr.cli.common import add_data, add_json, encode_bytes, need_data
from pitr.datadir.reader import StoreReader
from pitr.timefmt import format_time


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("export", help="print the current state as JSON lines sorted by key")
    p.add_argument("--prefix", default="", help="only keys starting with this text")
    add_data(p)
    add_json(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    data = need_data(args)
    await anyio.to_thread.run_sync(_export, data, args.prefix.encode())
    return 0


def _export(data: str, prefix: bytes) -> None:
    """Write the live state from one consistent view, read-only: the writer is never locked out."""
    out = sys.stdout
    with StoreReader(data) as reader:
        for key, value, expires in reader.scan(prefix, time.time_ns()):
            line: dict[str, object] = {"op": "put", "key": encode_bytes(key), "value": encode_bytes(value)}
            if expires is not None:
                line["expires_at"] = format_time(expires)
            out.write(json.dumps(line) + "\n")
