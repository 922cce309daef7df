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

How (docs/decisions.md, "Speed: import"): one streaming pass parses and checks
every line and writes what it parsed, in runs of up to `RUN_LINES` lines, to a
nameless private spool file in the data directory (standard input included:
nothing is held in memory but one run). Only then does a second pass read the
runs back and hand each to the store's bulk path (`Store.queue_commits`): each
line is still its own commit, record and LSN, but a run is one WAL write and
shares one fsync; the next run is encoded while the previous one is fsynced.
A run is acknowledged, and reported with `--progress`, only once durable.
"""

from __future__ import annotations

import argparse
import gc
import json
import marshal
import math
import struct
import sys
import tempfile
from collections import deque
from collections.abc import Iterator
from typing import IO, Any

from pitr.cli.common import (
    add_data,
    add_json,
    add_wait,
    decode_json_bytes,
    need_data,
    print_json,
    writer_wait,
)
from pitr.datadir.keys import check_key, check_value
from pitr.datadir.state import MAX_KEY
from pitr.errors import InvalidArgument, file_error
from pitr.jsontypes import JSONObject
from pitr.store import QueuedCommits, Store, StoreOptions
from pitr.store.options import MAX_CLOCK_SKEW
from pitr.timefmt import format_time, parse_time
from segments.record import DELETE, MAX_VALUE, PUT, Op

MAX_LINE = 256 << 20
RUN_LINES = 4096  # commits queued as one piece: one WAL write, one fsync
RUN_BYTES = 4 << 20  # ... or fewer, once a run holds this many bytes of lines
IN_FLIGHT = 2  # runs queued before the oldest is awaited: the next is encoded while one is fsynced
_LENGTH = struct.Struct("<Q")

# A spooled commit: (ops, ts), ops a tuple of (kind, key, value, expires_at_ns) as `Op` holds
# them, so a run goes to the store as marshal reads it back; or (ops, ts, ttls) when some ops
# expire a TTL after the moment they are committed: ttls holds (op index, TTL in ns).
# marshal: fast, and the spool never outlives the process.
Spooled = tuple[Any, ...]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("import", help="commit JSON lines (one commit per line or per batch)")
    p.add_argument("file", help="JSON lines file, or - for standard input")
    p.add_argument("--max-clock-skew", type=_skew, default=MAX_CLOCK_SKEW, metavar="SECONDS",
                   help=f"refuse a \"ts\" more than this far ahead of the clock (default {MAX_CLOCK_SKEW:g}; "
                        "inf trusts the file's clock)")
    p.add_argument("--progress", action="store_true",
                   help="say on standard error how far the import is each time a run of lines is durable")
    add_data(p)
    add_wait(p)
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


_second_ns: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> ns at its start (the fast path of _time)


def _canonical_time(value: str) -> int | None:
    """What `pitr log --json` writes, 2026-11-24T14:03:07.250000000Z, read without a regex and a
    datetime per line: the second once (by parse_time), then its nanoseconds; None for any other
    text, which parse_time reads (tests/store/test_import_lines.py holds the two equal)."""
    if len(value) != 30 or value[29] != "Z" or value[19] != ".":
        return None
    nanos = value[20:29]
    if not (nanos.isascii() and nanos.isdigit()):
        return None
    second = _second_ns.get(value[:19])
    if second is None:
        try:
            second = parse_time(value[:19] + "Z")
        except InvalidArgument:  # not a second, or one starting before 1678: the exact path
            return None
        if len(_second_ns) >= 4096:
            _second_ns.clear()
        _second_ns[value[:19]] = second
    ts = second + int(nanos)
    return ts if ts < 1 << 63 else None


def _time(value: object, where: str) -> int:
    if isinstance(value, bool):
        raise InvalidArgument(f"{where}: time must be RFC 3339 text or integer nanoseconds")
    if isinstance(value, int):
        if not -(1 << 63) <= value < 1 << 63:  # refused now, not when its commit is encoded midway
            raise InvalidArgument(f"{where}: {value} ns does not fit a signed 64-bit time (years 1678 to 2262)")
        return value
    if isinstance(value, str):
        ts = _canonical_time(value)
        return parse_time(value, what=where) if ts is None else ts
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
        if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not 0 < ttl < 1e9:
            raise InvalidArgument(f"{where}: ttl must be positive seconds (less than 1e9)")
        if ts is not None:
            expires = ts + int(ttl * 1e9)
    return Op(PUT, key, value, expires), (ttl if expires is None else None)


def parse_line(text: str, number: int) -> tuple[list[tuple[Op, float | None]], int | None]:
    """A line's operations (each with the TTL still to be turned into an expiry) and its time."""
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


_scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # json.loads' own C scanner, no regex passes
_SLOW_FIELDS = frozenset({"batch", "ttl", "expires_at"})


