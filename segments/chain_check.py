"""Verification of the chain over a sequence of segments (quick: no block is read)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from segments.segment_reader import SegmentMeta


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """One broken link: `path` does not follow `previous` as it should."""

    kind: str  # "store", "gap", "overlap", "duplicate", "order", "link", "start"
    path: str
    previous: str | None
    message: str


def check_chain(metas: Sequence[SegmentMeta], start_digest: bytes | None = None) -> list[ChainProblem]:
    """Check that `metas`, in the given order, form one unbroken chain.

    `start_digest`, when given, is the chain digest the first segment must link
    to (the store's genesis digest or a snapshot's). Returns every problem found;
    an empty list means the sequence is continuous and unaltered.
    """
    problems: list[ChainProblem] = []
    if not metas:
        return problems
    first = metas[0]
    if start_digest is not None and first.header.prev_chain_digest != start_digest:
        problems.append(ChainProblem(
            "start", first.name, None,
            f"{first.name}: does not link to the expected starting chain digest "
            f"{start_digest.hex()[:16]}…"))
    store = first.header.store_id
    for prev, cur in zip(metas, metas[1:], strict=False):
        if cur.header.store_id != store:
            problems.append(ChainProblem("store", cur.name, prev.name,
                                         f"{cur.name}: belongs to store {cur.header.store_id}, not {store}"))
            continue
        expected = prev.last_lsn + 1
        if cur.first_lsn == prev.first_lsn and cur.last_lsn == prev.last_lsn:
            kind, why = "duplicate", f"repeats LSNs {cur.first_lsn}..{cur.last_lsn} of {prev.name}"
        elif cur.first_lsn < prev.first_lsn:
            kind, why = "order", f"starts at LSN {cur.first_lsn}, before {prev.name} (LSN {prev.first_lsn})"
        elif cur.first_lsn < expected:
            kind, why = "overlap", f"starts at LSN {cur.first_lsn}, inside {prev.name} (ends at {prev.last_lsn})"
        elif cur.first_lsn > expected:
            kind, why = "gap", f"starts at LSN {cur.first_lsn}; LSNs {expected}..{cur.first_lsn - 1} are missing after {prev.name}"
        elif cur.header.prev_chain_digest != prev.chain_digest:
            kind, why = "link", f"does not link to {prev.name}: chain digest differs (altered or foreign segment)"
        else:
            continue
        problems.append(ChainProblem(kind, cur.name, prev.name, f"{cur.name}: {why}"))
    return problems
