"""The commit log: archived commits in a range of times or LSNs, optionally under a key prefix.

The start is found through the catalog's sparse block index (by time or by
LSN, O(log n)); from there the log is read a block at a time. `to_import_json`
writes a commit in the JSON-lines form that `pitr import` reads back
(docs/audit.md, "JSON lines").
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import NamedTuple

from pitr.audit.floor import refuse_before_floor
from pitr.audit.history import Operation
from pitr.audit.holes import Hole, find_holes, history_gap
from pitr.audit.records import RecordReader
from pitr.errors import Gap
from pitr.jsonbytes import bytes_to_json
from pitr.jsontypes import JSONObject
from pitr.repo.repository import Repository
from pitr.timefmt import format_time
from segments import record as rec


class LogOp(NamedTuple):
    """One operation of a commit: a put (with value and optional expiry) or a delete."""

    op: Operation
    key: bytes
    value: bytes | None
    expires_at_ns: int | None


@dataclass(frozen=True, slots=True)
class LogCommit:
    """One archived commit; `ops` holds only the operations that matched the prefix, in order."""

    lsn: int
    ts_ns: int
    ops: list[LogOp]
    source_rev: int | None = None


def _log_op(op: rec.Op) -> LogOp:
    if op.kind == rec.PUT:
        return LogOp("put", op.key, op.value, op.expires_at_ns)
    return LogOp("delete", op.key, None, None)


def start_lsn(repo: Repository, since_ns: int | None, since_lsn: int | None) -> int | None:
    """The LSN to start reading at: the later of the two bounds' blocks (None: empty archive)."""
    catalog = repo.catalog
    first = catalog.first_segment()
    if first is None:
        return None
    lsn = first.first_lsn if since_lsn is None else max(since_lsn, first.first_lsn)
    if since_ns is not None:
        block = catalog.block_for_time(since_ns)  # the last block starting at or before since_ns
        if block is not None:
            lsn = max(lsn, block.first_lsn)
    return lsn


async def commit_log(repo: Repository, *, since_ns: int | None = None, until_ns: int | None = None,
                     since_lsn: int | None = None, until_lsn: int | None = None,
                     prefix: bytes | None = None, allow_gaps: bool = False,
                     holes: Sequence[Hole] | None = None) -> AsyncIterator[LogCommit]:
    """Archived commits with since <= time <= until and since_lsn <= LSN <= until_lsn, in order.

    With `prefix`, only operations on keys starting with it are kept, and
    commits left with none are omitted. Raises HistoryGap, before yielding
    anything, when a hole in the archive (`find_holes`; pass `holes` to use
    ones already found) lies in the range; with `allow_gaps` the commits the
    archive holds are listed, and `log_entries` lists them with each hole in place.
    """
    async with aclosing(log_entries(repo, since_ns=since_ns, until_ns=until_ns, since_lsn=since_lsn,
                                    until_lsn=until_lsn, prefix=prefix, allow_gaps=allow_gaps,
                                    holes=holes)) as entries:
        async for entry in entries:
            if isinstance(entry, LogCommit):
                yield entry


async def log_range(repo: Repository, since_ns: int | None, until_ns: int | None, since_lsn: int | None,
                    until_lsn: int | None, allow_gaps: bool,
                    holes: Sequence[Hole] | None) -> tuple[list[Hole], int | None]:
    """Where a log of the range starts, and the holes in it, in order: the refusals every log makes
    first (OutsideWindow before the floor; HistoryGap for a hole, unless `allow_gaps`)."""
    ident = await repo.require_identity()
    if holes is None:
        holes = find_holes(repo.catalog, ident)
    refuse_before_floor(repo.catalog, ident, "the commit log", since_ns, since_lsn)
    pending = [h for h in holes if h.meets_times(since_ns, until_ns) and h.meets_lsns(since_lsn, until_lsn)]
    if pending and not allow_gaps:
        raise history_gap("the commit log asked for", pending)
    return pending, start_lsn(repo, since_ns, since_lsn)


