"""Commit times: nanoseconds since the Unix epoch (UTC), parsed from and shown as RFC 3339."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from pitr.errors import InvalidArgument

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})?$"
)
_NUMBER = re.compile(r"^-?\d{1,20}(\.\d{1,9})?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LIMIT_NS = 1 << 63  # commit times are signed 64-bit nanoseconds


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
            "2026-11-24T14:03:07.25Z, 2026-11-24T15:03:07+01:00 or 1795961387.25")
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
    try:
        moment = _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        return f"{ts_ns} ns since 1970 (beyond any calendar date)"
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


def format_ns(ts_ns: int) -> str:
    """A raw nanosecond time for a message: RFC 3339 with the number beside it."""
    return f"{format_time(ts_ns)} ({ts_ns} ns)"
