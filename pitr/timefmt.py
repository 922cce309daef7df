"""Commit times: nanoseconds since the Unix epoch (UTC), parsed from and shown as RFC 3339.

A *moment* a user names on the command line is a time (RFC 3339 with an offset,
Unix seconds), `now`, a time relative to now (`-15m`, `now-2h`, `now-1d12h`,
`now+30s`) or one commit by its LSN (`@1234`); `parse_moment` reads all of them.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pitr.errors import InvalidArgument

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})?$"
)
_NUMBER = re.compile(r"^-?\d{1,20}(\.\d{1,9})?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LIMIT_NS = 1 << 63  # commit times are signed 64-bit nanoseconds
_LSN_LIMIT = 1 << 64  # LSNs are unsigned 64-bit
_RELATIVE = re.compile(r"^(?:now)?([+-])((?:\d{1,12}(?:\.\d{1,9})?(?:ms|s|m|h|d))+)$")
_DURATION_PART = re.compile(r"(\d{1,12})(?:\.(\d{1,9}))?(ms|s|m|h|d)")
_UNIT_NS = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
            "d": 86_400_000_000_000}
_LSN = re.compile(r"^@(\d{1,20})$")
MOMENT_FORMS = ("an RFC 3339 time with an offset (2026-11-24T14:03:07.25Z), Unix seconds (1795961387.25), "
                "now, a time relative to now (-15m, now-2h, now-1d12h) or a commit's LSN (@1234)")


@dataclass(frozen=True, slots=True)
class Moment:
    """A moment as the user named it: exactly one of a time (`ts_ns`) or one commit (`lsn`)."""

    text: str
    ts_ns: int | None = None
    lsn: int | None = None

    def __post_init__(self) -> None:
        if (self.ts_ns is None) == (self.lsn is None):
            raise ValueError("a moment is exactly one of a time or an LSN")


def parse_moment(text: str, *, now_ns: int, what: str = "time") -> Moment:
    """Parse a moment: a time (`parse_time`), `now`, now plus or minus a duration, or `@LSN`.

    `now_ns` is the clock read once when the command started, so every relative
    moment of one command is relative to the same instant.
    """
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered == "now":
        return Moment(stripped, ts_ns=_in_range(now_ns, stripped, what))
    if match := _LSN.match(stripped):
        lsn = int(match.group(1))
        if lsn >= _LSN_LIMIT:
            raise InvalidArgument(f"{what} {text!r}: an LSN is at most {_LSN_LIMIT - 1}")
        return Moment(stripped, lsn=lsn)
    if match := _RELATIVE.match(lowered):
        sign = 1 if match.group(1) == "+" else -1
        return Moment(stripped, ts_ns=_in_range(now_ns + sign * _duration_ns(match.group(2)), stripped, what))
    if lowered.startswith(("now", "@")) or (lowered[:1] in "+-" and lowered[-1:].isalpha()):
        raise InvalidArgument(f"{what} {text!r} is not a moment; write {MOMENT_FORMS}")
    return Moment(stripped, ts_ns=parse_time(stripped, what=what))


def parse_duration(text: str, *, what: str = "duration") -> int:
    """A duration a user types (10s, 2m, 1h30m, 1.5s, 250ms; a bare number is seconds) in nanoseconds."""
    stripped = text.strip().lower()
    if _NUMBER.match(stripped) and not stripped.startswith("-"):
        stripped += "s"
    if not re.fullmatch(r"(?:\d{1,12}(?:\.\d{1,9})?(?:ms|s|m|h|d))+", stripped):
        raise InvalidArgument(f"{what} {text!r} is not a duration; write it like 10s, 2m, 1h30m or 250ms")
    return _duration_ns(stripped)


def _duration_ns(text: str) -> int:
    """Nanoseconds in a duration like 1d12h or 1.5h (each part a number and a unit: ms, s, m, h, d)."""
    total = 0
    for whole, frac, unit in _DURATION_PART.findall(text):
        scale = _UNIT_NS[unit]
        total += int(whole) * scale + int(((frac or "") + "000000000")[:9]) * scale // 1_000_000_000
    return total


def describe_moment(ts_ns: int, lsn: int | None) -> str:
    """A resolved moment as it is printed back: RFC 3339 with the LSN it stands for."""
    return f"{format_time(ts_ns)} (LSN {lsn if lsn is not None else 'none: before the first commit'})"


def parse_time(text: str, *, what: str = "time") -> int:
    """Parse an RFC 3339 time with an offset, or Unix seconds, into ns since the epoch.

    A time without an offset is ambiguous and rejected with a message that
    shows how to write it.
    """
    text = text.strip()
    if _NUMBER.match(text):
        whole, _, frac = text.partition(".")
        sign = -1 if whole.startswith("-") else 1
        ns = int(whole) * 1_000_000_000 + sign * int((frac + "000000000")[:9] or 0)
        return _in_range(ns, text, what)
    match = _RFC3339.match(text)
    if match is None:
        raise InvalidArgument(
            f"{what} {text!r} is not an RFC 3339 time or Unix seconds; write it like "
            "2026-11-24T14:03:07.25Z, 2026-11-24T15:03:07+01:00 or 1795961387.25 (where a moment is asked "
            "for, also now, -15m, now-2h or @LSN)")
    year, month, day, hour, minute, second, frac, offset = match.groups()
    if offset is None:
        raise InvalidArgument(
            f"{what} {text!r} has no UTC offset, so it is ambiguous; add one, like "
            f"{text}Z for UTC or {text}+01:00")
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC)
    except ValueError as exc:
        raise InvalidArgument(f"{what} {text!r}: {exc}") from exc
    if offset.upper() != "Z":
        if int(offset[1:3]) > 23 or int(offset[4:6]) > 59:
            raise InvalidArgument(f"{what} {text!r}: UTC offset {offset} is not a valid offset (at most ±23:59)")
        sign = 1 if offset[0] == "+" else -1
        moment -= sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
    delta = moment - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    return _in_range(seconds * 1_000_000_000 + int(((frac or "") + "000000000")[:9]), text, what)


def _in_range(ns: int, text: str, what: str) -> int:
    if not -_LIMIT_NS <= ns < _LIMIT_NS:
        raise InvalidArgument(f"{what} {text!r} is out of range: times are nanoseconds since 1970 that fit in "
                              "64 bits (years 1678 to 2262)")
    return ns


def format_time(ts_ns: int) -> str:
    """RFC 3339 in UTC with nanoseconds, e.g. 2026-11-24T14:03:07.250000000Z.

    Never fails: a value beyond what a calendar date can show (a damaged
    field, say) is printed as raw nanoseconds, saying so.
    """
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    whole = _second_text(seconds)
    if whole is None:
        return f"{ts_ns} ns since 1970 (beyond any calendar date)"
    return f"{whole}.{nanos:09d}Z"


@functools.lru_cache(maxsize=4096)
def _second_text(seconds: int) -> str | None:
    """The calendar second, e.g. 2026-11-24T14:03:07 (None beyond any date): a history or a log prints
    thousands of times within a few seconds, and strftime is most of format_time's cost."""
    try:
        moment = _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        return None
    return f"{moment:%Y-%m-%dT%H:%M:%S}"


def format_ns(ts_ns: int) -> str:
    """A raw nanosecond time for a message: RFC 3339 with the number beside it."""
    return f"{format_time(ts_ns)} ({ts_ns} ns)"
