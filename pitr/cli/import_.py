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
import marshal
import math
import struct
import sys
import tempfile
from collections import deque
from collections.abc import Iterator
from typing import IO

from pitr.cli.common import add_data, add_json, add_wait, need_data, print_json, writer_wait
from pitr.cli.import_lines import Spooled as Spooled
from pitr.cli.import_lines import _time, parse_line, spool_line
from pitr.cli.import_scan import SpoolLines, spool_lines
from pitr.errors import InvalidArgument, file_error
from pitr.jsontypes import JSONObject
from pitr.store import QueuedCommits, Store, StoreOptions
from pitr.store.options import MAX_CLOCK_SKEW
from pitr.timefmt import format_time
from segments.record import Op

__all__ = ["IN_FLIGHT", "RUN_LINES", "Spooled", "_time", "check_and_spool", "parse_line", "register", "run",
           "spool_line"]

MAX_LINE = 256 << 20
RUN_LINES = 4096  # commits queued as one piece: one WAL write, one fsync
RUN_BYTES = 4 << 20  # ... or fewer, once a run holds this many bytes of lines
IN_FLIGHT = 2  # runs queued before the oldest is awaited: the next is encoded while one is fsynced
# LMDB applies at most this often during an import (or once `apply_threshold` keys wait): a write
# transaction of random keys copies most of the pages it touches, so fewer, larger ones cost less
IMPORT_APPLY_INTERVAL = 5.0
_LENGTH = struct.Struct("<Q")



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




def _chunks(path: str) -> Iterator[tuple[int, list[str]]]:
    """The file's lines in chunks of at most `RUN_LINES` lines and about `RUN_BYTES`, each with the
    number of its first line (blank lines included: the checking pass skips them)."""
    try:
        fh = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise file_error(exc, path, "read the import file") from exc
    number = 1
    try:
        while lines := fh.readlines(RUN_BYTES):
            if max(map(len, lines)) > MAX_LINE:
                index = next(i for i, line in enumerate(lines) if len(line) > MAX_LINE)
                raise InvalidArgument(f"line {number + index}: longer than {MAX_LINE} bytes")
            for offset in range(0, len(lines), RUN_LINES):
                yield number + offset, lines[offset:offset + RUN_LINES]
            number += len(lines)
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


def check_and_spool(store: Store, path: str, spool: _Spool, skew_ns: float, max_clock_skew: float,
                    scan: SpoolLines = spool_lines) -> None:
    """The first pass: every line parsed and checked (times increasing, none too far ahead), in order,
    and spooled; the first bad line is refused with its number before anything is committed.

    `scan` takes what it can of each chunk of lines (`pitr.cli.import_scan`); a line it leaves is
    taken here, by the exact path, which refuses a bad line in its own words."""
    last_ts: int | None = store.last_ts
    now = store.now
    for number, lines in _chunks(path):
        run: list[Spooled] = []
        first = last = 0  # the numbers of the run's first and last lines
        index = 0
        while True:
            before = len(run)
            stop, last_ts = scan(lines, index, last_ts, now, skew_ns, run)
            if len(run) > before:
                first = first or number + index
                last = number + stop - 1
            if stop >= len(lines):
                break
            line, line_number = lines[stop], number + stop
            index = stop + 1
            if not line.strip():
                continue
            item = spool_line(line, line_number)
            last_ts = _check_time(store, item[1], last_ts, line_number, skew_ns, max_clock_skew)
            run.append(item)
            first = first or line_number
            last = line_number
        if run:
            spool.write(first, last, run, 3 in map(len, run))


def _check_time(store: Store, ts: int | None, last_ts: int | None, number: int, skew_ns: float,
                max_clock_skew: float) -> int | None:
    """The checking pass's time rules for one line; returns the last commit time after it."""
    if ts is None:
        clock = store.now()
        return clock if last_ts is None or clock > last_ts else last_ts
    if last_ts is not None and ts <= last_ts:
        raise InvalidArgument(f"line {number}: ts {ts} is not after the previous commit's time "
                              f"{last_ts}; commit times must increase (nothing was imported)")
    if ts - store.now() > skew_ns:
        raise InvalidArgument(f"line {number}: ts {format_time(ts)} is more than "
                              f"{max_clock_skew:g} s ahead of the clock ({format_time(store.now())}); "
                              f"pass --max-clock-skew to trust it (nothing was imported)")
    return ts


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
        next(_chunks(args.file), None)  # an unreadable file is refused before the store is created
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
    options = StoreOptions(max_clock_skew=args.max_clock_skew, apply_interval=IMPORT_APPLY_INTERVAL,
                           lock_wait=await writer_wait(args))
    async with Store(need_data(args), options) as store:
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
