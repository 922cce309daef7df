"""The embedded store as an undo target: reads and a guarded batch commit through `Store`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pitr.errors import ForeignRepository
from pitr.repo.identity import RepoIdentity
from pitr.store import Store
from pitr.store.conditional import Expected, Mismatch
from segments.record import DELETE, PUT, Op


class StoreTarget:
    """An open `Store`; the undo is one batch commit in its history (audited, and undoable in turn)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def check_history(self, identity: RepoIdentity) -> None:
        own = self.store.identity
        assert own is not None, "the store is not open"
        if own.store_id != identity.store_id:
            raise ForeignRepository(f"the repository holds the history of store {identity.store_id} "
                                    f"({identity.name!r}), not of {self.store.path} (store {own.store_id}); "
                                    "an undo reads the archive of the store it writes to")

    def now(self) -> int:
        return self.store.now()

    def comparable(self, state: Expected) -> Expected:
        return state  # the embedded store keeps each key's expiry: value and expiry are compared

    async def read(self, keys: Sequence[bytes]) -> dict[bytes, Expected]:
        return {key: await self.store.get_with_expiry(key) for key in keys}

    async def commit_if(self, writes: Sequence[tuple[bytes, Expected]],
                        guards: Mapping[bytes, Expected]) -> int | list[Mismatch]:
        ops = [Op(DELETE, key) if state is None else Op(PUT, key, state[0], state[1]) for key, state in writes]
        outcome = await self.store.commit_if(ops, guards)
        return outcome if isinstance(outcome, list) else outcome.lsn
