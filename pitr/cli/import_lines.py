"""Import lines, one at a time: `parse_line` (the exact reading of any line `pitr import` takes) and
`spool_line` (the same answer, the common line without its per-field Python); the checking pass
(`pitr.cli.import_scan`) runs them, or their compiled twin, over runs of lines."""

from __future__ import annotations

import json
from typing import Any

from pitr.cli.common import decode_json_bytes
from pitr.datadir.keys import check_key, check_value
from pitr.datadir.state import MAX_KEY
from pitr.errors import InvalidArgument
from pitr.timefmt import parse_time
from segments.record import DELETE, MAX_VALUE, PUT, Op

# A spooled commit: (ops, ts), ops a tuple of (kind, key, value, expires_at_ns) as `Op` holds
# them, so a run goes to the store as marshal reads it back; or (ops, ts, ttls) when some ops
# expire a TTL after the moment they are committed: ttls holds (op index, TTL in ns).
# marshal: fast, and the spool never outlives the process.
Spooled = tuple[Any, ...]


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