async def log_entries(repo: Repository, *, since_ns: int | None = None, until_ns: int | None = None,
                      since_lsn: int | None = None, until_lsn: int | None = None,
                      prefix: bytes | None = None, allow_gaps: bool = True,
                      holes: Sequence[Hole] | None = None) -> AsyncGenerator[LogCommit | Gap, None]:
    """`commit_log` with each hole in the range yielded in place, as a `Gap`, between the commits around it.

    Raises HistoryGap before yielding anything when there is a hole and not `allow_gaps`, and
    OutsideWindow when an explicit start lies before the commits retention removed
    (`pitr.audit.floor`).
    """
    pending, first = await log_range(repo, since_ns, until_ns, since_lsn, until_lsn, allow_gaps, holes)
    if first is not None:
        with RecordReader(repo) as reader:
            async with aclosing(reader.records_from(first, until_lsn)) as records:
                async for record in records:
                    if since_ns is not None and record.ts_ns < since_ns:
                        continue
                    if until_ns is not None and record.ts_ns > until_ns:
                        break
                    while pending and pending[0].gap.last_lsn < record.lsn:
                        yield pending.pop(0).gap
                    if prefix is None:
                        ops = [_log_op(op) for op in record.ops]
                    else:
                        ops = [_log_op(op) for op in record.ops if op.key.startswith(prefix)]
                    if ops:
                        yield LogCommit(record.lsn, record.ts_ns, ops, record.source_rev)
    for hole in pending:
        yield hole.gap


def _op_json(op: LogOp) -> JSONObject:
    doc: JSONObject = {"op": op.op, "key": bytes_to_json(op.key)}
    if op.op == "put":
        assert op.value is not None
        doc["value"] = bytes_to_json(op.value)
        if op.expires_at_ns is not None:
            doc["expires_at"] = format_time(op.expires_at_ns)
    return doc


_PLAIN_TEXT = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\')  # written by json.dumps as themselves
_second_text: dict[int, str] = {}  # a second since 1970 -> its text, "YYYY-MM-DDTHH:MM:SS"


def _time_text(ts_ns: int) -> str:
    """`format_time(ts_ns)`, each second's calendar text computed once."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    prefix = _second_text.get(seconds)
    if prefix is None:
        text = format_time(ts_ns)
        if len(text) != 30 or not text.endswith("Z"):  # beyond the calendar: written as it is
            return text
        if len(_second_text) >= 4096:
            _second_text.clear()
        prefix = _second_text[seconds] = text[:19]
    return f"{prefix}.{nanos:09d}Z"


def import_json_line(commit: LogCommit) -> str:
    """`json.dumps(to_import_json(commit))`: the line `pitr log --json` writes for a commit, the
    common one (a put without expiry or a delete, of printable ASCII text) without building the
    object (tests/audit/test_log_lines.py holds the two equal)."""
    if len(commit.ops) == 1:
        op = commit.ops[0]
        key = op.key
        if key and not key.translate(None, _PLAIN_TEXT):
            if op.op == "put":
                value = op.value
                if op.expires_at_ns is None and value is not None and not value.translate(None, _PLAIN_TEXT):
                    return (f'{{"lsn": {commit.lsn}, "ts": "{_time_text(commit.ts_ns)}", "op": "put", '
                            f'"key": "{key.decode("ascii")}", "value": "{value.decode("ascii")}"}}')
            else:
                return (f'{{"lsn": {commit.lsn}, "ts": "{_time_text(commit.ts_ns)}", "op": "delete", '
                        f'"key": "{key.decode("ascii")}"}}')
    return json.dumps(to_import_json(commit))


def to_import_json(commit: LogCommit) -> JSONObject:
    """The commit as one JSON-lines object that `pitr import` reads.

    A single operation: {"lsn", "ts", "op", "key", "value", "expires_at"};
    several: {"lsn", "ts", "batch": [{"op", "key", "value", "expires_at"}, ...]}.
    `value` is left out of deletes and `expires_at` out of puts without one;
    times are RFC 3339 UTC with nanoseconds. See docs/audit.md.
    """
    head: JSONObject = {"lsn": commit.lsn, "ts": format_time(commit.ts_ns)}
    if len(commit.ops) == 1:
        return {**head, **_op_json(commit.ops[0])}
    return {**head, "batch": [_op_json(op) for op in commit.ops]}
