"""The embedded key-value store."""

from pitr.store._state import StoreIdentity
from pitr.store.store import Batch, Commit, Store

__all__ = ["Batch", "Commit", "Store", "StoreIdentity"]
