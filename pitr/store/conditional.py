"""Conditions of a guarded commit: the value (and expiry) each key must hold for the commit to go ahead.

`Store.commit_if` checks them against the store's current state, including the commits
sequenced but not yet durable, in the same step that sequences its own commit: no other commit
can come between the check and the write, so the commit and its conditions are one atomic
compare-and-set over many keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

Row = tuple[bytes, int | None]  # value, absolute expiry (ns) or None
Expected = Row | None  # None: the key must be absent (or expired)


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A key whose current state is not the one a guarded commit expected."""

    key: bytes
    expected: Expected
    found: Expected


def mismatches(current: Callable[[bytes], Expected], expected: Mapping[bytes, Expected]) -> list[Mismatch]:
    """The keys of `expected` whose current state differs, in key order (empty: every condition holds)."""
    out = []
    for key in sorted(expected):
        found = current(key)
        if found != expected[key]:
            out.append(Mismatch(key, expected[key], found))
    return out
