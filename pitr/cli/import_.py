"""pitr import FILE: JSON lines into commits, checked whole before anything is committed.

Each line is one commit: ``{"op": "put"|"delete", "key": K, "value": V, "ts": T,
"ttl": S | "expires_at": T}`` or ``{"batch": [op, ...], "ts": T}``. K and V
are strings or ``{"b64": "..."}``; T is RFC 3339 with an offset or integer ns.
The whole file is validated first: a bad line is reported with its number and
nothing is imported, so an import is never left half done.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

from pitr.cli.common import add_data, add_json, decode_json_bytes, need_data, print_json
from pitr.errors import InvalidArgument
from pitr.store import Store
from pitr.store._checks import check_key, check_value
from pitr.timefmt import parse_time
from segments.record import DELETE, PUT, Op

MAX_LINE = 256 << 20


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("import", help="commit JSON lines (one commit per line or per batch)")
    p.add_argument("file", help="JSON lines file, or - for standard input")
    add_data(p)
    add_json(p)
    p.set_defaults(run=run)


def _time(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise InvalidArgument(f"{where}: time must be RFC 3339 text or integer nanoseconds")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return parse_time(value, what=where)
    raise InvalidArgument(f"{where}: time must be RFC 3339 text or integer nanoseconds")


def _op(obj: Any, where: str, ts: int | None) -> tuple[Op, float | None]:
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{where}: an operation must be a JSON object")
    kind = obj.get("op")
    key = check_key(decode_json_bytes(obj.get("key"), f"{where}: key"))
    if kind == "delete":
        return Op(DELETE, key), None
    if kind != "put":
        raise InvalidArgument(f"{where}: op must be \"put\" or \"delete\", not {kind!r}")
    value = check_value(decode_json_bytes(obj.get("value"), f"{where}: value"), key)
    expires = None
    ttl = obj.get("ttl")
    if "expires_at" in obj:
        expires = _time(obj["expires_at"], f"{where}: expires_at")
    elif ttl is not None:
        if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or ttl <= 0:
            raise InvalidArgument(f"{where}: ttl must be positive seconds")
        if ts is not None:
            expires = ts + int(ttl * 1e9)
    return Op(PUT, key, value, expires), (ttl if expires is None else None)


def parse_line(text: str, number: int) -> tuple[list[tuple[Op, float | None]], int | None]:
    where = f"line {number}"
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"{where}: not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{where}: must be a JSON object")
    ts = _time(obj["ts"], f"{where}: ts") if obj.get("ts") is not None else None
    if "batch" in obj:
        ops = obj["batch"]
        if not isinstance(ops, list) or not ops:
            raise InvalidArgument(f"{where}: batch must be a non-empty list of operations")
        return [_op(o, f"{where}, batch item {i + 1}", ts) for i, o in enumerate(ops)], ts
    return [_op(obj, where, ts)], ts


def _lines(path: str) -> Iterator[tuple[int, str]]:
    fh = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    try:
        for number, line in enumerate(fh, 1):
            if len(line) > MAX_LINE:
                raise InvalidArgument(f"line {number}: longer than {MAX_LINE} bytes")
            if line.strip():
                yield number, line
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{path}: not UTF-8 text: {exc}") from exc
    finally:
        if fh is not sys.stdin:
            fh.close()


async def run(args: argparse.Namespace) -> int:
    if args.file == "-":
        lines = list(_lines("-"))
    else:
        lines = None
    commits = 0
    first = last = None
    async with Store(need_data(args)) as store:
        last_ts: int | None = store.last_ts
        for number, line in lines if lines is not None else _lines(args.file):
            _ops, ts = parse_line(line, number)
            if ts is None:
                last_ts = max(last_ts or 0, store.now())
            elif last_ts is not None and ts <= last_ts:
                raise InvalidArgument(f"line {number}: ts {ts} is not after the previous commit's time "
                                      f"{last_ts}; commit times must increase (nothing was imported)")
            else:
                last_ts = ts
        for number, line in lines if lines is not None else _lines(args.file):
            pairs, ts = parse_line(line, number)
            ops = []
            for op, ttl in pairs:
                if ttl is not None:
                    op = Op(PUT, op.key, op.value, store.now() + int(ttl * 1e9))
                ops.append(op)
            try:
                commit = await store.commit(ops, ts_ns=ts)
            except InvalidArgument as exc:
                raise InvalidArgument(f"line {number}: {exc} (lines before it were imported)") from exc
            commits += 1
            first = first or commit
            last = commit
    summary = {"commits": commits, "first_lsn": first.lsn if first else None,
               "last_lsn": last.lsn if last else None}
    if args.json:
        print_json(summary)
    else:
        print(f"imported {commits} commits" + (f" (LSN {first.lsn}..{last.lsn})" if first and last else ""))
    return 0
