"""Verification of the chain over a sequence of segments (quick: no block is read)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from segments import chain
from segments import segment_format as fmt
from segments._errors import CorruptFile

if TYPE_CHECKING:  # segment_reader imports this module to check keyed links
    from segments.segment_reader import SegmentMeta

KEYED_HINT = "move the file out of the repository and restore it from another copy"


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


def check_links(meta: SegmentMeta, link_key: bytes | None) -> None:
    """Check a sealed segment's chain against the repository's chain (`CorruptFile` naming the file).

    `link_key` is the repository's link subkey when its identity says the chain
    is keyed (docs/format.md, "Keyed chain"), else None. A keyed segment in an
    unkeyed repository, or an unkeyed one in a keyed repository, was not written
    by pitr with this repository's key; a keyed segment's fold must give its
    chain digest under the key, which nobody without the key can forge.
    """
    keyed = meta.header.keyed_chain
    end = meta.size - fmt.TRAILER_SIZE  # the trailer, which holds the chain digest
    if link_key is None:
        if keyed:
            raise CorruptFile("the segment's chain is keyed, but the repository's identity does not say so "
                              "(the identity was replaced, or the file belongs elsewhere)", path=meta.name,
                              offset=0, lsn=meta.first_lsn, hint=KEYED_HINT)
        return
    if not keyed:
        raise CorruptFile("the segment's chain is not keyed, but the repository's is: it was not written with "
                          "the repository's key", path=meta.name, offset=0, lsn=meta.first_lsn, hint=KEYED_HINT)
    if chain.fold(meta.header.prev_chain_digest, meta.pieces, link_key) != meta.chain_digest:
        raise CorruptFile(f"the keyed chain digest does not match the piece table of LSNs "
                          f"{meta.first_lsn}..{meta.last_lsn}: altered without the repository's key",
                          path=meta.name, offset=end, lsn=meta.first_lsn, hint=KEYED_HINT)