def spool_line(text: str, number: int) -> Spooled:
    """What a line commits, as the spool holds it; exactly `parse_line`'s answer, the common line
    (a put of text without expiry) without its per-field Python (tests hold the two equal)."""
    try:
        # A line that is one JSON value from its first byte to its newline is what json.loads
        # accepts; anything else (spaces around it, bad JSON) takes parse_line's exact path.
        obj, end = _scan_json(text, 0)
        if end != len(text) and (end != len(text) - 1 or text[end] != "\n"):
            obj = None
    except (StopIteration, ValueError):
        obj = None
    if type(obj) is dict and obj.get("op") == "put" and obj.keys().isdisjoint(_SLOW_FIELDS):
        key, value, ts = obj.get("key"), obj.get("value"), obj.get("ts")
        if type(key) is str and type(value) is str:
            try:
                key_bytes, value_bytes = key.encode(), value.encode()
            except UnicodeEncodeError:
                pass
            else:
                if 0 < len(key_bytes) <= MAX_KEY and len(value_bytes) <= MAX_VALUE:
                    if ts is None or (type(ts) is int and -(1 << 63) <= ts < 1 << 63):
                        return ((PUT, key_bytes, value_bytes, None),), ts
                    if type(ts) is str:
                        ts_ns = _canonical_time(ts)
                        if ts_ns is not None:
                            return ((PUT, key_bytes, value_bytes, None),), ts_ns
                    return ((PUT, key_bytes, value_bytes, None),), _time(ts, f"line {number}: ts")
    pairs, ts = parse_line(text, number)
    ops = tuple(tuple(op) for op, _ttl in pairs)
    ttls = tuple((i, int(ttl * 1e9)) for i, (_op, ttl) in enumerate(pairs) if ttl is not None)
    return (ops, ts, ttls) if ttls else (ops, ts)


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


