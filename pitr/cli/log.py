"""pitr log: the archived commits in a time or LSN range, as JSON lines `pitr import` reads."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from typing import TextIO

from pitr.audit import log_entries
from pitr.audit.floor import retention_floor
from pitr.audit.log import LogCommit, import_json_line
from pitr.audit.log_lines import log_json_lines
from pitr.cli._gaps import add_allow_gaps, print_gap, summarize_gaps, synced_holes
from pitr.cli.common import add_json, add_repo, repositories, show_bytes
from pitr.cli.moments import MOMENT_HELP, Moments, accept_relative_moments
from pitr.errors import Gap, InvalidArgument
from pitr.timefmt import Moment, format_time

WRITE_LINES = 4096


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("log", help="archived commits in a range (JSON lines usable by pitr import)")
    accept_relative_moments(p)
    p.add_argument("--since", help=f"from this moment ({MOMENT_HELP}; @LSN is --since-lsn)")
    p.add_argument("--until", help="up to this moment, inclusive")
    p.add_argument("--since-lsn", type=int, help="from this LSN")
    p.add_argument("--until-lsn", type=int, help="up to this LSN, inclusive")
    p.add_argument("--prefix", help="only operations on keys starting with this text")
    add_allow_gaps(p)
    add_repo(p)
    add_json(p)
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    moments = Moments()
    since, since_lsn = _bound(moments.optional(args.since, "--since"), args.since_lsn, "--since")
    until, until_lsn = _bound(moments.optional(args.until, "--until"), args.until_lsn, "--until")
    prefix = args.prefix.encode() if args.prefix is not None else None
    out = sys.stdout
    lines: list[str] = []  # written a few thousand at a time: a write per line costs more than the line
    gaps: list[Gap] = []
    async with repositories(args) as repos:
        repo = repos[0]
        holes = await synced_holes(repo)
        if since is None and since_lsn is None:  # (an explicit start before it is refused)
            floor = retention_floor(repo.catalog, await repo.require_identity())
            if floor is not None:
                print(f"pitr log: {floor.describe()}", file=sys.stderr)
        if args.json and prefix is None:  # the lines formatted a block at a time (pitr.audit.log_lines)
            async for text in log_json_lines(repo, since_ns=since, until_ns=until, since_lsn=since_lsn,
                                             until_lsn=until_lsn, holes=holes, allow_gaps=args.allow_gaps):
                if isinstance(text, Gap):
                    gaps.append(text)
                    out.flush()
                    print_gap(text, holes, args.json)
                else:
                    out.write(text)
            entries: AsyncIterator[LogCommit | Gap] = _nothing()
        else:
            entries = log_entries(repo, since_ns=since, until_ns=until, since_lsn=since_lsn, until_lsn=until_lsn,
                                  prefix=prefix, holes=holes, allow_gaps=args.allow_gaps)
        async for commit in entries:
            if isinstance(commit, Gap):
                gaps.append(commit)
                _write(out, lines)
                out.flush()
                print_gap(commit, holes, args.json)
                continue
            if args.json:
                lines.append(import_json_line(commit))
            else:
                ops = ", ".join(f"{op.op} {show_bytes(op.key)}" + (f"={show_bytes(op.value)}" if op.value is not None
                                                                   else "") for op in commit.ops)
                lines.append(f"LSN {commit.lsn:>10}  {format_time(commit.ts_ns)}  {ops}")
            if len(lines) >= WRITE_LINES:
                _write(out, lines)
        _write(out, lines)
    out.flush()
    summarize_gaps("log", gaps, holes)
    return 0


async def _nothing() -> AsyncIterator[LogCommit | Gap]:
    return
    yield


def _write(out: TextIO, lines: list[str]) -> None:
    if lines:
        out.write("\n".join(lines) + "\n")
        lines.clear()


def _bound(moment: Moment | None, lsn: int | None, flag: str) -> tuple[int | None, int | None]:
    """One end of the range as (time, LSN): `--since @N` is `--since-lsn N`, the commit itself."""
    if moment is None or moment.lsn is None:
        return (None if moment is None else moment.ts_ns), lsn
    if lsn is not None:
        raise InvalidArgument(f"{flag} {moment.text} and {flag}-lsn {lsn} both name an LSN; give one")
    return None, moment.lsn
