"""The embedded key-value store."""

from pitr.datadir.state import StoreIdentity
from pitr.store.batch import Batch
from pitr.store.options import StoreOptions
from pitr.store.store import Commit, Store

__all__ = ["Batch", "Commit", "Store", "StoreIdentity", "StoreOptions"]
