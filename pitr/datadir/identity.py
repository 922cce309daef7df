"""A store's identity (the history its LSNs belong to) and its sealed JSON row in the state's meta."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from pitr.datadir.entries import RowDamage, seal_meta, unseal_meta


@dataclass(frozen=True, slots=True)
class StoreIdentity:
    """Who this store is: the history its LSNs belong to."""

    store_id: uuid.UUID
    name: str
    created_ns: int
    first_lsn: int  # the first LSN of this history (1, or restore point + 1)
    start_chain_digest: bytes  # chain digest before first_lsn
    parent: dict[str, Any] | None = None


def encode_identity(ident: StoreIdentity) -> bytes:
    doc = {"store_id": str(ident.store_id), "name": ident.name, "created_ns": ident.created_ns,
           "first_lsn": ident.first_lsn, "start_chain_digest": ident.start_chain_digest.hex(),
           "parent": ident.parent}
    return seal_meta(b"identity", json.dumps(doc).encode())


def decode_identity(raw: bytes) -> StoreIdentity:
    """The identity in a meta row, checked; `RowDamage` says what is wrong."""
    try:
        doc = json.loads(unseal_meta(b"identity", raw))
        ident = StoreIdentity(uuid.UUID(doc["store_id"]), doc["name"], doc["created_ns"], doc["first_lsn"],
                              bytes.fromhex(doc["start_chain_digest"]), doc.get("parent"))
        if not (isinstance(ident.name, str) and type(ident.created_ns) is int and type(ident.first_lsn) is int
                and ident.first_lsn >= 1 and (ident.parent is None or isinstance(ident.parent, dict))):
            raise ValueError("a field has the wrong type")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RowDamage(f"the store identity is damaged ({exc})") from exc
    return ident
