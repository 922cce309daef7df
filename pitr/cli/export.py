"""pitr export: the current state as JSON lines sorted by key."""

from __future__ import annotations

import argparse
import json
import sys

from pitr.cli.common import add_data, encode_bytes, need_data
from pitr.store import Store
from pitr.timefmt import format_time


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("export", help="print the current state as JSON lines sorted by key")
    p.add_argument("--prefix", default="", help="only keys starting with this text")
    add_data(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    async with Store(need_data(args), create=False) as store:
        await store.flush()
        now = store.now()
        out = sys.stdout
        for key, value, expires in store.state.iter_range(args.prefix.encode(), None):
            if not key.startswith(args.prefix.encode()):
                break
            if expires is not None and expires <= now:
                continue
            line: dict[str, object] = {"op": "put", "key": encode_bytes(bytes(key)),
                                       "value": encode_bytes(bytes(value))}
            if expires is not None:
                line["expires_at"] = format_time(expires)
            out.write(json.dumps(line) + "\n")
    return 0
