"""The embedded key-value store."""

from pitr.datadir.state import StoreIdentity
from pitr.store.batch import Batch
from pitr.store.options import StoreOptions
from pitr.store.queued import Commit, QueuedCommits
from pitr.store.store import Store

__all__ = ["Batch", "Commit", "QueuedCommits", "Store", "StoreIdentity", "StoreOptions"]
