"""The JSON lines of one checked block of the log, as `pitr log --json` writes them.

`block_lines` formats the records of a block from index `start` on, within the bounds asked
for, and stops at the first record it does not take: the caller formats that record through
the exact path (`decode_payload`, `import_json_line`) and calls again after it. The compiled
twin in `pitr.audit._log_lines` (built at install, as `segments._block_replay` is) takes the
common commit (one put without expiry or one delete, of printable ASCII text) in C; the
reference below takes every commit it can decode. Either runs only over a block whose records
the block scan has checked (framing, CRC-32C, dense LSNs, increasing times).
tests/audit/test_log_lines.py holds the two equal.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing

from pitr.audit.holes import Hole
from pitr.audit.log import LogCommit, LogOp, import_json_line, log_range
from pitr.audit.records import RecordReader, decode_block, record_ends
from pitr.errors import Gap, to_corrupt
from pitr.repo.repository import Repository
from segments import SegmentsError
from segments import record as rec
from segments.compiled import compiled_module

# (raw, record ends, start, lo LSN, hi LSN, since ns, until ns) -> (text, index of the first record
# not taken, whether a record past the upper bounds ended the log)
BlockLines = Callable[[bytes, list[int], int, "int | None", "int | None", "int | None", "int | None"],
                      "tuple[str, int, bool]"]


def commit_of(record: rec.Record) -> LogCommit:
    """A decoded record as the log lists it."""
    ops = [LogOp("put", op.key, op.value, op.expires_at_ns) if op.kind == rec.PUT else
           LogOp("delete", op.key, None, None) for op in record.ops]
    return LogCommit(record.lsn, record.ts_ns, ops, record.source_rev)


def block_lines_reference(raw: bytes, ends: list[int], start: int, lo_lsn: int | None, hi_lsn: int | None,
                          since_ns: int | None, until_ns: int | None) -> tuple[str, int, bool]:
    """The lines (each ending in a newline) of the records ends[start:] marks the end of, in order:
    records before lo_lsn or since_ns are passed over, one after hi_lsn or until_ns ends the log.
    Stops at a record of a type it does not know (its index is returned)."""
    lines: list[str] = []
    for index in range(start, len(ends)):
        begin = ends[index - 1] if index else 0
        lsn, ts_ns = rec.HEADER.unpack_from(raw, begin)[6:8]
        if (hi_lsn is not None and lsn > hi_lsn) or (until_ns is not None and ts_ns > until_ns):
            return "".join(lines), index, True
        if (lo_lsn is not None and lsn < lo_lsn) or (since_ns is not None and ts_ns < since_ns):
            continue
        record = rec.decode_payload(raw, rec.Span(lsn, ts_ns, begin, ends[index]), skip_unknown=True)
        if record is None:
            return "".join(lines), index, False
        lines.append(import_json_line(commit_of(record)) + "\n")
    return "".join(lines), len(ends), False


def _load() -> tuple[BlockLines, bool]:
    compiled = compiled_module("pitr.audit._log_lines", '`pitr log --json` formats its lines in pure Python')
    if compiled is None:
        return block_lines_reference, False
    return compiled.block_lines, True


block_lines, COMPILED = _load()


async def log_json_lines(repo: Repository, *, since_ns: int | None = None, until_ns: int | None = None,
                         since_lsn: int | None = None, until_lsn: int | None = None, allow_gaps: bool = True,
                         holes: Sequence[Hole] | None = None) -> AsyncGenerator[str | Gap, None]:
    """`log_entries` without a prefix as the text `pitr log --json` writes: runs of lines (each ending
    in a newline), with each hole in place as a `Gap`; the same refusals, the same lines."""
    pending, first = await log_range(repo, since_ns, until_ns, since_lsn, until_lsn, allow_gaps, holes)
    if first is not None:
        with RecordReader(repo) as reader:
            async with aclosing(reader.blocks_from(first, until_lsn)) as blocks:
                async for raw, block, segment_name in blocks:
                    while pending and pending[0].gap.last_lsn < block.first_lsn:
                        yield pending.pop(0).gap
                    ends = record_ends(raw, block)
                    if ends is None or (pending and pending[0].gap.last_lsn < block.first_lsn + block.record_count):
                        lines: list[str] = []  # the exact path: a hole inside the block, or a block the scan refused
                        ended = False
                        for record in decode_block(raw, block, segment_name):
                            if record.lsn < first or (since_ns is not None and record.ts_ns < since_ns):
                                continue
                            if (until_lsn is not None and record.lsn > until_lsn) or \
                                    (until_ns is not None and record.ts_ns > until_ns):
                                ended = True
                                break
                            while pending and pending[0].gap.last_lsn < record.lsn:
                                if lines:
                                    yield "".join(lines)
                                    lines.clear()
                                yield pending.pop(0).gap
                            lines.append(import_json_line(commit_of(record)) + "\n")
                        if lines:
                            yield "".join(lines)
                        if ended:
                            break
                        continue
                    index, ended = 0, False
                    while index < len(ends) and not ended:
                        text, index, ended = block_lines(raw, ends, index, first, until_lsn, since_ns, until_ns)
                        if text:
                            yield text
                        if index < len(ends) and not ended:  # a record the fast path leaves: the exact one
                            begin = ends[index - 1] if index else 0
                            try:
                                left = rec.decode_payload(raw, rec.check_record_at(raw, begin, ends[index]),
                                                          skip_unknown=True)
                            except SegmentsError as exc:
                                raise to_corrupt(exc) from exc
                            if left is not None:
                                yield import_json_line(commit_of(left)) + "\n"
                            index += 1
                    if ended:
                        break
    for hole in pending:
        yield hole.gap
