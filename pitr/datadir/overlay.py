"""The not-yet-applied changes that reads consult before LMDB, and merging them into scans."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from segments.fold import Change, change_of, change_value
from segments.record import Op


def fold(changes: dict[bytes, Change], ops: tuple[Op, ...]) -> None:
    for op in ops:
        changes[op.key] = change_of(op)


def visible(change: Change, now: int) -> tuple[bytes, int | None] | None:
    """(value, expiry) of a change, or None for a delete or a put expired at `now`."""
    if change is None:
        return None
    if isinstance(change, bytes):
        return change, None
    if change[1] <= now:
        return None
    return change


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with `prefix` (None if unbounded)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def merge(base: Iterable[tuple[bytes, bytes, int | None]],
          overlay: list[tuple[bytes, Change]]) -> Iterator[tuple[bytes, bytes, int | None]]:
    """Merge LMDB rows with newer overlay changes (both sorted by key)."""
    i = 0
    for key, value, expires in base:
        while i < len(overlay) and overlay[i][0] < key:
            k, change = overlay[i]
            if change is not None:
                yield (k, *change_value(change))
            i += 1
        if i < len(overlay) and overlay[i][0] == key:
            change = overlay[i][1]
            if change is not None:
                yield (key, *change_value(change))
            i += 1
        else:
            yield key, value, expires
    for k, change in overlay[i:]:
        if change is not None:
            yield (k, *change_value(change))
