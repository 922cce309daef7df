"""The embedded key-value store.

`Store` (and the event loop's libraries it needs) is imported when it is first named, so
that `pitr.store.oneshot` (one commit, no event loop: `pitr put`) does not load them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pitr.datadir.state import StoreIdentity
from pitr.store.batch import Batch
from pitr.store.options import StoreOptions

if TYPE_CHECKING:
    from pitr.store.queued import Commit, QueuedCommits
    from pitr.store.store import Store

__all__ = ["Batch", "Commit", "QueuedCommits", "Store", "StoreIdentity", "StoreOptions"]


def __getattr__(name: str) -> object:
    if name == "Store":
        from pitr.store.store import Store

        return Store
    if name in ("Commit", "QueuedCommits"):
        from pitr.store import queued

        return getattr(queued, name)
    raise AttributeError(f"module 'pitr.store' has no attribute {name!r}")
