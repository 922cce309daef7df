"""pitr import FILE: JSON lines into commits, checked whole before anything is committed.

Each line is one commit: ``{"op": "put"|"delete", "key": K, "value": V, "ts": T,
"ttl": S | "expires_at": T}`` or ``{"batch": [op, ...], "ts": T}``. K and V
are strings or ``{"b64": "..."}``; T is RFC 3339 with an offset or integer ns.
The whole file is validated first: a bad line is reported with its number and
nothing is imported. A commit time more than ``--max-clock-skew`` seconds
(default 300) ahead of the clock is refused like any bad line, so one wrong
time cannot date every later commit in the future. If the import stops midway
anyway (a full disk, Ctrl-C), it says which line and LSN were the last ones
committed, so the rest can be imported from the next line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator

from pitr.cli.common import add_data, add_json, decode_json_bytes, need_data, print_json
from pitr.datadir.keys import check_key, check_value
from pitr.errors import InvalidArgument, file_error
from pitr.jsontypes import JSONObject
from pitr.store import Store, StoreOptions
from pitr.store.options import MAX_CLOCK_SKEW
from pitr.timefmt import format_time, parse_time
from segments.record import DELETE, PUT, Op

MAX_LINE = 256 << 20


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("import", help="commit JSON lines (one commit per line or per batch)")
    p.add_argument("file", help="JSON lines file, or - for standard input")
    p.add_argument("--max-clock-skew", type=_skew, default=MAX_CLOCK_SKEW, metavar="SECONDS",
                   help=f"refuse a \"ts\" more than this far ahead of the clock (default {MAX_CLOCK_SKEW:g}; "
                        "inf trusts the file's clock)")
    add_data(p)
    add_json(p)
    p.set_defaults(run=run)


def _skew(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more seconds (or inf), not {text!r}")
    return value


def _time(value: object, where: str) -> int:
    if isinstance(value, bool):
        raise InvalidArgument(f"{where}: time must be RFC 3339 text or integer nanoseconds")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return parse_time(value, what=where)
    raise InvalidArgument(f"{where}: time must be RFC 3339 text or integer nanoseconds")


def _op(obj: object, where: str, ts: int | None) -> tuple[Op, float | None]:
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{where}: an operation must be a JSON object")
    kind = obj.get("op")
    key = check_key(decode_json_bytes(obj.get("key"), f"{where}: key"))
    if kind == "delete":
        return Op(DELETE, key), None
    if kind != "put":
        found = "missing" if kind is None else json.dumps(kind)[:40]
        raise InvalidArgument(f"{where}: \"op\" must be \"put\" or \"delete\", not {found} "
                              '(a line is {"op": "put", "key": ..., "value": ...} or {"op": "delete", "key": ...})')
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
    try:
        fh = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise file_error(exc, path, "read the import file") from exc
    try:
        for number, line in enumerate(fh, 1):
            if len(line) > MAX_LINE:
                raise InvalidArgument(f"line {number}: longer than {MAX_LINE} bytes")
            if line.strip():
                yield number, line
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{path}: not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise file_error(exc, path, "read the import file") from exc
    finally:
        if fh is not sys.stdin:
            fh.close()


async def run(args: argparse.Namespace) -> int:
    if args.file == "-":
        lines = list(_lines("-"))
    else:
        lines = None
        next(_lines(args.file), None)  # an unreadable file is refused before the store is created
    progress = _Progress()
    skew_ns = math.inf if math.isinf(args.max_clock_skew) else int(args.max_clock_skew * 1e9)
    async with Store(need_data(args), StoreOptions(max_clock_skew=args.max_clock_skew)) as store:
        last_ts: int | None = store.last_ts
        for number, line in lines if lines is not None else _lines(args.file):
            _ops, ts = parse_line(line, number)
            if ts is None:
                last_ts = max(last_ts or 0, store.now())
            elif last_ts is not None and ts <= last_ts:
                raise InvalidArgument(f"line {number}: ts {ts} is not after the previous commit's time "
                                      f"{last_ts}; commit times must increase (nothing was imported)")
            elif ts - store.now() > skew_ns:
                raise InvalidArgument(f"line {number}: ts {format_time(ts)} is more than "
                                      f"{args.max_clock_skew:g} s ahead of the clock ({format_time(store.now())}); "
                                      f"pass --max-clock-skew to trust it (nothing was imported)")
            else:
                last_ts = ts
        try:
            for number, line in lines if lines is not None else _lines(args.file):
                pairs, ts = parse_line(line, number)
                ops = []
                for op, ttl in pairs:
                    if ttl is not None:
                        op = Op(PUT, op.key, op.value, store.now() + int(ttl * 1e9))
                    ops.append(op)
                progress.line = number
                commit = await store.commit(ops, ts_ns=ts)
                progress.committed(number, commit.lsn)
        except BaseException:
            progress.report(args.json)
            raise
    summary = progress.summary()
    if args.json:
        print_json(summary)
    else:
        first, last = summary["first_lsn"], summary["last_lsn"]
        print(f"imported {summary['commits']} commits" + (f" (LSN {first}..{last})" if first else ""))
    return 0


class _Progress:
    """How far an import got: what a user needs to resume one that stopped midway."""

    def __init__(self) -> None:
        self.commits = 0
        self.first_lsn: int | None = None
        self.last_lsn: int | None = None
        self.last_line: int | None = None
        self.line: int | None = None  # the line being committed

    def committed(self, line: int, lsn: int) -> None:
        self.commits += 1
        self.first_lsn = self.first_lsn or lsn
        self.last_lsn, self.last_line = lsn, line
        self.line = None

    def summary(self) -> JSONObject:
        return {"commits": self.commits, "first_lsn": self.first_lsn, "last_lsn": self.last_lsn}

    def report(self, as_json: bool) -> None:
        """Say, on standard error, what got in before the import stopped (and on stdout with --json)."""
        if self.last_line is None:
            done = "no line was committed"
        else:
            done = (f"lines up to {self.last_line} are committed ({self.commits} commits, LSN "
                    f"{self.first_lsn}..{self.last_lsn})")
        pending = "" if self.line is None else (
            f"; line {self.line} was not acknowledged (it may or may not be in the store: check it "
            f"with `pitr get` before importing again from line {self.line})")
        print(f"pitr import: stopped: {done}{pending}", file=sys.stderr)
        if as_json:
            print_json({**self.summary(), "complete": False, "last_line": self.last_line,
                        "unacknowledged_line": self.line})
