"""A batch of changes as the rows a state write transaction puts and deletes, with the entries
whose digest terms it takes out and puts in (`pitr.datadir.state`)."""

from __future__ import annotations

from collections.abc import Callable

from pitr.datadir.entries import encode_expiry, encode_value
from segments.fold import Change

Entry = tuple[bytes, bytes, int | None]
Rows = tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]], list[bytes], list[bytes], list[Entry], list[Entry]]


def changed_rows(items: list[tuple[bytes, Change]], get_row: Callable[[bytes], bytes | None],
                 decode: Callable[[bytes, bytes], tuple[bytes, int | None]]) -> Rows:
    """(data rows to put, expiry rows to put, keys whose expiry row goes, keys whose data row goes,
    the old entries replaced or deleted, the new entries) for `items` in key order. `get_row`
    reads a key's current data row; `decode` checks it (refusing a damaged one)."""
    rows: list[tuple[bytes, bytes]] = []
    index: list[tuple[bytes, bytes]] = []
    unindex: list[bytes] = []
    deletes: list[bytes] = []
    old: list[Entry] = []
    new: list[Entry] = []
    for key, change in items:
        raw = get_row(key)
        old_expires = None
        if raw is not None:
            value, old_expires = decode(key, raw)
            old.append((key, value, old_expires))
        if change is None:
            if raw is not None:
                deletes.append(key)
            expires = None
        else:
            if isinstance(change, bytes):
                value, expires = change, None
            else:
                value, expires = change
                index.append((key, encode_expiry(key, expires)))
            new.append((key, value, expires))
            rows.append((key, encode_value(key, value, expires)))
        if old_expires is not None and expires is None:
            unindex.append(key)
    return rows, index, unindex, deletes, old, new
