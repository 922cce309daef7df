"""What folding the log produces: per key, its last change (`segments.block_replay` folds).

A change is the new value (bytes) for a put without expiry,
``(value, expires_at_ns)`` for a put with one, and None for a delete.
"""

from __future__ import annotations

from segments import record as rec

Change = bytes | tuple[bytes, int] | None


def change_of(op: rec.Op) -> Change:
    """The change an operation makes."""
    if op.kind != rec.PUT:
        return None
    return op.value if op.expires_at_ns is None else (op.value, op.expires_at_ns)


def change_value(change: bytes | tuple[bytes, int]) -> tuple[bytes, int | None]:
    """A put's change as (value, expires_at_ns or None)."""
    if isinstance(change, bytes):
        return change, None
    return change
