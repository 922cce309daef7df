"""Chain digests: BLAKE3-256 links from each piece of the log to the one before.

    genesis(store_id)      = BLAKE3("pitr-genesis-v1" || store_id)
    link(prev, piece)      = BLAKE3("pitr-chain-v1" || prev || u64le first_lsn
                                    || u64le last_lsn || records_digest)
    records_digest(piece)  = BLAKE3(the exact bytes of the piece's records, in order)

A freshly sealed segment is one piece. A merged segment keeps its inputs'
pieces, so its chain digest equals the last input's and its neighbours still
link to it.

The keyed chain (segment version 3, an encrypted repository whose identity
says `"chain": "keyed-v1"`) links with BLAKE3's keyed mode under the
repository's chain subkey, so nobody without the key can compute a chain
digest, and a piece table altered without it fails the fold:

    keyed_link(key, prev, piece) = BLAKE3 keyed(key, "pitr-chain-keyed-v1" || prev
                                    || u64le first_lsn || u64le last_lsn || records_digest)
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable
from typing import NamedTuple

from blake3 import blake3

DIGEST_SIZE = 32
_LINK_TAG = b"pitr-chain-v1"
_KEYED_LINK_TAG = b"pitr-chain-keyed-v1"
_GENESIS_TAG = b"pitr-genesis-v1"
KEY_SIZE = 32
_LSNS = struct.Struct("<QQ")


class Piece(NamedTuple):
    """A contiguous run of records that was sealed as one segment."""

    first_lsn: int
    last_lsn: int
    records_digest: bytes


def genesis(store_id: uuid.UUID) -> bytes:
    """The chain digest before the first record of a store's history."""
    return blake3(_GENESIS_TAG + store_id.bytes).digest()


def records_digest(data: bytes | memoryview) -> bytes:
    return blake3(data, max_threads=1).digest()


def link(prev: bytes, piece: Piece) -> bytes:
    return blake3(
        _LINK_TAG + prev + _LSNS.pack(piece.first_lsn, piece.last_lsn) + piece.records_digest
    ).digest()


def keyed_link(key: bytes, prev: bytes, piece: Piece) -> bytes:
    """The keyed chain's link: BLAKE3 keyed mode under the repository's chain subkey."""
    return blake3(
        _KEYED_LINK_TAG + prev + _LSNS.pack(piece.first_lsn, piece.last_lsn) + piece.records_digest, key=key
    ).digest()


def fold(prev: bytes, pieces: Iterable[Piece], key: bytes | None = None) -> bytes:
    """The chain digest after `pieces`, starting from `prev`; keyed links when `key` is given."""
    if key is not None and len(key) != KEY_SIZE:
        raise ValueError(f"a chain key is {KEY_SIZE} bytes")
    for piece in pieces:
        prev = link(prev, piece) if key is None else keyed_link(key, prev, piece)
    return prev
