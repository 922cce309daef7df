"""The checking pass of `pitr import` over a run of lines: each line spooled (`spool_line`) and held
to the pass's time rules (times increase; none too far ahead of the clock).

`spool_lines` takes lines from `start` on while it can, and stops at the first it does not take:
the caller then takes that line through the exact path (`spool_line` and the rules worded as
refusals, in `pitr.cli.import_`), and calls again after it. So where it stops never changes what
is spooled or refused, only how fast. The compiled twin in `pitr.cli._import_scan` (built at
install, as `segments._block_replay` is) takes the common line (a put of text, with or without
the "lsn" and canonical "ts" of `pitr log --json`) in C and stops at any other; the pure-Python
reference below takes every line `spool_line` takes. tests/cli/test_import_scan.py holds the two
equal on random and hostile lines.
"""

from __future__ import annotations

from collections.abc import Callable

from pitr.cli.import_lines import Spooled, spool_line
from pitr.errors import InvalidArgument
from segments.compiled import compiled_module

# (lines, start, last_ts, clock, skew_ns, out) -> (index of the first line not taken, last_ts)
SpoolLines = Callable[[list[str], int, "int | None", Callable[[], int], float, list[Spooled]], "tuple[int, int | None]"]


def spool_lines_reference(lines: list[str], start: int, last_ts: int | None, now: Callable[[], int],
                          skew_ns: float, out: list[Spooled]) -> tuple[int, int | None]:
    """Append to `out` the item of each of lines[start:], in order, while the line is one that
    `spool_line` takes and its time passes the rules: after `last_ts` (a line without a time is
    timed by the clock, `now()`, read once for it) and at most `skew_ns` ahead of the clock.
    Returns the index of the first line not taken (len(lines) when all were) and the last time."""
    for index in range(start, len(lines)):
        line = lines[index]
        if not line.strip():
            return index, last_ts  # a blank line: the caller skips it
        try:
            item = spool_line(line, index)
        except InvalidArgument:
            return index, last_ts
        ts = item[1]
        if ts is None:
            clock = now()
            last_ts = clock if last_ts is None or clock > last_ts else last_ts
        elif (last_ts is not None and ts <= last_ts) or ts - now() > skew_ns:
            return index, last_ts
        else:
            last_ts = ts
        out.append(item)
    return len(lines), last_ts


def _load() -> tuple[SpoolLines, bool]:
    compiled = compiled_module("pitr.cli._import_scan", '`pitr import` checks its lines in pure Python')
    if compiled is None:
        return spool_lines_reference, False
    return compiled.spool_lines, True


spool_lines, COMPILED = _load()
