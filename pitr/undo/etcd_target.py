"""An etcd prefix as an undo target: one transaction whose compares guard every key it writes.

etcd keeps no expiry to compare (a key's lease says how long it has left, not until when), so
states are told apart by value alone; a T1 value that had an expiry is written back attached to
a new lease of its remaining lifetime, rounded up to whole seconds. The transaction writes every
key or none; an undo larger than etcd's limit for one transaction refuses before writing, since
splitting it would make it non-atomic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

from pitr.errors import ForeignRepository, InvalidArgument
from pitr.repo.identity import RepoIdentity
from pitr.sources.etcd import DEFAULT_MAX_TXN_OPS, Compare, Delete, EtcdClient, Put
from pitr.store.conditional import Expected, Mismatch

_NS = 1_000_000_000


class EtcdTarget:
    """The etcd cluster an archive was taken from (the archived keys are its full keys)."""

    def __init__(self, client: EtcdClient, *, max_txn_ops: int = DEFAULT_MAX_TXN_OPS) -> None:
        self.client = client
        self.max_txn_ops = max_txn_ops

    def check_history(self, identity: RepoIdentity) -> None:
        if identity.source != "etcd":
            raise ForeignRepository(f"the repository holds the history of an embedded store ({identity.name!r}), "
                                    "not of an etcd prefix; undo it with --data DIR")

    def now(self) -> int:
        return time.time_ns()

    def comparable(self, state: Expected) -> Expected:
        return None if state is None else (state[0], None)

    async def read(self, keys: Sequence[bytes]) -> dict[bytes, Expected]:
        out: dict[bytes, Expected] = {}
        for key in keys:
            kv = await self.client.get(key)
            out[key] = None if kv is None else (kv.value, None)
        return out

    async def commit_if(self, writes: Sequence[tuple[bytes, Expected]],
                        guards: Mapping[bytes, Expected]) -> int | list[Mismatch]:
        if max(len(writes), len(guards)) > self.max_txn_ops:
            raise InvalidArgument(f"the undo writes {len(writes)} keys, more than one etcd transaction may hold "
                                  f"({self.max_txn_ops} operations, the server's --max-txn-ops); narrow it "
                                  "with --prefix or a shorter range (a split undo would not be atomic)")
        compares = [Compare.version(key, "==", 0) if state is None else Compare.value(key, "==", state[0])
                    for key, state in sorted(guards.items())]
        now = self.now()
        leases: dict[int, int] = {}
        ops: list[Put | Delete] = []
        for key, state in writes:
            if state is None:
                ops.append(Delete(key))
                continue
            value, expires = state
            lease = 0
            if expires is not None:
                ttl = max(1, math.ceil((expires - now) / _NS))
                if ttl not in leases:
                    leases[ttl] = (await self.client.grant_lease(ttl)).id
                lease = leases[ttl]
            ops.append(Put(key, value, lease))
        result = await self.client.txn(compares, ops)
        if result.succeeded:
            return result.revision
        for lease in leases.values():
            await self.client.revoke_lease(lease)
        found = await self.read(list(guards))
        return [Mismatch(key, guards[key], found[key]) for key in sorted(guards) if found[key] != guards[key]]
