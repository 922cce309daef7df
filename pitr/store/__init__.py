"""The embedded key-value store."""

from pitr.store._state import StoreIdentity
from pitr.store.batch import Batch
from pitr.store.store import Commit, Store

__all__ = ["Batch", "Commit", "Store", "StoreIdentity"]
