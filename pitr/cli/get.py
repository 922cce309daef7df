"""pitr get KEY: the live value, or with --repo and --at the value at a past moment."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Coroutine

from pitr.cli.common import (
    add_data,
    add_json,
    add_repo,
    decode_arg,
    encode_bytes,
    need_data,
    print_json,
    repositories,
    show_bytes,
)
from pitr.cli.moments import MOMENT_HELP, accept_relative_moments
from pitr.errors import InvalidArgument
from pitr.timefmt import format_time


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("get", help="read a key now, or as of a moment with --repo and --at")
    accept_relative_moments(p)
    p.add_argument("key")
    p.add_argument("--at", help=f"moment to read at ({MOMENT_HELP}); needs --repo")
    p.add_argument("--exclusive", action="store_true", help="with --at: only commits strictly before it")
    p.add_argument("--b64", action="store_true", help="KEY is base64; the value is printed as base64")
    add_data(p)
    add_repo(p, required=False)
    add_json(p)
    p.set_defaults(run=run)


def _emit(args: argparse.Namespace, key: bytes, value: bytes | None, extra: dict[str, object]) -> int:
    if value is None:
        if args.json:
            print_json({"key": encode_bytes(key), "found": False, **extra})
        else:
            print(f"{show_bytes(key)}: not found", file=sys.stderr)
        return 1
    if args.json:
        print_json({"key": encode_bytes(key), "found": True, "value": encode_bytes(value), **extra})
    elif args.b64:
        import base64

        print(base64.b64encode(value).decode())
    else:
        sys.stdout.buffer.write(value + b"\n")
    return 0


def run(args: argparse.Namespace) -> int | Coroutine[object, object, int]:
    """The live value, read here without an event loop; with --at, the coroutine that reads the archive."""
    key = decode_arg(args.key, args.b64, "key")
    if args.at is not None:
        return _run_at(args, key)
    if args.exclusive:
        raise InvalidArgument("--exclusive needs --at")
    data = need_data(args)
    # read-only: never the writer lock, so a writer (pitr put, an application) is never refused or made to wait
    found = _read_live(data, key)
    extra: dict[str, object] = {}
    if found is not None and found[1] is not None:
        extra["expires_at"] = format_time(found[1])
    return _emit(args, key, None if found is None else found[0], extra)


def _read_live(data: str, key: bytes) -> tuple[bytes, int | None] | None:
    from pitr.datadir.reader import StoreReader  # LMDB: only when a key is read

    with StoreReader(data) as reader:
        return reader.get(key, time.time_ns())


async def _run_at(args: argparse.Namespace, key: bytes) -> int:
    from pitr.audit import value_at
    from pitr.cli._gaps import synced_holes
    from pitr.cli.moments import Moments, resolve_moment

    moment = Moments().parse(args.at, "--at")
    async with repositories(args) as repos:
        repo = repos[0]
        holes = await synced_holes(repo)
        at = await resolve_moment(repo, moment, "--at", exclusive=args.exclusive)
        change = await value_at(repo, key, at.ts_ns, exclusive=args.exclusive, holes=holes)
    # the moment printed back as RFC 3339 with the last LSN it includes
    extra: dict[str, object] = {**at.as_json("at"), "as_of": at.describe()}
    if change is not None and change.snapshot is not None:
        # the log before the base is gone: the value comes from the snapshot, as of its LSN and time
        extra.update({"from_snapshot": change.snapshot, "as_of_lsn": change.lsn, "as_of": format_time(change.ts_ns)})
    elif change is not None:
        extra.update({"lsn": change.lsn, "changed_at": format_time(change.ts_ns)})
        if change.expires_at_ns is not None:
            extra["expires_at"] = format_time(change.expires_at_ns)
    value = None if change is None else change.value
    return _emit(args, key, value, extra)
