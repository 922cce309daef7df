"""`Batch`: operations collected for one atomic commit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pitr.datadir.keys import check_key, check_put, ttl_ns
from segments.record import DELETE, PUT, Op

_new_tuple = tuple.__new__

if TYPE_CHECKING:
    from pitr.store.queued import Commit


class Batch:
    """Operations collected for one atomic commit (see `Store.batch`)."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.ttls: dict[int, int] = {}  # op index -> TTL in ns, turned into an expiry at commit time
        self.commit: Commit | None = None

    def put(self, key: bytes, value: bytes, ttl: float | None = None) -> None:
        check_put(key, value)
        if ttl is not None:
            self.ttls[len(self.ops)] = ttl_ns(ttl, key)
        self.ops.append(_new_tuple(Op, (PUT, key, value, None)))  # Op(...) without its Python-level __new__

    def delete(self, key: bytes) -> None:
        self.ops.append(Op(DELETE, check_key(key)))