class _Spool:
    """The checked lines, in runs, in a private file with no name (gone when the process is)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        try:
            self.file: IO[bytes] = tempfile.TemporaryFile(dir=directory, prefix=".import-")  # 0600
        except OSError as exc:
            raise file_error(exc, directory, "create the import spool") from exc

    def write(self, first_line: int, last_line: int, run: list[Spooled], with_ttls: bool) -> None:
        blob = marshal.dumps((first_line, last_line, with_ttls, run))
        try:
            self.file.write(_LENGTH.pack(len(blob)))
            self.file.write(blob)
        except OSError as exc:
            raise file_error(exc, self.directory, "write the import spool") from exc

    def runs(self) -> Iterator[tuple[int, int, bool, list[Spooled]]]:
        """The runs written, in order (each read whole: `marshal.load` on a file reads piecemeal)."""
        try:
            size = self.file.tell()
            self.file.seek(0)
            offset = 0
            while offset < size:
                (length,) = _LENGTH.unpack(self.file.read(_LENGTH.size))
                blob = self.file.read(length)
                offset += _LENGTH.size + length
                yield marshal.loads(blob)
        except OSError as exc:
            raise file_error(exc, self.directory, "read the import spool") from exc

    def close(self) -> None:
        self.file.close()


def check_and_spool(store: Store, path: str, spool: _Spool, skew_ns: float, max_clock_skew: float) -> None:
    """The first pass: every line parsed and checked (times increasing, none too far ahead), in order,
    and spooled; the first bad line is refused with its number before anything is committed."""
    last_ts: int | None = store.last_ts
    run: list[Spooled] = []
    first = size = 0
    with_ttls = False
    now = store.now
    for number, line in _lines(path):
        item = spool_line(line, number)
        ts = item[1]
        if ts is None:
            clock = now()
            last_ts = clock if last_ts is None or clock > last_ts else last_ts
        elif last_ts is not None and ts <= last_ts:
            raise InvalidArgument(f"line {number}: ts {ts} is not after the previous commit's time "
                                  f"{last_ts}; commit times must increase (nothing was imported)")
        elif ts - now() > skew_ns:
            raise InvalidArgument(f"line {number}: ts {format_time(ts)} is more than "
                                  f"{max_clock_skew:g} s ahead of the clock ({format_time(store.now())}); "
                                  f"pass --max-clock-skew to trust it (nothing was imported)")
        else:
            last_ts = ts
        if not run:
            first = number
        run.append(item)
        with_ttls = with_ttls or len(item) == 3
        size += len(line)
        if len(run) >= RUN_LINES or size >= RUN_BYTES:
            spool.write(first, number, run, with_ttls)
            run, size, with_ttls = [], 0, False
    if run:
        spool.write(first, number, run, with_ttls)


def _commits(store: Store, run: list[Spooled], with_ttls: bool) -> list[tuple[tuple[Op, ...], int | None]]:
    """A spooled run as the store takes it, (ops, ts) commits; a TTL becomes an expiry now, as it is
    committed. A run without TTLs is handed over as marshal read it: no Python step per line."""
    if not with_ttls:
        return run  # (kind, key, value, expires) tuples: what an Op is
    commits: list[tuple[tuple[Op, ...], int | None]] = []
    for item in run:
        if len(item) == 3:
            spooled, ts, ttls = item
            ops = list(spooled)
            for i, ttl in ttls:
                kind, key, value, _expires = ops[i]
                ops[i] = (kind, key, value, store.now() + ttl)
            item = (tuple(ops), ts)
        commits.append(item)
    return commits


async def run(args: argparse.Namespace) -> int:
    if args.file != "-":
        next(_lines(args.file), None)  # an unreadable file is refused before the store is created
    # The cyclic GC is paused for the import (the command line may opt in; the library never
    # does): it makes no cycles, only millions of short-lived tuples that the GC would walk.
    paused = gc.isenabled()
    gc.disable()
    try:
        return await _import(args)
    finally:
        if paused:
            gc.enable()


async def _import(args: argparse.Namespace) -> int:
    progress = _Progress(args.progress)
    skew_ns = math.inf if math.isinf(args.max_clock_skew) else int(args.max_clock_skew * 1e9)
    async with Store(need_data(args), StoreOptions(max_clock_skew=args.max_clock_skew,
                                                 lock_wait=await writer_wait(args))) as store:
        spool = _Spool(store.path)
        try:
            check_and_spool(store, args.file, spool, skew_ns, args.max_clock_skew)
            in_flight: deque[tuple[QueuedCommits, int]] = deque()
            try:
                for first, last, with_ttls, items in spool.runs():
                    progress.queued(first, last)
                    in_flight.append((store.queue_commits(_commits(store, items, with_ttls)), last))
                    if len(in_flight) >= IN_FLIGHT:
                        await progress.settle(*in_flight.popleft())
                    if store.unapplied_keys >= store.options.apply_threshold:
                        await store.flush()  # memory stays bounded however far the import outruns LMDB
                while in_flight:
                    await progress.settle(*in_flight.popleft())
            except BaseException:
                progress.report(args.json)
                raise
        finally:
            spool.close()
    summary = progress.summary()
    if args.json:
        print_json(summary)
    else:
        first_lsn, last_lsn = summary["first_lsn"], summary["last_lsn"]
        print(f"imported {summary['commits']} commits" + (f" (LSN {first_lsn}..{last_lsn})" if first_lsn else ""))
    return 0


class _Progress:
    """How far an import got: what a user needs to resume one that stopped midway."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self.commits = 0
        self.first_lsn: int | None = None
        self.last_lsn: int | None = None
        self.last_line: int | None = None
        self.through: int | None = None  # the last line queued
        self._firsts: deque[int] = deque()  # the first line of each run queued, not yet acknowledged

    @property
    def line(self) -> int | None:
        """The first line queued and not acknowledged (None when every queued line is)."""
        return self._firsts[0] if self._firsts else None

    def queued(self, first: int, last: int) -> None:
        self._firsts.append(first)
        self.through = last

    async def settle(self, queued: QueuedCommits, last_line: int) -> None:
        """Wait for a run; once it is durable it counts as committed (and is reported)."""
        await queued.wait()
        self.commits += len(queued)
        self.first_lsn = self.first_lsn or queued.first_lsn
        self.last_lsn, self.last_line = queued.last_lsn, last_line
        self._firsts.popleft()
        if self.show:
            print(f"pitr import: committed through line {last_line} (LSN {self.last_lsn})", file=sys.stderr,
                  flush=True)

    def summary(self) -> JSONObject:
        return {"commits": self.commits, "first_lsn": self.first_lsn, "last_lsn": self.last_lsn}

    def report(self, as_json: bool) -> None:
        """Say, on standard error, what got in before the import stopped (and on stdout with --json)."""
        if self.last_line is None:
            done = "no line was committed"
        else:
            done = (f"lines up to {self.last_line} are committed ({self.commits} commits, LSN "
                    f"{self.first_lsn}..{self.last_lsn})")
        pending = ""
        if self.line is not None:
            if self.line == self.through:
                lines, them = f"line {self.line} was", "it may or may not be in the store: check it"
            else:
                lines, them = f"lines {self.line}..{self.through} were", \
                    "they may or may not be in the store: check them"
            pending = (f"; {lines} not acknowledged ({them} with `pitr get` before importing again "
                       f"from line {self.line})")
        print(f"pitr import: stopped: {done}{pending}", file=sys.stderr)
        if as_json:
            print_json({**self.summary(), "complete": False, "last_line": self.last_line,
                        "unacknowledged_line": self.line})
