"""Argument checks shared by the store's write paths: keys, values, TTLs."""

from __future__ import annotations

from collections.abc import Iterable

from pitr.datadir.state import MAX_KEY
from pitr.errors import InvalidArgument
from segments import record as rec


def check_key(key: bytes) -> bytes:
    if not isinstance(key, bytes):
        raise InvalidArgument(f"key must be bytes, not {type(key).__name__}")
    if not key:
        raise InvalidArgument("key must not be empty")
    if len(key) > MAX_KEY:
        raise InvalidArgument(f"key of {len(key)} bytes is longer than the {MAX_KEY}-byte limit "
                              f"(key starts {key[:32]!r})")
    return key


def ttl_ns(ttl: float, key: bytes) -> int:
    """A TTL in seconds as nanoseconds; must be positive."""
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise InvalidArgument(f"ttl for key {key[:64]!r} must be positive seconds, got {ttl!r}")
    return int(ttl * 1_000_000_000)


def check_value(value: bytes, key: bytes) -> bytes:
    if not isinstance(value, bytes):
        raise InvalidArgument(f"value for key {key[:64]!r} must be bytes, not {type(value).__name__}")
    if len(value) > rec.MAX_VALUE:
        raise InvalidArgument(f"value for key {key[:64]!r} is larger than {rec.MAX_VALUE} bytes")
    return value


def check_put(key: bytes, value: bytes) -> None:
    """Both checks of a put, with the common valid case decided in one expression."""
    if type(key) is not bytes or not 0 < len(key) <= MAX_KEY or type(value) is not bytes \
            or len(value) > rec.MAX_VALUE:
        check_key(key)
        check_value(value, key)


def check_ops(ops: Iterable[rec.Op]) -> None:
    """The checks of `check_put` and `check_key` on every operation of a commit, before it is logged:
    a key LMDB cannot hold, logged, would fail every later apply of the WAL. An operation may be an
    `Op` or a plain (kind, key, value, expiry) tuple (imports build those)."""
    for op in ops:
        kind, key = op[0], op[1]
        if kind == rec.PUT:
            check_put(key, op[2])
            expires = op[3] if len(op) > 3 else None
            if expires is not None and type(expires) is not int:
                raise InvalidArgument(f"expiry of key {key[:64]!r} must be an int of nanoseconds, "
                                      f"not {type(expires).__name__}")
        elif kind == rec.DELETE:
            check_key(key)
        else:
            raise InvalidArgument(f"operation kind {kind!r} is neither a put nor a delete")
